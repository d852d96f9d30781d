#!/usr/bin/env bash
# The GPU measurements issue #5 still lacks, in one run (prepare and run as gpu_bench.sh says,
# carrying .peer):
#   1. masking quality after the same epochs: BiaPy 3.7.1 (ViT-B, batch 6) against napari-ssl at
#      batch 6 and at batch 64 with the linear learning-rate rule, without and with a one-epoch
#      warm-up + cosine decay (TRAIN.LR_SCHEDULER warmupcosine), and at batch 16 (linear rule; the
#      ViT-B step is launch-bound up to a large batch, so 16 should already train at >= 3x BiaPy;
#      the CPU proxy kept quality at 3x the batch), all scored by our test job
#      (masked-pixel MSE / PSNR on the test images): BiaPy's checkpoint is loaded by our test-only
#      job on the same YAML, since the state dicts are identical;
#   2. engine / bare loop at BiaPy's batch 6 (after the pinned, non-blocking copies), and with
#      torch.compile (TRAIN.compile), for crappify;
#   3. inference megapixels/s against BiaPy on the GPU (benchmarks/inference_vs_biapy.py --gpu 0),
#      before torch.compile (a target of the issue; compile is an exploration).
# EPOCHS (default 6) for part 1. Parts run in priority order within BUDGET seconds.
BUDGET=${BUDGET:-480}
TAIL=12
source benchmarks/gpu_parts.sh
export NUM_CPUS=16 NUM_WORKERS=5 VAL_SPLIT=0.1 CHART_FREQ=100 BIAPY_GPU=0
export epochs=${EPOCHS:-6}  # exported: ours() runs in a child shell (part)
edit_yaml() {  # SRC DST KEY=VALUE...: a copy of a BiaPy YAML with dotted keys set
    python3 - "$@" <<'EOF'
import sys, yaml
src, dst, *pairs = sys.argv[1:]
cfg = yaml.safe_load(open(src))
for pair in pairs:
    key, value = pair.split("=", 1)
    *path, last = key.split(".")
    node = cfg
    for part in path:
        node = node.setdefault(part, {})
    node[last] = yaml.safe_load(value)
yaml.safe_dump(cfg, open(dst, "w"))
EOF
}
ours() {  # NAME YAML: napari-ssl's whole job on a YAML: its last epoch, test metrics, errors
    python3 -m napari_ssl --config "$2" --result_dir /tmp/ours --name "$1" --gpu 0 2>&1 \
        | grep -e "^training" -e "epoch $epochs:" -e "test" -e "note: learning rate" \
            -e "^napari-ssl:" -e "Error"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__)"
python3 .peer/make_gpu_dataset.py .peer/sem_retic_2d.tif /tmp/ds 64 512

part biapy_setup 120 bash .peer/biapy_peer.sh offline-setup .peer/whl
part biapy_masking 200 env MAE_EMBED=768 MAE_DEPTH=12 MAE_HEADS=12 BIAPY_TASKS=masking \
    BIAPY_OUT=/tmp/bp/m bash .peer/biapy_peer.sh run /tmp/ds "$epochs" 256 6
yaml=/tmp/bp/m/masking/masking.yaml
ckpt=$(ls /tmp/bp/m/masking/result/masking/checkpoints/*best.pth 2>/dev/null | head -1)
if [ -f "$yaml" ] && [ -n "$ckpt" ]; then
    edit_yaml "$yaml" /tmp/biapy_test.yaml TRAIN.ENABLE=false MODEL.LOAD_CHECKPOINT=true \
        "PATHS.CHECKPOINT_FILE=$ckpt"
    part biapy_model_scored_by_ours 60 ours biapy_scored /tmp/biapy_test.yaml
    edit_yaml "$yaml" /tmp/m_b6.yaml TRAIN.BATCH_SIZE=6
    part ours_masking_b6 90 ours m_b6 /tmp/m_b6.yaml
    lr=$(python3 -c "import yaml; print(float(yaml.safe_load(open('$yaml'))['TRAIN']['LR']) * 64 / 6)")
    edit_yaml "$yaml" /tmp/m_b64.yaml TRAIN.BATCH_SIZE=64 "TRAIN.LR=$lr"
    part ours_masking_b64_linear 90 ours m_b64 /tmp/m_b64.yaml
    lr=$(python3 -c "import yaml; print(float(yaml.safe_load(open('$yaml'))['TRAIN']['LR']) * 16 / 6)")
    edit_yaml "$yaml" /tmp/m_b16.yaml TRAIN.BATCH_SIZE=16 "TRAIN.LR=$lr"
    part ours_masking_b16_linear 90 ours m_b16 /tmp/m_b16.yaml
    edit_yaml /tmp/m_b64.yaml /tmp/m_b64_wc.yaml TRAIN.LR_SCHEDULER.NAME=warmupcosine \
        TRAIN.LR_SCHEDULER.MIN_LR=1.0e-6 TRAIN.LR_SCHEDULER.WARMUP_COSINE_DECAY_EPOCHS=1
    part ours_masking_b64_linear_warmup 90 ours m_b64_wc /tmp/m_b64_wc.yaml
else
    echo "== BiaPy's masking run left no YAML/checkpoint: quality parts skipped"
fi
BENCH="python3 benchmarks/train_throughput.py --data /tmp/ds --task crappify --batch 6 --epochs 3"
part ours_crappify_b6 60 $BENCH --patches-per-epoch 600
part inference_vs_biapy 150 python3 benchmarks/inference_vs_biapy.py --gpu 0 --size 4096 \
    --rounds 1 --epochs 2 --work /tmp/infer
part ours_crappify_b6_compile 120 $BENCH --patches-per-epoch 600 --compile --skip-bare
echo "total $(( $(date +%s) - t0 )) s"
