#!/usr/bin/env bash
# The paper's configuration: ResNet101-FPN, mask112, SGD lr 1e-3 momentum 0.9, 150 epochs, the paper's
# augmentation, batch 2, constant learning rate; on a CUDA GPU (mixed precision is on automatically).
# From scratch by default (BatchNorm). With a torchvision COCO Mask R-CNN file, as the paper did:
#   INIT=maskrcnn_resnet50_fpn_coco.pth bash train/paper.sh      (loads every matching layer; frozen BN)
# Multi-GPU: GPUS=4 bash train/paper.sh   (torchrun, DistributedDataParallel)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${DATA:-../shared/data/median-nerve-univpm}"
ARGS=(train --data "$DATA" --backbone resnet101 --mask-head "${HEAD:-112}" --epochs 150 --lr 0.001
      --schedule constant --batch-size 2 --split train/split.json --out "runs/paper/mask${HEAD:-112}.pt")
[ -n "${INIT:-}" ] && ARGS+=(--init "$INIT" --norm frozen)
mkdir -p runs/paper
if [ "${GPUS:-1}" -gt 1 ]; then
  torchrun --standalone --nproc_per_node "$GPUS" -m streamseg "${ARGS[@]}"
else
  streamseg "${ARGS[@]}"
fi
streamseg eval --data "$DATA" --model "runs/paper/mask${HEAD:-112}.pt" --split train/split.json --subset test \
  --json "runs/paper/mask${HEAD:-112}_test.json" --out-dir "runs/paper/mask${HEAD:-112}_test"
