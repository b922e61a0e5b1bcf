"""Training diagnostics table: python diag.py [--work DIR] RUN ... (reads WORK/results/RUN.json)."""
import json, os, sys, numpy as np

import common

argv, flags = common.pop_flags(sys.argv[1:], ("--work",))
RESULTS = os.path.join(flags.get("work", os.environ.get("MAA_RESEARCH_WORK", "research_work")), "results")
print("| run | train s | batch distill first/last 2 logged | disc loss / acc r,f (last 50 steps) | |g_adv|/|g_distill| median (logged steps) | cos(g_adv,g_distill) | alpha_mlp | alpha_pool |")
print("|---|---|---|---|---|---|---|---|")
for n in argv:
    r = json.load(open(f"{RESULTS}/{n}.json")); h = [x for x in r["hist"] if x.get("phase") != "warmup"]
    d = [x["distill"] for x in h]
    late = [x for x in h if x["step"] >= 100 and "d_loss" in x]
    ratio = [x["gnorm_adv"] / x["gnorm_distill"] for x in h if x.get("gnorm_adv") and x["step"] > 0]
    cos = [x["cos_adv_distill"] for x in h if "cos_adv_distill" in x and x["step"] > 0]
    dl = f"{np.mean([x['d_loss'] for x in late]):.3f} / {np.mean([x['d_real_acc'] for x in late]):.2f},{np.mean([x['d_fake_acc'] for x in late]):.2f}" if late else "-"
    g = r["gates"]
    print(f"| {n} | {r['train_s']:.0f} | {np.mean(d[:2]):.2f} / {np.mean(d[-2:]):.2f} | {dl} | "
          f"{np.median(ratio) if ratio else float('nan'):.2f} | {np.median(cos) if cos else float('nan'):+.2f} | "
          + " ".join(f"{x['alpha_mlp']:+.3f}" for x in g) + " | " + " ".join(f"{x['alpha_pool']:+.3f}" for x in g) + " |")
