#!/usr/bin/env bash
# napari-ssl vs BiaPy 3.7.1 on one GPU, side by side in one run (see benchmarks/RESULTS.md).
#
# Prepare on the development machine (the GPU machine has no internet):
#   mkdir -p .peer && cp ../shared/tools/* ../shared/data/sem_retic_2d.tif .peer/
#   bash .peer/biapy_peer.sh wheels .peer/whl
# Run on the GPU machine from the repository root, carrying .peer:
#   bash benchmarks/gpu_bench.sh
# Parts run in priority order and are skipped once the time budget (BUDGET s) runs short.
BUDGET=${BUDGET:-450}
source benchmarks/gpu_parts.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__)"
python3 .peer/make_gpu_dataset.py .peer/sem_retic_2d.tif /tmp/ds 64 512
BENCH="python3 benchmarks/train_throughput.py --data /tmp/ds"

part biapy_setup 120 bash .peer/biapy_peer.sh offline-setup .peer/whl
export NUM_CPUS=16 NUM_WORKERS=5 VAL_SPLIT=0.1 CHART_FREQ=5 BIAPY_GPU=0
part biapy_crappify 110 env BIAPY_TASKS=crappify BIAPY_OUT=/tmp/bp/r1 \
    bash .peer/biapy_peer.sh run /tmp/ds 3 256 6
part ours_crappify_job 70 python3 -m napari_ssl --config /tmp/bp/r1/crappify/crappify.yaml \
    --result_dir /tmp/ours --name crappify --run_id 1 --gpu 0
part ours_crappify_b6 50 $BENCH --task crappify --batch 6 --epochs 3 --patches-per-epoch 600
part ours_crappify_b64 50 $BENCH --task crappify --batch 64 --epochs 3 --patches-per-epoch 3840
part ours_masking_b64 60 $BENCH --task masking --preset base --batch 64 --epochs 2 \
    --patches-per-epoch 3840
part biapy_masking 100 env MAE_EMBED=768 MAE_DEPTH=12 MAE_HEADS=12 BIAPY_TASKS=masking \
    BIAPY_OUT=/tmp/bp/r2 bash .peer/biapy_peer.sh run /tmp/ds 2 256 6
part ours_masking_job 70 python3 -m napari_ssl --config /tmp/bp/r2/masking/masking.yaml \
    --result_dir /tmp/ours --name masking --run_id 1 --gpu 0
part ours_masking_b6 50 $BENCH --task masking --preset base --batch 6 --epochs 2 \
    --patches-per-epoch 600
part inference_memory 60 python3 benchmarks/inference_memory.py --device cuda
echo "total $(( $(date +%s) - t0 )) s"
