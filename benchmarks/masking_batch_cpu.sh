#!/usr/bin/env bash
# Masking (MAE) quality after the same epochs at a larger batch, on a CPU: a proxy for the GPU row
# of issue #5 (benchmarks/gpu_next.sh measures ViT-B). One small MAE (ViT 192/4/3, token 16, BiaPy's
# 512/8/16 decoder), patch 64, 32 SEM crops of 256², 10 epochs, one thread; batch 4 at BiaPy's lr
# against batches 12 and 16 with the linear rule, and 32 with the linear rule (with and without a
# warm-up) and the square-root rule.
# Prints each run's test line. Usage: bash benchmarks/masking_batch_cpu.sh [EPOCHS]  (~20 min)
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-10}
py=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
"$py" "${PEER_TOOLS:-../shared/tools}/make_gpu_dataset.py" \
    src/napari_ssl/sample_data/sem_retic_2d.tif "$work/ds" 32 256 > /dev/null
run() {  # NAME BATCH LR [LR_SCHEDULER mapping]
    local schedule="{NAME: ''}"
    if [ $# -ge 4 ]; then schedule=$4; fi
    cat > "$work/$1.yaml" <<YAML
SYSTEM: {NUM_WORKERS: 0, SEED: 0}
PROBLEM: {TYPE: SELF_SUPERVISED, NDIM: 2D, SELF_SUPERVISED: {PRETEXT_TASK: masking}}
DATA:
  PATCH_SIZE: (64, 64, 1)
  TRAIN: {PATH: $work/ds/train/x}
  VAL: {FROM_TRAIN: True, SPLIT_TRAIN: 0.25}
  TEST: {PATH: $work/ds/test/x, PADDING: [16, 16]}
AUGMENTOR: {ENABLE: True, VFLIP: True, HFLIP: True, ROT90: True}
MODEL: {ARCHITECTURE: mae, VIT_TOKEN_SIZE: 16, VIT_EMBED_DIM: 192, VIT_NUM_LAYERS: 4,
        VIT_NUM_HEADS: 3, MAE_MASK_TYPE: grid, LOAD_CHECKPOINT: False}
TRAIN: {ENABLE: True, OPTIMIZER: ADAMW, LR: $3, BATCH_SIZE: $2, EPOCHS: $epochs, PATIENCE: -1,
        LR_SCHEDULER: $schedule}
TEST: {ENABLE: True}
YAML
    local s; s=$(date +%s)
    OMP_NUM_THREADS=1 PYTHONPATH=src "$py" -m napari_ssl --config "$work/$1.yaml" \
        --result_dir "$work/out" --name "$1" 2>/dev/null | grep "test mean" | sed "s/^/$1: /"
    echo "$1: wall $(( $(date +%s) - s )) s"
}
run b4_lr1e-4 4 1.0e-4
run b12_linear 12 3.0e-4
run b16_linear 16 4.0e-4
run b32_linear 32 8.0e-4
run b32_linear_warmup 32 8.0e-4 "{NAME: warmupcosine, MIN_LR: 1.0e-5, WARMUP_COSINE_DECAY_EPOCHS: 2}"
run b32_sqrt 32 2.83e-4
rm -rf "$work"
