#!/usr/bin/env bash
# One step of the GPU recipe in benchmarks/README.md per call; run from the repository root on the GPU box
# (python3 3.12 with torch and torchvision, no package registry), with the wheels of .whl/ carried along:
#
#   bash benchmarks/gpu_session.sh bench      # detector_speed.py + profile_step.py          (~3 min)
#   bash benchmarks/gpu_session.sh rpn        # Table 1: six RPN variants, seed 0             (<= 10 min)
#   bash benchmarks/gpu_session.sh rpn-seeds  # leftovers, then seeds 1, 2 of the main three    (<= 10 min)
#   bash benchmarks/gpu_session.sh detector   # Table 3: c4_res5, c5, fpn as Faster R-CNN     (<= 10 min)
#
# Results are written straight into $OUT (so a call cut short still returns what it finished). An
# ablation record copied from an earlier call into results/ is continued, not redone.
set -euo pipefail
step=${1:?usage: gpu_session.sh bench|rpn|rpn-seeds|detector}
OUT=${OUT:-results}

# --- packages: pycocotools and tqdm from the carried wheels; numpy only if the box lacks it ---
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/pycocotools-*.whl .whl/tqdm-*.whl
python3 -c 'import numpy' 2>/dev/null || python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/numpy-*.whl
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

BUDGET_S=500  # of the 600 s a call may run: every ablation step stops starting runs after this
ablate() {  # ablate STAGE VARIANTS SEEDS: continue results/ablation_STAGE.json into $OUT within BUDGET_S
    [ -f "$OUT/ablation_$1.json" ] || { [ -f "results/ablation_$1.json" ] && cp "results/ablation_$1.json" "$OUT/"; } || true
    [ -f data/shapes/val.json ] || python3 -m fpnlab make-data --out data/shapes --train 4000 --val 500 --no-progress
    local minutes
    minutes=$(python3 -c "print(max(0.0, ($BUDGET_S - $SECONDS) / 60))")
    python3 -m fpnlab ablate --stage "$1" --variants "$2" --seeds "$3" --preset gpu --out "$OUT" \
        --time-budget "$minutes" --no-figure --no-progress
}

ROWS=fpn,no_top_down,no_lateral,c4,c5,p2_only  # the main comparison first
case "$step" in
    bench)
        FPNLAB_RESULTS=$OUT python3 benchmarks/detector_speed.py --save | tee "$OUT/detector_speed_cuda.txt"
        for model in r50 torchvision; do
            FPNLAB_RESULTS=$OUT python3 benchmarks/profile_step.py --model "$model" --precision bf16 --save 2>/dev/null \
                | tee "$OUT/profile_step_${model}_cuda.txt"
        done ;;
    rpn) ablate rpn "$ROWS" 0 ;;
    rpn-seeds)  # whatever `rpn` left pending, then seeds 1 and 2 of the main comparison
        ablate rpn "$ROWS" 0
        if [ "$SECONDS" -lt $((BUDGET_S - 120)) ]; then ablate rpn fpn,no_top_down,no_lateral 0,1,2; fi ;;
    detector) ablate detector c4_res5,c5,fpn 0 ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
esac
