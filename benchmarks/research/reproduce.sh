#!/bin/bash
# The command sequence behind benchmarks/results/research_vit_s/ (REPORT.md, val3.md, test3.md, diag.md).
# Usage: benchmarks/research/reproduce.sh [WORK]   (from the repository root; CPU; about 3-4 h on a shared 2-core
# machine, see README.md). Needs ../shared/data (or $MAA_SHARED_DATA) and the encoder:
#   python -m maa_train.models.cli fetch vit-s-dinov2      (or pass MODEL=DIR)
set -euo pipefail
W=${1:-research_work}
P=${PY:-python}
H=benchmarks/research
export PYTHONPATH=${PYTHONPATH:-.} NT=${NT:-2}
M=(); [ -n "${MODEL:-}" ] && M=(--model "$MODEL")

$P $H/prep.py --work "$W" 112 8                                          # data112/*.npz
$P $H/run.py --work "$W" "${M[@]}" name=base lam=-1                      # teacher cache, probes, base on val
$P $H/build_prefix.py --work "$W" "${M[@]}" --first 8 train val          # prefix at block 8
$P $H/build_prefix.py --work "$W" "${M[@]}" --first 10 --via 8 train val # carried to block 10 (was k8to10.py)

C=(steps=150 first=10)
V4=(variants=4 photos=850)
FIX=(lam=0.1 lam_ramp=50 disc_warmup=200 disc_lr=5e-4 disc_width=384 disc_blocks=2 log_every=10)
$P $H/run2.py --work "$W" "${M[@]}" "${C[@]}" name=R_mse lam=0
$P $H/run2.py --work "$W" "${M[@]}" "${C[@]}" name=R_maa lam=0.1 log_every=10
$P $H/run2.py --work "$W" "${M[@]}" "${C[@]}" "${V4[@]}" name=S_mse_v4 lam=0
$P $H/run2.py --work "$W" "${M[@]}" "${C[@]}" "${V4[@]}" "${FIX[@]}" name=S_maa_fix
for s in 1 2; do
  $P $H/run2.py --work "$W" "${M[@]}" "${C[@]}" "${V4[@]}" name=F_mse_v4_s$s lam=0 seed=$s
  $P $H/run2.py --work "$W" "${M[@]}" "${C[@]}" "${V4[@]}" "${FIX[@]}" name=F_maa_fix_s$s seed=$s
done
$P $H/run2.py --work "$W" "${M[@]}" "${C[@]}" "${V4[@]}" name=C_mse_v4_lr3e-4 lam=0 lr=3e-4
$P $H/run2.py --work "$W" "${M[@]}" "${C[@]}" "${V4[@]}" "${FIX[@]}" name=S_maa_fix_lam0.3 lam=0.3

# TEST (1,500-image subset), once, after all decisions (was eval_test.sh, NT=1)
$P $H/build_prefix.py --work "$W" "${M[@]}" --first 10 test
NT=1 $P $H/run2.py --work "$W" "${M[@]}" first=10 name=base lam=-1 split=test
for n in R_mse R_maa S_mse_v4 S_maa_fix F_mse_v4_s1 F_maa_fix_s1 F_mse_v4_s2 F_maa_fix_s2; do
  NT=1 $P $H/run2.py --work "$W" "${M[@]}" first=10 name=$n lam=0 split=test evalonly=1
done

A=(base=base mse=S_mse_v4,F_mse_v4_s1,F_mse_v4_s2 maa=S_maa_fix,F_maa_fix_s1,F_maa_fix_s2 mse_fixed=R_mse maa_pilot=R_maa)
$P $H/summarize.py --work "$W" --json "$W/val3.json" val "${A[@]}" > "$W/val3.md"
$P $H/summarize.py --work "$W" --json "$W/test3.json" test "${A[@]}" > "$W/test3.md"
$P $H/diag.py --work "$W" R_mse R_maa S_mse_v4 S_maa_fix F_mse_v4_s1 F_maa_fix_s1 F_mse_v4_s2 F_maa_fix_s2 \
  C_mse_v4_lr3e-4 S_maa_fix_lam0.3 > "$W/diag.md"
# compare with the recorded runs:
#   python $H/compare_runs.py benchmarks/results/research_vit_s/results "$W/results" --tol 1e-3
