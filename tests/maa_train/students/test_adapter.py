import copy
import pickle

import pytest
import torch

from benchmarks.bench_overhead import OpCounter
from maa_train.students.adapter import AdapterConfig, MAAAdapter, cache_weights, relative_position_index, window_order
from maa_train.encoders.grid import GridMismatchError, PatchGrid, grid_for
from tests.maa_train.students import test_official as official

CFG = AdapterConfig(bottleneck=16, attn_dim=16, heads=4, window=3)


def _adapter(cfg=CFG, dim=32, gates=(0.5, 0.3)):
    torch.manual_seed(0)
    adapter = MAAAdapter(dim, cfg)
    with torch.no_grad():
        if hasattr(adapter, "alpha_mlp"):
            adapter.alpha_mlp.fill_(gates[0])
        if hasattr(adapter, "alpha_pool"):
            adapter.alpha_pool.fill_(gates[1])
    return adapter


@pytest.mark.parametrize("grid", [PatchGrid(1, 5, 6), PatchGrid(0, 6, 6), PatchGrid(1, 1, 1)])
def test_identity_at_init_is_exact(grid):
    adapter = MAAAdapter(32, CFG)
    x = torch.randn(2, grid.num_tokens, 32) * 50
    assert torch.equal(adapter(x, grid), x)
    xb = x.bfloat16()
    assert torch.equal(adapter(xb, grid), xb)


def test_parameter_names_follow_release_layout():
    names = set(dict(MAAAdapter(32, CFG).named_parameters()))
    assert names == {
        "norm.weight", "norm.bias", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias",
        "window_attn.qkv.weight", "window_attn.qkv.bias", "window_attn.proj.weight", "window_attn.proj.bias",
        "window_attn.beta_attn", "window_attn.relpos_table", "alpha_mlp", "alpha_pool",
    }
    table = MAAAdapter(32, CFG).window_attn.relpos_table
    assert table.shape == ((2 * 3 - 1) ** 2, 4)


def test_prefix_tokens_get_no_attention_or_pool():
    grid = PatchGrid(1, 4, 4)
    full, mlp_only = _adapter(), _adapter(AdapterConfig(bottleneck=16, attn_dim=16, heads=4, window=3,
                                                          use_attn=False, use_pool=False))
    mlp_only.load_state_dict({k: v for k, v in full.state_dict().items() if k in mlp_only.state_dict()})
    x = torch.randn(2, 17, 32)
    assert torch.allclose(full(x, grid)[:, :1], mlp_only(x, grid)[:, :1])
    assert not torch.allclose(full(x, grid)[:, 1:], mlp_only(x, grid)[:, 1:])


def test_windows_are_local():
    # Changing a patch in one window must not move attention outputs in another window
    # (MLP and pool are per-token / 3x3-local, so use attention only).
    cfg = AdapterConfig(bottleneck=16, attn_dim=16, heads=4, window=3, use_mlp=False, use_pool=False)
    adapter, grid = _adapter(cfg), PatchGrid(0, 6, 6)
    x = torch.randn(1, 36, 32)
    y = x.clone()
    y[0, 0] += 5.0  # cell (0, 0), window (0, 0)
    delta = (adapter(y, grid) - adapter(x, grid)).abs().sum(-1).view(6, 6)
    assert delta[:3, :3].sum() > 0 and delta[3:, :].sum() == 0 and delta[:, 3:].sum() == 0


@pytest.mark.parametrize("paths", [dict(use_attn=False, use_pool=False), dict(use_attn=False), dict(use_pool=False),
                                   dict(use_mlp=False)])
def test_ablations_build_and_train(paths):
    cfg = AdapterConfig(bottleneck=16, attn_dim=16, heads=4, window=3, **paths)
    adapter, grid = _adapter(cfg), PatchGrid(1, 4, 5)
    x = torch.randn(2, 21, 32)
    adapter(x, grid).square().sum().backward()
    assert all(p.grad is not None for p in adapter.parameters())
    assert ("window_attn.qkv.weight" in dict(adapter.named_parameters())) == cfg.use_attn


def test_bf16_autocast_within_bound_of_fp32():
    adapter, grid = _adapter(), PatchGrid(1, 9, 9)
    x = torch.randn(2, 82, 32) * 3
    ref = adapter(x, grid)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = adapter(x, grid)
    assert out.dtype == torch.float32
    assert ((out - ref).norm() / ref.norm()).item() < 1e-2
    # The correction itself (not only x + correction) stays close.
    corr_err = ((out - x) - (ref - x)).norm() / (ref - x).norm()
    assert corr_err.item() < 2e-2


def test_full_fp32_mode_matches_fp32_under_autocast():
    cfg = AdapterConfig(bottleneck=16, attn_dim=16, heads=4, window=3, full_fp32=True)
    adapter, grid = _adapter(cfg), PatchGrid(1, 4, 4)
    x = torch.randn(2, 17, 32)
    ref = adapter(x, grid)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = adapter(x, grid)
    assert torch.allclose(out, ref, atol=1e-6)


def test_relative_position_index_is_symmetric_offset():
    idx = relative_position_index(3)
    assert idx.shape == (9, 9)
    assert idx.diagonal().unique().tolist() == [12]  # (0 + 2) * 5 + (0 + 2)
    assert idx.max().item() == 24 and idx.min().item() == 0


def test_grid_mismatch_error_names_expected_and_found():
    with pytest.raises(GridMismatchError, match=r"expected 17 tokens.*found 16"):
        MAAAdapter(32, CFG)(torch.randn(1, 16, 32), PatchGrid(1, 4, 4))


@pytest.mark.parametrize("bad", [dict(attn_dim=10, heads=4), dict(pool_kernel=2), dict(window=0),
                                 dict(use_mlp=False, use_attn=False, use_pool=False)])
def test_config_validation_names_field(bad):
    with pytest.raises(ValueError, match="AdapterConfig"):
        AdapterConfig(**bad)


def test_grid_for_clip_siglip():
    from transformers import CLIPVisionConfig, SiglipVisionConfig

    assert grid_for(CLIPVisionConfig(image_size=336, patch_size=14), 577) == PatchGrid(1, 24, 24)
    assert grid_for(SiglipVisionConfig(image_size=384, patch_size=14), 729) == PatchGrid(0, 27, 27)
    with pytest.raises(GridMismatchError, match="expected 577 tokens.*found 576"):
        grid_for(CLIPVisionConfig(image_size=336, patch_size=14), 576)
    with pytest.raises(ValueError, match="model_type"):
        grid_for(type("C", (), {"model_type": "swin", "image_size": 224, "patch_size": 16})())


def _official_layout(adapter, prefix="layers.0.maa_adapter."):
    return {prefix + k: v for k, v in adapter.state_dict().items()}


def _official_sized(seed=0):
    cfg = AdapterConfig(bottleneck=official.BOTTLENECK, attn_dim=official.ATTN, heads=official.HEADS,
                        window=official.WINDOW)
    adapter = _adapter(cfg, dim=official.D, gates=(0.6, 0.4))
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        for p in adapter.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return adapter


@pytest.mark.parametrize("grid", [PatchGrid(1, 5, 4), PatchGrid(0, 4, 7), PatchGrid(2, 3, 3)])
def test_matches_reference_forward_and_gradients_on_any_grid(grid):
    # Rectangular, padded and unpadded grids, 0-2 prefix tokens, batch 2: forward and every
    # parameter's gradient against the loop reference written from the published description.
    adapter = _official_sized()
    x = torch.randn(2, grid.num_tokens, official.D, generator=torch.Generator().manual_seed(1))
    weight = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    (adapter(x, grid) * weight).sum().backward()
    raw = {k: v.detach().clone().requires_grad_(True) for k, v in _official_layout(adapter).items()}
    ref = torch.stack([official.reference_adapter(x[b], raw, "layers.0.maa_adapter.", grid.height, grid.width)
                       for b in range(2)])
    (ref * weight).sum().backward()
    torch.testing.assert_close(adapter(x, grid), ref, atol=1e-5, rtol=1e-5)
    for name, p in adapter.named_parameters():
        torch.testing.assert_close(p.grad, raw["layers.0.maa_adapter." + name].grad, atol=1e-4, rtol=1e-4,
                                   msg=lambda m, n=name: f"{n}: {m}")


def test_window_order_is_a_window_major_layout():
    order = window_order(4, 5, 3)  # padded to 6 x 6: 2 x 2 windows of 9 cells
    assert order.tolist()[:5] == [0, 1, 2, 9, 10]  # row 0: window 0 cells 0-2, window 1 cells 0-1
    assert order[5:10].tolist() == [3, 4, 5, 12, 13]
    assert order[15].item() == 18  # row 3, col 0: window 2, cell 0
    assert len(set(order.tolist())) == 20 and order.max().item() < 36


def test_window_attention_module_alone_is_the_attention_path():
    cfg = AdapterConfig(bottleneck=16, attn_dim=16, heads=4, window=3, use_mlp=False, use_pool=False)
    adapter, grid = _adapter(cfg, gates=(1.0, 0.0)), PatchGrid(1, 4, 5)
    x = torch.randn(2, 21, 32)
    out = adapter(x, grid)
    assert torch.equal(out[:, :1], x[:, :1])
    torch.testing.assert_close(out[:, 1:] - x[:, 1:], adapter.window_attn(adapter.norm(x), grid))


@pytest.mark.parametrize("autocast", [False, True])
def test_inference_cache_follows_weight_updates(autocast):
    # With gradients off the derived weights are cached; every in-place change to a parameter
    # (optimizer step, load_state_dict, a manual edit) or a move must show in the next forward:
    # a fresh copy (no cache) computes the same bits.
    adapter, grid = _adapter(), PatchGrid(1, 4, 4)
    assert cache_weights(adapter) == 1
    x = torch.randn(2, 17, 32) * 3

    def cached_equals_fresh():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = adapter(x, grid)
            assert torch.equal(out, copy.deepcopy(adapter)(x, grid))
        return out

    cached_equals_fresh()
    first = cached_equals_fresh()  # from the cache
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        with_grad = adapter(x, grid)
    # same function as the training path (rounding aside: kernels may differ with grad on)
    assert ((first - with_grad).norm() / with_grad.norm()).item() < (1e-3 if autocast else 1e-6)
    optimizer = torch.optim.SGD(adapter.parameters(), lr=0.1)
    with_grad.square().sum().backward()
    optimizer.step()
    assert not torch.equal(cached_equals_fresh(), first)
    other = _adapter()
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1.5)
    adapter.load_state_dict(other.state_dict())
    cached_equals_fresh()
    with torch.no_grad():
        adapter.alpha_mlp.zero_()
        adapter.alpha_pool.zero_()
    assert torch.equal(cached_equals_fresh(), x)
    adapter.double()
    with torch.no_grad():
        assert torch.equal(adapter(x.double(), grid), x.double())
    assert copy.deepcopy(adapter)._cache is None and pickle.loads(pickle.dumps(adapter))._cache is None


def test_cache_on_adapters_made_under_inference_mode():
    # Inference tensors have no version counter: the cache must step aside, not fail.
    with torch.inference_mode():
        adapter, grid = _adapter(gates=(0.0, 0.0)), PatchGrid(1, 4, 4)
        cache_weights(adapter)
        x = torch.randn(2, 17, 32)
        assert torch.equal(adapter(x, grid), x)  # gates at 0: identity
        adapter.alpha_mlp.fill_(0.5)  # an in-place write the next forward must see
        assert not torch.equal(adapter(x, grid), x)


def test_no_cache_by_default_so_fused_optimizer_steps_are_seen():
    # A fused AdamW step writes the parameters without bumping their version counters: a cache
    # keyed on them would serve the old weights. Off by default, every forward derives afresh.
    adapter, grid = _adapter(), PatchGrid(1, 4, 4)
    x = torch.randn(2, 17, 32)
    with torch.no_grad():
        adapter.alpha_mlp.fill_(0.5)
        adapter.alpha_pool.fill_(0.5)
        before = adapter(x, grid)
    adapter(x, grid).square().sum().backward()
    versions = [p._version for p in adapter.parameters()]
    torch.optim.AdamW(adapter.parameters(), lr=0.1, fused=True).step()
    assert [p._version for p in adapter.parameters()] == versions  # why the cache is opt-in
    with torch.no_grad():
        after = adapter(x, grid)
        assert torch.equal(after, copy.deepcopy(adapter)(x, grid))
    assert not torch.equal(after, before)


def test_training_after_an_inference_mode_forward():
    # What is cached during evaluation under inference_mode must not leak into a training step.
    adapter, grid = _adapter(), PatchGrid(1, 4, 5)
    x = torch.randn(2, 21, 32)
    with torch.inference_mode():
        evaluated = adapter(x, grid)
    out = adapter(x, grid)
    out.square().sum().backward()
    assert all(p.grad is not None for p in adapter.parameters())
    torch.testing.assert_close(out.detach(), evaluated, atol=1e-6, rtol=1e-6)


def test_inference_forward_launches_no_weight_preparation():
    # With gradients off the casts, gate folding, stacking and bias gather are done once; a
    # forward is then the adapter's own kernels only (13 for all three paths on a padded grid).
    adapter, grid = _adapter(AdapterConfig(bottleneck=16, attn_dim=16, heads=4, window=7)), PatchGrid(1, 6, 6)
    cache_weights(adapter)
    x = torch.randn(1, 37, 32, dtype=torch.bfloat16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        adapter(x, grid)
        with OpCounter() as counted:  # the benchmark's kernel count
            adapter(x, grid)
    prep = {"_to_copy", "cat", "mul", "index", "copy_", "fill_"}
    assert not prep & set(counted.ops), counted.ops
    assert counted.total <= 13, counted.ops


@pytest.mark.gpu
def test_cuda_bf16_autocast_and_compiled_adapter_stay_within_bound():
    adapter, grid = _adapter(AdapterConfig(), dim=64).cuda(), PatchGrid(1, 24, 24)
    x = torch.randn(4, 577, 64, device="cuda") * 3
    ref = adapter(x, grid)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = adapter(x, grid)
        compiled = torch.compile(adapter)(x, grid)
    assert ((out - ref).norm() / ref.norm()).item() < 1e-2
    assert ((compiled - ref).norm() / ref.norm()).item() < 1e-2
    xb = x.bfloat16()  # a bf16 tower: output rounded once from the fp32 sum
    with torch.autocast("cuda", dtype=torch.bfloat16):
        outb = adapter(xb, grid)
    assert outb.dtype == torch.bfloat16
    assert ((outb.float() - ref).norm() / ref.norm()).item() < 1e-2


@pytest.mark.gpu
def test_cuda_graph_capture_of_inference_forward_replays_eager():
    adapter, grid = _adapter(AdapterConfig(), dim=64).cuda(), PatchGrid(1, 24, 24)
    x = torch.randn(2, 577, 64, device="cuda", dtype=torch.bfloat16)

    def forward():
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            return adapter(x, grid)

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        expected = forward().clone()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = forward()
    x.copy_(torch.randn_like(x))
    graph.replay()
    assert torch.equal(out, forward())
    assert not torch.equal(out, expected)
