import pytest
import torch

from maa_train.adapter import AdapterConfig, MAAAdapter, relative_position_index
from maa_train.grid import GridMismatchError, PatchGrid, grid_for

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
        grid_for(type("C", (), {"model_type": "vit", "image_size": 224, "patch_size": 16})())


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
