"""Tables with 95% bootstrap intervals. Usage: python summarize.py [--work DIR] [--json FILE] SPLIT ARM=run1,run2,... [ARM=...]
Per arm: accuracy averaged over its runs (seeds); CI from a two-level bootstrap (seeds with replacement, then images).
Paired differences vs the arms named base and mse: same images, seed i paired with seed i."""
import json, os, sys, numpy as np

import common

argv, flags = common.pop_flags(sys.argv[1:], ("--work", "--json"))
ROWS = []  # the printed accuracy rows, also written to --json FILE
RESULTS = os.path.join(flags.get("work", os.environ.get("MAA_RESEARCH_WORK", "research_work")), "results")
split = argv[0]
arms = {}
for a in argv[1:]:
    k, v = a.split("="); arms[k] = v.split(",")
R = 2000
rng = np.random.default_rng(0)

def load(name):
    suffix = "" if split == "val" else f"_{split}"
    return json.load(open(f"{RESULTS}/{name}{suffix}.json"))[f"eval_{split}"]

data = {k: [load(n) for n in v] for k, v in arms.items()}
conds = ("clean", "sev3", "sev5")
n_img = len(next(iter(data.values()))[0]["correct_cls_clean"])
idx_boot = rng.integers(0, n_img, (R, n_img))

def corr(arm, probe, cond):
    return np.array([r[f"correct_{probe}_{cond}"] for r in data[arm]], float)  # [seeds, images]

def boot_mean(c):  # c [S, N]
    s = c.shape[0]
    out = np.empty(R)
    for r in range(R):
        ss = rng.integers(0, s, s) if s > 1 else np.zeros(1, int)
        out[r] = c[ss][:, idx_boot[r]].mean()
    return c.mean(), np.percentile(out, 2.5), np.percentile(out, 97.5)

def boot_diff(a, b):  # paired: a [Sa, N], b [Sb, N]
    if a.shape[0] == b.shape[0]:
        d = a - b; return boot_mean(d)
    d = a.mean(0, keepdims=True) - b.mean(0, keepdims=True); return boot_mean(d)

for probe in ("cls", "cls+mp"):
    print(f"\n### {split}, probe {probe} (accuracy %, mean over seeds, 95% CI seeds x images), n={n_img}")
    print("| arm | runs | Ref | Dis sev3 | Dis sev5 |\n|---|---|---|---|---|")
    for arm in arms:
        cells = []
        for cond in conds:
            m, lo, hi = boot_mean(corr(arm, probe, cond)); cells.append(f"{100*m:.1f} [{100*lo:.1f}, {100*hi:.1f}]")
            ROWS.append(dict(split=split, probe=probe, row=arm, runs=arms[arm], cond=cond, n=n_img,
                             mean=100 * m, lo=100 * lo, hi=100 * hi))
        print(f"| {arm} | {len(arms[arm])} | " + " | ".join(cells) + " |")
    for ref in ("base", "mse"):
        if ref not in arms:
            continue
        print(f"\nPaired differences vs {ref} (points):\n| arm | Ref | sev3 | sev5 |\n|---|---|---|---|")
        for arm in arms:
            if arm == ref:
                continue
            cells = []
            for cond in conds:
                m, lo, hi = boot_diff(corr(arm, probe, cond), corr(ref, probe, cond))
                ROWS.append(dict(split=split, probe=probe, row=f"{arm} - {ref}", runs=arms[arm], cond=cond, n=n_img,
                                 mean=100 * m, lo=100 * lo, hi=100 * hi))
                cells.append(f"{100*m:+.1f} [{100*lo:+.1f}, {100*hi:+.1f}]")
            print(f"| {arm} - {ref} | " + " | ".join(cells) + " |")
    if probe == "cls":
        pass
print("\n### mechanism (mean over runs; MMD^2: corrected half A vs base-clean half B)")
keys = ["held_mse", "held_mse_cls", "held_mmd_tok", "held_mmd_cls", "held_cka_mp", "mmd_cls_sev3", "mmd_cls_sev5",
        "mmd_mp_sev5", "pmse_cls_sev5", "cka_cls_sev5", "clean_consistency", "mmd_cls_cleanref"]
print("| arm | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 1))
for arm in arms:
    vals = []
    for k in keys:
        v = [r.get(k) for r in data[arm] if r.get(k) is not None]
        vals.append(f"{np.mean(v):.4f}" + (f"±{np.std(v):.4f}" if len(v) > 1 else "") if v else "-")
    print(f"| {arm} | " + " | ".join(vals) + " |")
if "json" in flags:
    with open(flags["json"], "w") as f:
        json.dump({"split": split, "arms": arms, "bootstrap": R, "rows": ROWS}, f, indent=1)
