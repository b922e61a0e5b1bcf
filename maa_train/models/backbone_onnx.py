"""The reference to check a conversion against: the ONNX graph cut at the backbone output.

The wheel's graph declares a fixed 1x3x224x224-per-image input, but its ops compute the
patch grid and the position-embedding resize from the input's runtime shape. Declaring H
and W symbolic (and dropping the exporter's stale shape annotations) lets onnxruntime run
it at other sizes, which is how the 112 px check compares the two interpolations.
"""
from __future__ import annotations

import copy

import numpy as np
import onnx


def backbone_model(model: onnx.ModelProto, output_name: str, dynamic_hw: bool = True) -> onnx.ModelProto:
    """A copy of ``model`` whose only output is ``output_name`` (onnxruntime then skips the rest)."""
    m = copy.deepcopy(model)
    g = m.graph
    if dynamic_hw:
        dims = g.input[0].type.tensor_type.shape.dim
        for i, sym in ((2, "height"), (3, "width")):
            dims[i].Clear()
            dims[i].dim_param = sym
        del g.value_info[:]
    del g.output[:]
    g.output.append(onnx.helper.make_tensor_value_info(output_name, onnx.TensorProto.FLOAT, ["batch", "tokens", "dim"]))
    return m


def onnx_session(model: onnx.ModelProto, threads: int = 2):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def run_backbone(session, pixels: np.ndarray) -> np.ndarray:
    """pixels: normalised float32 [B, 3, H, W] -> last hidden state [B, 1 + h*w, D]."""
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.ascontiguousarray(pixels, dtype=np.float32)})[0]
