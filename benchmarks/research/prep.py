"""Build cached image arrays (uint8) for the research harness. Independent of the encoder.

imagenet-samples: 1000 photos, center-cropped to S px. Photos 0..849 (by a fixed permutation)
are training photos, 850..999 held out (val distill MSE + mechanism metrics).
Training variants: K degraded versions per training photo (maa-global recipe, seed=v).
Held-out: one degraded version each (seed 10_000).
flowers5: resized to S px; splits probe-train 60/class, val 100/class, test = rest (seed 0).
Eval corruptions (val+test): one op per image, family uniform then op uniform, severity 3 and 5,
seed 20_000 + severity (held out from all training seeds).

python prep.py [--work DIR] [SIZE=112] [K=8]; reads $MAA_SHARED_DATA (default ../shared/data from the repo root),
writes WORK/data{SIZE}/{imagenet,flowers}.npz. --ntr/--probe-train/--val shrink the split sizes (tests only;
the defaults are the reported study's)."""
import argparse, glob, os, time, numpy as np
from PIL import Image
from corruptor import corrupt, load_recipe

import common

_ap = argparse.ArgumentParser()
_ap.add_argument("size", nargs="?", type=int, default=112)
_ap.add_argument("variants", nargs="?", type=int, default=8)
_ap.add_argument("--work", default=os.environ.get("MAA_RESEARCH_WORK", "research_work"))
_ap.add_argument("--ntr", type=int, default=850)
_ap.add_argument("--probe-train", type=int, default=60)
_ap.add_argument("--val", type=int, default=100)
_args = _ap.parse_args()
S, K = _args.size, _args.variants
DATA = common.shared_data()
OUT = f"{_args.work}/data{S}"
os.makedirs(OUT, exist_ok=True)

def load(p, size=S):
    im = Image.open(p).convert("RGB"); w, h = im.size; s = size / min(w, h)
    im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
    w, h = im.size; l = (w - size) // 2; t = (h - size) // 2
    return np.asarray(im.crop((l, t, l + size, t + size)))

t0 = time.time()
files = sorted(glob.glob(f"{DATA}/imagenet-samples/*.JPEG"))
perm = np.random.default_rng(0).permutation(len(files))
files = [files[i] for i in perm]
clean = np.stack([load(f) for f in files])
stems = [os.path.basename(f).split(".")[0] for f in files]
ntr = _args.ntr
rec = load_recipe("maa-global")
var = np.zeros((ntr, K, S, S, 3), np.uint8)
ops = [[None] * K for _ in range(ntr)]
for i in range(ntr):
    for v in range(K):
        a = rec.apply(clean[i], seed=v, key=stems[i])
        var[i, v] = a.image
        ops[i][v] = "+".join(f"{o.get('op') if isinstance(o, dict) else getattr(o, 'op', o)}" for o in a.ops) if a.ops else "none"
held = np.stack([rec.apply(clean[i], seed=10_000, key=stems[i]).image for i in range(ntr, len(files))])
np.savez(f"{OUT}/imagenet.npz", clean=clean, var=var, held=held, stems=np.array(stems), ntr=ntr)
print("imagenet done", time.time() - t0, flush=True)
print("example ops", ops[0], ops[1])

classes = sorted(os.listdir(f"{DATA}/flowers5"))
paths, labels = [], []
for c, name in enumerate(classes):
    for p in sorted(glob.glob(f"{DATA}/flowers5/{name}/*")):
        paths.append(p); labels.append(c)
labels = np.array(labels)
fimgs = np.stack([np.asarray(Image.open(p).convert("RGB").resize((S, S), Image.BICUBIC)) for p in paths])
rng = np.random.default_rng(0)
split = np.full(len(paths), 2)  # 0 probe-train, 1 val, 2 test
for c in range(len(classes)):
    idx = rng.permutation(np.where(labels == c)[0])
    npt, nv = _args.probe_train, _args.val
    split[idx[:npt]] = 0; split[idx[npt:npt + nv]] = 1
FAMILIES = {
    "noise": ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"],
    "blur": ["gaussian_blur", "defocus_blur", "motion_blur", "zoom_blur", "glass_blur"],
    "compression": ["jpeg", "webp", "jpeg_compression"],
    "resolution": ["low_resolution", "pixelate"],
    "light": ["low_light", "overexposure", "contrast", "brightness"],
    "weather": ["fog", "haze", "rain", "snow", "frost"],
}
fam_names = sorted(FAMILIES)
out = dict(clean=fimgs, labels=labels, split=split, classes=np.array(classes))
for sev in (3, 5):
    r = np.random.default_rng(20_000 + sev)
    cor = fimgs.copy(); fam = np.full(len(paths), -1); opn = np.empty(len(paths), object)
    for i in np.where(split > 0)[0]:
        f = r.integers(len(fam_names)); ops_ = FAMILIES[fam_names[f]]; op = ops_[r.integers(len(ops_))]
        cor[i] = corrupt(fimgs[i], op, sev, seed=20_000 + sev, key=f"f{i}")
        fam[i] = f; opn[i] = op
    out[f"sev{sev}"] = cor; out[f"fam{sev}"] = fam; out[f"op{sev}"] = opn.astype(str)
out["fam_names"] = np.array(fam_names)
np.savez(f"{OUT}/flowers.npz", **out)
print("flowers done", time.time() - t0, {k: int((split == k).sum()) for k in range(3)})
