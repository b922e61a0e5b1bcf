"""The decoder cut out of the graph, fed the converted model's tokens, gives the full graph's output."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from maa_train.models.backbone_onnx import onnx_session
from maa_train.models.dinov2_folder import Preprocessing, write_dinov2_folder
from maa_train.models.errors import GraphMismatchError
from maa_train.models.onnx_dinov2 import read_dinov2_graph
from maa_train.models.saliency import DECODER_FILE, SaliencyDecoder, extract_decoder, run_saliency
from tests.maa_train.models.synthetic_graph import BACKBONE_OUT, TINY, build_dinov2_onnx


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from transformers import Dinov2Model

    graph = build_dinov2_onnx(TINY, seed=3)
    read = read_dinov2_graph(graph, TINY)
    out = tmp_path_factory.mktemp("tiny-sal")
    write_dinov2_folder(out, read.arch, read.state_dict, Preprocessing(56), {})
    onnx.save(extract_decoder(graph, read.output_name), str(out / DECODER_FILE))
    return graph, out, Dinov2Model.from_pretrained(out).eval()


@pytest.mark.parametrize("hw", [(56, 56), (28, 42), (60, 45)])
def test_decoder_on_converted_tokens_matches_full_graph(setup, hw):
    graph, folder, model = setup
    full = onnx_session(graph)   # the synthetic graph's input is static 56 x 56; other sizes via symbolic dims
    if hw != (56, 56):
        from maa_train.models.backbone_onnx import backbone_model

        dyn = backbone_model(graph, BACKBONE_OUT)
        del dyn.graph.output[:]
        dyn.graph.output.extend(graph.graph.output)
        full = onnx_session(dyn)
    x = np.random.default_rng(0).normal(size=(2, 3, *hw)).astype(np.float32)
    ref = full.run(["output_importance"], {"input_image": x})[0]
    with torch.no_grad():
        tokens = model(pixel_values=torch.from_numpy(x)).last_hidden_state.numpy()
    out = run_saliency(tokens, folder, image_size=hw)
    assert out.shape == ref.shape == (2, 1, *hw)
    assert np.abs(out - ref).max() < 1e-5


def test_square_grid_is_the_default_image_size(setup):
    _, folder, _ = setup
    tokens = np.random.default_rng(1).normal(size=(1, 17, 32)).astype(np.float32)
    assert SaliencyDecoder(folder / DECODER_FILE)(tokens).shape == (1, 1, 56, 56)
    with pytest.raises(ValueError, match="square"):
        SaliencyDecoder(folder / DECODER_FILE)(tokens[:, :13])


def test_output_that_does_not_read_the_tokens_is_refused():
    graph = build_dinov2_onnx(TINY, with_decoder=False)
    with pytest.raises(GraphMismatchError, match="does not read"):
        extract_decoder(graph, "no-such-tensor", output=BACKBONE_OUT)
