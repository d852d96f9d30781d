#!/usr/bin/env bash
# napari-ssl vs BiaPy 3.7.1, whole job on the same BiaPy YAML, on this (CPU) machine, one thread each.
# Usage: bash benchmarks/cpu_vs_biapy.sh [N_IMAGES SIZE EPOCHS PATCH BATCH]   (default 8 256 2 64 4)
# Needs the BiaPy venv (bash ../shared/tools/biapy_peer.sh setup) and this repo's venv in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-8} size=${2:-256} epochs=${3:-2} patch=${4:-64} batch=${5:-4}
tools=${PEER_TOOLS:-../shared/tools}
work=$(mktemp -d)
py=${PYTHON:-.venv/bin/python}
"$py" "$tools/make_gpu_dataset.py" src/napari_ssl/sample_data/sem_retic_2d.tif "$work/ds" "$n" "$size"
NUM_CPUS=1 BIAPY_OUT="$work/biapy" bash "$tools/biapy_peer.sh" run "$work/ds" "$epochs" "$patch" "$batch" \
    > "$work/biapy.out" 2>&1 || true
grep -h "^=== " "$work/biapy/summary.txt"
for task in crappify masking; do
    s=$(date +%s.%N)
    OMP_NUM_THREADS=1 PYTHONPATH=src "$py" -m napari_ssl --config "$work/biapy/$task/$task.yaml" \
        --result_dir "$work/ours" --name "$task" --run_id 1 > "$work/ours_$task.out" 2>&1
    wall=$(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    echo "=== napari-ssl $task: wall ${wall}s; $(grep 'test mean' "$work/ours_$task.out")"
done
grep -h "Test" "$work/biapy/summary.txt" || true
rm -rf "$work"
