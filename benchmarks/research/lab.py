"""Research harness: MAA adapters on a frozen Dinov2Model, cached teacher features, probe eval.

Research tool, not product code. Ported from the pre-port harness (run against the project at
commit 84fdf93) to the current layout; the computation is unchanged (checked equal on a tiny
random Dinov2Model, see README.md). Caches are safetensors, probes npz: no pickle.
"""
from __future__ import annotations

import math, os, time
import numpy as np
import torch
from torch import nn

from maa_train.encoders.grid import PatchGrid
from maa_train.eval import metrics as M
from maa_train.objectives.adversarial import discriminator_loss, generator_loss
from maa_train.objectives.discriminator import TokenDiscriminator
from maa_train.objectives.distillation import distill_loss
from maa_train.objectives.r1 import r1_penalty
from maa_train.students.adapter import MAAAdapter
from maa_train.students.adapter_config import AdapterConfig

import common

torch.set_num_threads(int(os.environ.get("NT", "2")))
ROOT = os.path.abspath(os.environ.get("MAA_RESEARCH_WORK", "research_work"))  # --work DIR in the scripts
MODEL_DIR = None  # --model DIR in the scripts; None: the folder `maa_train.models.cli fetch vit-s-dinov2` fills


def configure(flags: dict) -> None:
    """Apply the scripts' --work / --model flags."""
    global ROOT, MODEL_DIR
    if flags.get("work"):
        ROOT = os.path.abspath(flags["work"])
    if flags.get("model"):
        MODEL_DIR = flags["model"]
    os.makedirs(ROOT, exist_ok=True)


# ------------------------------------------------------------------ encoder

def read_norm():
    # READY.txt: ImageNet mean (0.485, 0.456, 0.406) std (0.229, 0.224, 0.225), pixel/255
    return [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def load_encoder(kind: str):
    from transformers import Dinov2Config, Dinov2Model
    if kind == "tiny":
        torch.manual_seed(0)
        cfg = Dinov2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                           patch_size=14, image_size=112)
        model = Dinov2Model(cfg)
    else:
        model = Dinov2Model.from_pretrained(str(MODEL_DIR or common.default_model()))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class Adapted(nn.Module):
    """Frozen encoder + one MAA adapter per block on the block input (forward pre-hook)."""

    def __init__(self, model, size: int, acfg: AdapterConfig | None):
        super().__init__()
        self.model = model
        self.grid = PatchGrid(prefix=1, height=size // 14, width=size // 14)
        d = model.config.hidden_size
        self.active = acfg is not None
        self.adapters = nn.ModuleList([MAAAdapter(d, acfg) for _ in model.encoder.layer]) if acfg else nn.ModuleList()
        self.handles = []
        for i, layer in enumerate(model.encoder.layer):
            self.handles.append(layer.register_forward_pre_hook(self._hook(i), with_kwargs=True))
        mean, std = read_norm()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def _hook(self, i):
        def pre(mod, args, kwargs):
            if not self.active or len(self.adapters) == 0:
                return None
            if args:
                return (self.adapters[i](args[0], self.grid),) + tuple(args[1:]), kwargs
            kwargs = dict(kwargs)
            kwargs["hidden_states"] = self.adapters[i](kwargs["hidden_states"], self.grid)
            return args, kwargs
        return pre

    def remove(self):
        for h in self.handles:
            h.remove()

    def forward(self, x_uint8: torch.Tensor) -> torch.Tensor:
        """[B, H, W, 3] uint8 -> last_hidden_state [B, 1 + P, d]."""
        x = x_uint8.permute(0, 3, 1, 2).float().div(255.0)
        x = (x - self.mean) / self.std
        return self.model(pixel_values=x).last_hidden_state


@torch.no_grad()
def encode(net: Adapted, imgs: np.ndarray, bs: int = 64, tokens: bool = False, active: bool = True):
    """CLS [N, d] and mean-patch [N, d] (and all tokens when `tokens`)."""
    prev = net.active
    net.active = active and len(net.adapters) > 0
    cls, mp, toks = [], [], []
    for i in range(0, len(imgs), bs):
        h = net(torch.from_numpy(np.ascontiguousarray(imgs[i:i + bs])))
        cls.append(h[:, 0].clone()); mp.append(h[:, 1:].mean(1))
        if tokens:
            toks.append(h.half())
    net.active = prev
    out = (torch.cat(cls), torch.cat(mp))
    return out + ((torch.cat(toks),) if tokens else ())


# ------------------------------------------------------------------ data + cache

def load_data(size: int):
    im = np.load(f"{ROOT}/data{size}/imagenet.npz", allow_pickle=False)
    fl = np.load(f"{ROOT}/data{size}/flowers.npz", allow_pickle=False)
    return {k: im[k] for k in im.files}, {k: fl[k] for k in fl.files}


def build_cache(kind: str, size: int, base: Adapted, im, fl):
    """Teacher (frozen base) features that never change: computed once per encoder/size."""
    path = f"{ROOT}/cache_{kind}_{size}.safetensors"
    if os.path.exists(path):
        return common.load_tensors(path)
    t0 = time.time()
    ntr = int(im["ntr"])
    _, _, teacher = encode(base, im["clean"], tokens=True, active=False)  # [1000, T, d] fp16
    _, _, basedeg = encode(base, im["var"][:, :2].reshape(-1, size, size, 3), tokens=True, active=False)
    basedeg = basedeg.view(ntr, 2, *basedeg.shape[1:])
    _, _, baseheld = encode(base, im["held"], tokens=True, active=False)
    fcls, fmp = encode(base, fl["clean"], active=False)
    cache = dict(teacher=teacher, basedeg=basedeg, baseheld=baseheld, fl_clean_cls=fcls, fl_clean_mp=fmp)
    ev = np.where(fl["split"] > 0)[0]
    for sev in (3, 5):
        c, m = encode(base, fl[f"sev{sev}"][ev], active=False)
        cache[f"fl_sev{sev}_cls"], cache[f"fl_sev{sev}_mp"] = c, m
    cache["ev_index"] = torch.from_numpy(ev)
    common.save_tensors(path, cache)
    print(f"cache built in {time.time() - t0:.0f}s", flush=True)
    return cache


def fit_probes(cache, fl):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from sklearn.pipeline import make_pipeline
    tr = fl["split"] == 0
    y = fl["labels"][tr]
    probes = {}
    for name, X in (("cls", cache["fl_clean_cls"]), ("cls+mp", torch.cat([cache["fl_clean_cls"], cache["fl_clean_mp"]], 1))):
        p = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.5))
        p.fit(X.numpy()[tr], y)
        probes[name] = p
    return probes


# ------------------------------------------------------------------ training

DEFAULTS = dict(
    name="run", kind="real", size=112, seed=0, steps=300, batch=16,
    lam=0.0, lam_ramp=0, adv_start=0, disc_warmup=0, disc_lr=1e-4, disc_width=512, disc_blocks=3,
    disc_sn=False, disc_steps=1, gan="bce", r1=0.0, disc_tokens="all", disc_wd=0.0,
    lr=1e-3, wd=0.01, clip=1.0, clip_mode="total", warmup_frac=0.05,
    variants=1, photos=800, window=7, bottleneck=256, attn_dim=128, heads=8, use_attn=True, use_pool=True,
    log_every=20, eval_split="val",
)


def select_tokens(h: torch.Tensor, which: str) -> torch.Tensor:
    if which == "all":
        return h
    if which == "patch":
        return h[:, 1:]
    if which == "cls":
        return h[:, :1]
    raise ValueError(which)


def cosine(step, total, warm):
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def train(cfg: dict, net, im, cache, log, inputs=None):
    torch.manual_seed(cfg["seed"])
    rng = np.random.default_rng(cfg["seed"])
    ntr = int(im["ntr"])
    photos = np.arange(min(cfg["photos"], ntr))
    teacher = cache["teacher"]
    params = [p for p in net.adapters.parameters()]
    optA = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["wd"])
    steps, bs = cfg["steps"], cfg["batch"]
    warm = max(1, int(cfg["warmup_frac"] * steps))
    schA = torch.optim.lr_scheduler.LambdaLR(optA, lambda s: cosine(s, steps, warm))
    adv = cfg["lam"] > 0
    d = net.model.config.hidden_size
    if adv:
        disc = TokenDiscriminator(d, cfg["disc_width"], cfg["disc_blocks"], cfg["disc_sn"])
        optD = torch.optim.AdamW(disc.parameters(), lr=cfg["disc_lr"], betas=(0.5, 0.999), weight_decay=cfg["disc_wd"])
    hist = []

    def disc_step(real, fake):
        rl, fl_ = disc(real), disc(fake)
        loss = discriminator_loss(rl, fl_, cfg["gan"])
        if cfg["r1"] > 0:
            loss = loss + 0.5 * cfg["r1"] * r1_penalty(disc, real.reshape(-1, d))
        optD.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(disc.parameters(), 10.0)
        optD.step()
        return float(loss), float((rl > 0).float().mean()), float((fl_ < 0).float().mean())

    # discriminator warm-up: clean teacher vs frozen-base degraded features (cached), adapters untouched
    if adv and cfg["disc_warmup"] > 0:
        for w in range(cfg["disc_warmup"]):
            idx = rng.choice(photos, bs, replace=False)
            v = rng.integers(0, 2, bs)
            real = select_tokens(teacher[idx].float(), cfg["disc_tokens"])
            fake = select_tokens(cache["basedeg"][idx, v].float(), cfg["disc_tokens"])
            dl, ra, fa = disc_step(real, fake)
            if w % 50 == 0 or w == cfg["disc_warmup"] - 1:
                hist.append(dict(phase="warmup", step=w, d_loss=dl, d_real_acc=ra, d_fake_acc=fa))
        log(f"  disc warmup end: loss {dl:.3f} real acc {ra:.2f} fake acc {fa:.2f}")

    order, pos, epoch = rng.permutation(photos), 0, 0
    offsets = rng.integers(0, max(1, cfg["variants"]), len(photos))
    t0 = time.time()
    run_d = run_dr = run_df = 0.0
    n_run = 0
    for step in range(steps):
        if pos + bs > len(order):
            order, pos, epoch = rng.permutation(photos), 0, epoch + 1
        idx = order[pos:pos + bs]; pos += bs
        v = (offsets[idx] + epoch) % cfg["variants"]  # a different degraded variant each epoch
        x = inputs[idx, v] if inputs is not None else torch.from_numpy(im["var"][idx, v])
        h = net(x)
        tgt = teacher[idx].float()
        ld = distill_loss(h, tgt)
        lam_t = 0.0
        if adv and step >= cfg["adv_start"]:
            s = step - cfg["adv_start"]
            lam_t = cfg["lam"] * (min(1.0, s / cfg["lam_ramp"]) if cfg["lam_ramp"] > 0 else 1.0)
        logline = step % cfg["log_every"] == 0 or step == steps - 1
        rec = dict(step=step, distill=float(ld), lam=lam_t, lr=schA.get_last_lr()[0])
        optA.zero_grad(set_to_none=True)
        if lam_t > 0:
            for p in disc.parameters():
                p.requires_grad_(False)
            lg = generator_loss(disc(select_tokens(h, cfg["disc_tokens"])), cfg["gan"])
            for p in disc.parameters():
                p.requires_grad_(True)
            rec["gen"] = float(lg)
            if cfg["clip_mode"] == "per_term":  # each term clipped to `clip` on its own, then summed
                ld.backward(retain_graph=True)
                gd = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]
                optA.zero_grad(set_to_none=True)
                (lam_t * lg).backward()
                ga = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]
                nd = float(torch.sqrt(sum((g.float() ** 2).sum() for g in gd)))
                na = float(torch.sqrt(sum((g.float() ** 2).sum() for g in ga)))
                rec["gnorm_distill"], rec["gnorm_adv"] = nd, na
                rec["cos_adv_distill"] = float(sum((a * b).sum() for a, b in zip(ga, gd)) / (na * nd + 1e-12))
                fd, fa = min(1.0, cfg["clip"] / (nd + 1e-6)), min(1.0, cfg["clip"] / (na + 1e-6))
                for p, a, b in zip(params, gd, ga):
                    p.grad = a * fd + b * fa
            elif logline:  # split backward: gradient norms of each term at the adapters
                ld.backward(retain_graph=True)
                gd = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]
                (lam_t * lg).backward()
                ga = [(p.grad if p.grad is not None else torch.zeros_like(p)) - g for p, g in zip(params, gd)]
                rec["gnorm_distill"] = float(torch.sqrt(sum((g.float() ** 2).sum() for g in gd)))
                rec["gnorm_adv"] = float(torch.sqrt(sum((g.float() ** 2).sum() for g in ga)))
                rec["cos_adv_distill"] = float(sum((a * b).sum() for a, b in zip(ga, gd)) /
                                              (rec["gnorm_adv"] * rec["gnorm_distill"] + 1e-12))
            else:
                (ld + lam_t * lg).backward()
        else:
            ld.backward()
            if logline:
                rec["gnorm_distill"] = float(torch.sqrt(sum((p.grad.float() ** 2).sum() for p in params if p.grad is not None)))
        per_term = cfg["clip_mode"] == "per_term" and lam_t > 0
        if cfg["clip_mode"] not in ("total", "per_term"):
            raise ValueError(f"clip_mode: {cfg['clip_mode']!r} (total|per_term)")
        if per_term or cfg["clip"] <= 0:
            tot = torch.sqrt(sum((p.grad.float() ** 2).sum() for p in params if p.grad is not None))
        else:
            tot = torch.nn.utils.clip_grad_norm_(params, cfg["clip"])
        rec["gnorm_total"] = float(tot)
        optA.step(); schA.step()
        if adv:
            for _ in range(cfg["disc_steps"]):
                real = select_tokens(tgt, cfg["disc_tokens"])
                fake = select_tokens(h.detach(), cfg["disc_tokens"])
                dl, ra, fa = disc_step(real, fake)
            rec.update(d_loss=dl, d_real_acc=ra, d_fake_acc=fa)
            run_d += dl; run_dr += ra; run_df += fa; n_run += 1
        if logline:
            rec["elapsed"] = time.time() - t0
            hist.append(rec)
            msg = f"  step {step:4d} distill {rec['distill']:.3f} lam {lam_t:.3f}"
            if adv and n_run:
                msg += (f" d_loss {run_d / n_run:.3f} acc r/f {run_dr / n_run:.2f}/{run_df / n_run:.2f}"
                        f" g {rec.get('gnorm_distill', 0):.3f}/{rec.get('gnorm_adv', 0):.3f}")
                run_d = run_dr = run_df = 0.0; n_run = 0
            else:
                msg += f" g {rec.get('gnorm_distill', 0):.3f}"
            log(msg + f" ({rec['elapsed']:.0f}s)")
    gates = [dict(alpha_mlp=float(a.alpha_mlp) if hasattr(a, "alpha_mlp") else None,
                  alpha_pool=float(a.alpha_pool) if hasattr(a, "alpha_pool") else None,
                  beta_attn=float(a.window_attn.beta_attn) if hasattr(a, "window_attn") else None)
             for a in net.adapters]
    return hist, gates, time.time() - t0


# ------------------------------------------------------------------ evaluation

def mmd_halves(x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> float:
    """Unbiased MMD^2 of x's half A against y's other half B (independent samples)."""
    n = len(x)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    a, b = perm[: n // 2], perm[n // 2:]
    return M.mmd2(x[a].float(), y[b].float())


def evaluate(net: Adapted, fl, cache, probes, split: str, held_imgs, active=True):
    """Probe accuracy (per image correctness kept) + mechanism metrics."""
    sp = 1 if split == "val" else 2
    ev = cache["ev_index"].numpy()
    sel_ev = fl["split"][ev] == sp  # rows of the eval arrays
    idx = ev[sel_ev]
    y = fl["labels"][idx]
    out = {"n": int(len(idx))}
    feats = {}
    is_base = not active
    for cond in ("clean", "sev3", "sev5"):
        if is_base:
            if cond == "clean":
                c, m = cache["fl_clean_cls"][idx], cache["fl_clean_mp"][idx]
            else:
                c, m = cache[f"fl_{cond}_cls"][torch.from_numpy(np.where(sel_ev)[0])], cache[f"fl_{cond}_mp"][torch.from_numpy(np.where(sel_ev)[0])]
        else:
            imgs = fl["clean"][idx] if cond == "clean" else fl[cond][idx]
            c, m = encode(net, imgs, active=True)
        feats[cond] = (c, m)
        for pname, p in probes.items():
            X = c if pname == "cls" else torch.cat([c, m], 1)
            pred = p.predict(X.numpy())
            out[f"correct_{pname}_{cond}"] = (pred == y).astype(np.uint8).tolist()
            out[f"acc_{pname}_{cond}"] = float((pred == y).mean())
    # mechanism on flowers (eval split): corrected sev3/sev5 vs base-clean, independent halves
    clean_c, clean_m = cache["fl_clean_cls"][idx], cache["fl_clean_mp"][idx]
    for cond in ("sev3", "sev5"):
        c, m = feats[cond]
        out[f"mmd_cls_{cond}"] = mmd_halves(c, clean_c)
        out[f"mmd_mp_{cond}"] = mmd_halves(m, clean_m)
        out[f"pmse_cls_{cond}"] = float((c - clean_c).pow(2).mean())
        out[f"cka_cls_{cond}"] = M.linear_cka(c.double(), clean_c.double())
    out["mmd_cls_cleanref"] = mmd_halves(clean_c, clean_c)
    # mechanism on held-out imagenet pairs (training distribution): all tokens
    if is_base:
        toks = cache["baseheld"].float()
    else:
        _, _, toks = encode(net, held_imgs, tokens=True, active=True)
        toks = toks.float()
    ntr = cache["teacher"].shape[0] - toks.shape[0]
    clean = cache["teacher"][ntr:].float()
    out["held_mse"] = float((toks - clean).pow(2).mean())
    out["held_mse_cls"] = float((toks[:, 0] - clean[:, 0]).pow(2).mean())
    g = torch.Generator().manual_seed(0)
    xs = M.token_set(toks[:, 1:], "sampled", 16, g)
    g = torch.Generator().manual_seed(0)
    ys = M.token_set(clean[:, 1:], "sampled", 16, g)
    n = toks.shape[0]; half = n // 2
    # independent halves: corrected tokens of images [0, half) vs clean tokens of images [half, n)
    out["held_mmd_tok"] = M.mmd2(xs[: half * 16], ys[half * 16:])
    out["held_mmd_cls"] = M.mmd2(toks[:half, 0], clean[half:, 0])
    out["held_mmd_cleanref"] = M.mmd2(clean[:half, 0], clean[half:, 0])
    out["held_cka_mp"] = M.linear_cka(toks[:, 1:].mean(1).double(), clean[:, 1:].mean(1).double())
    return out
