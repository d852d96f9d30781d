#!/usr/bin/env bash
# Quality after the same number of epochs: BiaPy 3.7.1 (batch 6) vs napari-ssl at batch 6 and at
# batch 64 with the square-root and linear learning-rate rules, same BiaPy YAML, same GPU, one run.
# Prepare and run as benchmarks/gpu_bench.sh says (carry .peer); EPOCHS (default 10).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src BIAPY_PEER_HOME=/tmp/bp BIAPY_VENV=/tmp/bp/v \
    BIAPY_PYTHON=python3 NUM_CPUS=16 NUM_WORKERS=5 VAL_SPLIT=0.1 CHART_FREQ=100 BIAPY_GPU=0
epochs=${EPOCHS:-10}
python3 .peer/make_gpu_dataset.py .peer/sem_retic_2d.tif /tmp/ds 64 512
bash .peer/biapy_peer.sh offline-setup .peer/whl > /tmp/setup.log 2>&1 || { tail /tmp/setup.log; exit 1; }
BIAPY_TASKS=crappify BIAPY_OUT=/tmp/bp/q timeout 120 bash .peer/biapy_peer.sh run /tmp/ds "$epochs" 256 6 \
    2>&1 | grep -e "===" -e "Test" -e "epoch $epochs:"
yaml=/tmp/bp/q/crappify/crappify.yaml
ours() {  # NAME BATCH LR
    sed -e "s/BATCH_SIZE: 6/BATCH_SIZE: $2/" -e "s/LR: .*/LR: $3/" "$yaml" > "/tmp/$1.yaml"
    local s=$(date +%s.%N)
    timeout 60 python3 -m napari_ssl --config "/tmp/$1.yaml" --result_dir /tmp/q --name "$1" --gpu 0 \
        2>/dev/null | grep -e "^training" -e "epoch $epochs:" -e "test mean"
    echo "=== $1: wall $(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
}
ours ours_b6 6 1.0E-4
ours ours_b64_sqrt 64 3.27E-4
ours ours_b64_linear 64 1.07E-3
