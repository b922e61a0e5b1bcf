"""Prefix-cached variant of the harness: the frozen blocks before `FIRST` are run once per image and their
output (the input of block FIRST) cached; adapters sit on blocks FIRST..11 only. Same adapters, disc, losses,
eval as lab.py. Needed because the shared 2-core CPU gives ~10 img/s forward (not the pilot's 95).

`first` (the pre-port harness's FIRST environment variable) is an argument here; `advance_prefix` is the
pre-port k8to10.py (a cached prefix at block k carried through the frozen blocks k..first-1)."""
from __future__ import annotations
import os, time, numpy as np, torch
from torch import nn
import common
import lab
from lab import MAAAdapter, PatchGrid

FIRST = int(os.environ.get("FIRST", "10"))  # the reported runs: adapters on blocks 10-11
V = 4  # degraded variants per training photo kept in the prefix cache


class PrefixNet(nn.Module):
    def __init__(self, model, size, acfg, first=FIRST):
        super().__init__()
        self.model, self.first = model, first
        self.grid = PatchGrid(prefix=1, height=size // 14, width=size // 14)
        d = model.config.hidden_size
        n = len(model.encoder.layer) - first
        self.adapters = nn.ModuleList([MAAAdapter(d, acfg) for _ in range(n)]) if acfg else nn.ModuleList()
        self.active = acfg is not None

    def forward(self, hk):
        h = hk.float()
        for i, layer in enumerate(self.model.encoder.layer[self.first:]):
            if self.active and len(self.adapters):
                h = self.adapters[i](h, self.grid)
            h = layer(h)
            if isinstance(h, tuple):
                h = h[0]
        return self.model.layernorm(h)


@torch.no_grad()
def prefix(model, imgs, first=FIRST, bs=64):
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1); std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    out = []
    for i in range(0, len(imgs), bs):
        x = torch.from_numpy(np.ascontiguousarray(imgs[i:i + bs])).permute(0, 3, 1, 2).float().div(255)
        h = model.embeddings((x - mean) / std)
        for layer in model.encoder.layer[:first]:
            h = layer(h)
            if isinstance(h, tuple):
                h = h[0]
        out.append(h.half())
    return torch.cat(out)


def test_subset(fl, per_class=300):
    rng = np.random.default_rng(123)
    idx = []
    for c in range(5):
        cand = np.where((fl["split"] == 2) & (fl["labels"] == c))[0]
        idx.extend(rng.choice(cand, per_class, replace=False).tolist())
    return np.sort(np.array(idx))


def prefix_path(model, which, first):
    return f"{lab.ROOT}/prefix_{which}_k{first}" + ("_tiny" if model.config.hidden_size == 64 else "") + ".safetensors"


def build_prefix(model, im, fl, which, first=FIRST):
    path = prefix_path(model, which, first)
    if os.path.exists(path):
        return common.load_tensors(path)
    t0 = time.time()
    if which == "train":
        ntr = int(im["ntr"])
        var = prefix(model, im["var"][:, :V].reshape(-1, *im["var"].shape[2:]), first).view(ntr, V, -1, model.config.hidden_size)
        c = dict(var=var, held=prefix(model, im["held"], first))
    else:
        idx = np.where(fl["split"] == 1)[0] if which == "val" else test_subset(fl)
        c = dict(idx=torch.from_numpy(idx), clean=prefix(model, fl["clean"][idx], first))
        ev = fl["split"] > 0
        pos = np.cumsum(ev) - 1  # row of each image in the eval arrays
        for sev in (3, 5):
            c[f"sev{sev}"] = prefix(model, fl[f"sev{sev}"][idx], first)
        c["evrow"] = torch.from_numpy(pos[idx])
    common.save_tensors(path, c)
    print(f"prefix {which} built in {time.time() - t0:.0f}s", flush=True)
    return c


@torch.no_grad()
def _advance(model, h, start, stop, bs=200):
    out = []
    for i in range(0, len(h), bs):
        x = h[i:i + bs].float()
        for layer in model.encoder.layer[start:stop]:
            x = layer(x)
        out.append(x.half())
    return torch.cat(out)


def advance_prefix(model, im, fl, which, via, first=FIRST):
    """The prefix at block `first` computed through a cached one at block `via` (pre-port k8to10.py):
    fp16 cache at `via`, then the frozen blocks via..first-1 in batches of 200. The reported train/val
    prefixes (first=10) were made this way from k=8; the test prefix was built at k=10 directly."""
    path = prefix_path(model, which, first)
    if os.path.exists(path):
        return common.load_tensors(path)
    c = dict(build_prefix(model, im, fl, which, via))
    for k in list(c):
        if k in ("var",):
            s = c[k].shape; c[k] = _advance(model, c[k].reshape(-1, *s[2:]), via, first).view(*s)
        elif k in ("held", "clean", "sev3", "sev5"):
            c[k] = _advance(model, c[k], via, first)
    common.save_tensors(path, c)
    print(which, "done", flush=True)
    return c


@torch.no_grad()
def run_feats(net, hk, bs=100):
    outs = [net(hk[i:i + bs]) for i in range(0, len(hk), bs)]
    return torch.cat(outs)


def evaluate2(net, fl, cache, probes, pre, held_pre, base=False):
    idx = pre["idx"].numpy(); evrow = pre["evrow"]
    y = fl["labels"][idx]
    out = {"n": int(len(idx))}
    feats = {}
    net.eval()
    for cond in ("clean", "sev3", "sev5"):
        if base:
            if cond == "clean":
                c, m = cache["fl_clean_cls"][idx], cache["fl_clean_mp"][idx]
            else:
                c, m = cache[f"fl_{cond}_cls"][evrow], cache[f"fl_{cond}_mp"][evrow]
        else:
            h = run_feats(net, pre[cond])
            c, m = h[:, 0].clone(), h[:, 1:].mean(1)
        feats[cond] = (c, m)
        for pname, p in probes.items():
            X = c if pname == "cls" else torch.cat([c, m], 1)
            pred = p.predict(X.numpy())
            out[f"correct_{pname}_{cond}"] = (pred == y).astype(np.uint8).tolist()
            out[f"acc_{pname}_{cond}"] = float((pred == y).mean())
    clean_c, clean_m = cache["fl_clean_cls"][idx], cache["fl_clean_mp"][idx]
    out["clean_consistency"] = float((feats["clean"][0] - clean_c).pow(2).mean())  # drift on clean inputs
    for cond in ("sev3", "sev5"):
        c, m = feats[cond]
        out[f"mmd_cls_{cond}"] = lab.mmd_halves(c, clean_c)
        out[f"mmd_mp_{cond}"] = lab.mmd_halves(m, clean_m)
        out[f"pmse_cls_{cond}"] = float((c - clean_c).pow(2).mean())
        out[f"cka_cls_{cond}"] = lab.M.linear_cka(c.double(), clean_c.double())
    out["mmd_cls_cleanref"] = lab.mmd_halves(clean_c, clean_c)
    toks = cache["baseheld"].float() if base else run_feats(net, held_pre).float()
    ntr = cache["teacher"].shape[0] - toks.shape[0]
    clean = cache["teacher"][ntr:].float()
    out["held_mse"] = float((toks - clean).pow(2).mean())
    out["held_mse_cls"] = float((toks[:, 0] - clean[:, 0]).pow(2).mean())
    g = torch.Generator().manual_seed(0); xs = lab.M.token_set(toks[:, 1:], "sampled", 16, g)
    g = torch.Generator().manual_seed(0); ys = lab.M.token_set(clean[:, 1:], "sampled", 16, g)
    half = toks.shape[0] // 2
    out["held_mmd_tok"] = lab.M.mmd2(xs[: half * 16], ys[half * 16:])
    out["held_mmd_cls"] = lab.M.mmd2(toks[:half, 0], clean[half:, 0])
    out["held_mmd_cleanref"] = lab.M.mmd2(clean[:half, 0], clean[half:, 0])
    out["held_cka_mp"] = lab.M.linear_cka(toks[:, 1:].mean(1).double(), clean[:, 1:].mean(1).double())
    return out
