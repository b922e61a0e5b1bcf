"""Official-release import: a state dict in the release's layout, converted by
import_official, must make our adapter compute the function of a reference forward written
here from the published description (plain loops, no shared code with maa_train.students.adapter)."""

import math

import pytest
import torch
import torch.nn.functional as F

from maa_train.students.adapter import AdapterConfig
from maa_train.students.checkpoint import load_adapters
from maa_train.students.inject import AdaptedEncoder
from maa_train.encoders.load import load_vision_model
from maa_train.students.official import OfficialFormatError, convert_official, import_official, infer_adapter_config
from tests.maa_train.tiny_models import pixels, tiny_models  # noqa: F401

D, BOTTLENECK, ATTN, HEADS, WINDOW = 32, 8, 8, 2, 3
PREFIX = "module.model.vision_tower.vision_tower.vision_model.encoder.layers.{i}.maa_adapter."


def official_state(num_layers=2, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    state = {}
    for i in range(num_layers):
        p = PREFIX.format(i=i)
        state.update({
            p + "norm.weight": 1 + r(D), p + "norm.bias": r(D),
            p + "mlp.0.weight": r(BOTTLENECK, D), p + "mlp.0.bias": r(BOTTLENECK),
            p + "mlp.2.weight": r(D, BOTTLENECK), p + "mlp.2.bias": r(D),
            p + "window_attn.qkv.weight": r(3 * ATTN, D), p + "window_attn.qkv.bias": r(3 * ATTN),
            p + "window_attn.proj.weight": r(D, ATTN), p + "window_attn.proj.bias": r(D),
            p + "window_attn.beta_attn": torch.tensor(0.7 + 0.1 * i),  # 0-d in the file, shape [1] in ours
            p + "window_attn.relpos_table": r((2 * WINDOW - 1) ** 2, HEADS, scale=1.0),
            p + "alpha_mlp": torch.tensor([0.4]), p + "alpha_pool": torch.tensor([0.25]),
        })
    state["module.model.multi_modal_projector.linear_1.weight"] = r(4, 4)  # not an adapter key: ignored
    return state


def reference_adapter(x, w, prefix, gh, gw):
    """x [N, D] one image's tokens; w official tensors under `prefix`."""
    def t(name):
        return w[prefix + name]

    h = F.layer_norm(x, (D,), t("norm.weight"), t("norm.bias"), eps=1e-5)
    mlp = F.linear(F.gelu(F.linear(h, t("mlp.0.weight"), t("mlp.0.bias"))), t("mlp.2.weight"), t("mlp.2.bias"))
    # window attention on the zero-padded patch grid
    patches = h[prefix_len(x, gh, gw):].reshape(gh, gw, D)
    ph, pw = math.ceil(gh / WINDOW) * WINDOW, math.ceil(gw / WINDOW) * WINDOW
    padded = torch.zeros(ph, pw, D)
    padded[:gh, :gw] = patches
    qkv = F.linear(padded, t("window_attn.qkv.weight"), t("window_attn.qkv.bias"))
    hd = ATTN // HEADS
    attn_out = torch.zeros(ph, pw, ATTN)
    table = t("window_attn.relpos_table")
    for wy in range(0, ph, WINDOW):
        for wx in range(0, pw, WINDOW):
            cells = [(wy + a, wx + b) for a in range(WINDOW) for b in range(WINDOW)]
            for head in range(HEADS):
                q = torch.stack([qkv[c][0 * ATTN + head * hd: 0 * ATTN + (head + 1) * hd] for c in cells])
                k = torch.stack([qkv[c][1 * ATTN + head * hd: 1 * ATTN + (head + 1) * hd] for c in cells])
                v = torch.stack([qkv[c][2 * ATTN + head * hd: 2 * ATTN + (head + 1) * hd] for c in cells])
                logits = q @ k.T / math.sqrt(hd)
                for qi, (qy, qx) in enumerate(cells):
                    for ki, (ky, kx) in enumerate(cells):
                        row = (qy - ky + WINDOW - 1) * (2 * WINDOW - 1) + (qx - kx + WINDOW - 1)
                        logits[qi, ki] += table[row, head]
                out = logits.softmax(-1) @ v
                for qi, c in enumerate(cells):
                    attn_out[c][head * hd:(head + 1) * hd] = out[qi]
    attn = F.linear(attn_out[:gh, :gw].reshape(gh * gw, ATTN), t("window_attn.proj.weight"), t("window_attn.proj.bias"))
    attn = attn * t("window_attn.beta_attn")
    # 3x3 max over the neighbourhood of each patch of the raw input
    p0 = prefix_len(x, gh, gw)
    grid = x[p0:].reshape(gh, gw, D)
    pool = torch.stack([
        torch.stack([grid[max(y - 1, 0):y + 2, max(xx - 1, 0):xx + 2].reshape(-1, D).max(0).values for xx in range(gw)])
        for y in range(gh)
    ]).reshape(gh * gw, D)
    corr = mlp.clone()
    corr[p0:] += attn
    out = x + t("alpha_mlp") * corr
    out[p0:] += t("alpha_pool") * pool
    return out


def prefix_len(x, gh, gw):
    return x.shape[0] - gh * gw


def test_import_renames_prefix_and_infers_config(tmp_path):
    path = tmp_path / "maa.pth"
    torch.save(official_state(), path)
    state = import_official(path)
    assert len(state) == 2 * 14
    assert state["adapters.1.window_attn.beta_attn"].shape == (1,)
    assert all(k.startswith(("adapters.0.", "adapters.1.")) for k in state)
    cfg, hidden, layers = infer_adapter_config(state)
    assert (cfg.bottleneck, cfg.attn_dim, cfg.heads, cfg.window, hidden, layers) == (BOTTLENECK, ATTN, HEADS, WINDOW, D, 2)


def test_imported_adapter_matches_reference_forward(tmp_path, tiny_models):
    raw = official_state()
    path = tmp_path / "maa.pth"
    torch.save(raw, path)
    ckpt = convert_official(path, tmp_path / "ours", base_model="tiny-llava")
    model, _ = load_vision_model(tiny_models["llava"])
    enc = AdaptedEncoder(model, AdapterConfig(bottleneck=BOTTLENECK, attn_dim=ATTN, heads=HEADS, window=WINDOW),
                         use_projector=True)
    load_adapters(ckpt, enc)

    # one adapter against the reference, CLS + 4x4 grid (padded to 6x6 windows of 3)
    x = torch.randn(2, 17, D, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = enc.adapters[0](x, enc.grid)
    for b in range(2):
        ref = reference_adapter(x[b], raw, PREFIX.format(i=0), 4, 4)
        torch.testing.assert_close(ours[b], ref, atol=1e-5, rtol=1e-5)

    # the whole encoder: blocks run by hand with the reference adapter before each block
    px = pixels(2)
    tower = model.model.vision_tower
    with torch.no_grad():
        ours = enc.features(px)
    with torch.no_grad(), enc.adapters_disabled():  # the blocks carry our hooks: switch them off
        h = tower.pre_layrnorm(tower.embeddings(px))
        states = []
        for i, block in enumerate(tower.encoder.layers):
            states.append(h)  # hidden_states[i]: block i's input before its adapter
            h = torch.stack([reference_adapter(h[b], raw, PREFIX.format(i=i), 4, 4) for b in range(2)])
            h = block(h, None)
        ref = model.model.multi_modal_projector(states[-1][:, 1:])  # feature layer -2
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_bad_official_files(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.layers.0.attn.weight": torch.zeros(2)}, path)
    with pytest.raises(OfficialFormatError, match="no key matches"):
        import_official(path)
    state = {k: v for k, v in official_state(3).items() if ".layers.1." not in k}
    torch.save(state, path)
    with pytest.raises(OfficialFormatError, match="not contiguous"):
        import_official(path)
