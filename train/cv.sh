#!/usr/bin/env bash
# Patient-wise 4-fold cross-validation of the recipes compared in train/RESULTS.md, on the same
# folds (seed 0), each fold resumable: rerun after an interruption and it goes on where it stopped.
#   bash train/cv.sh [RECIPE ...]      RECIPE: mnv2 (default) | v3-scratch
# Each writes runs/cv/RECIPE/{folds.json,foldN/,cv.md,cv.json}; about 40 min a fold on 2 idle CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${DATA:-../shared/data/median-nerve-univpm}"
NEG="${NEG:-../shared/data/negatives}"
OUT="${OUT:-runs/cv}"
COMMON=(--data "$DATA" --negatives "$NEG" --mask-head 112 --fpn-channels 128 --mask-head-width 128 --box-head-width 256
        --intensity-aug --hflip --batch-size 4 --schedule cosine --epochs 10 --folds 4 --seed 0)
recipe() {
  case "$1" in
    # ImageNet MobileNetV2 (torchvision's weights; see README, 'Pretrained backbone'), frozen BatchNorm
    mnv2) streamseg train "${COMMON[@]}" --backbone mobilenet_v2 --pretrained --norm frozen --lr 0.005 --out "$OUT/mnv2/model.pt" ;;
    # today's bundled architecture from scratch (BatchNorm), the same epochs
    v3-scratch) streamseg train "${COMMON[@]}" --backbone mobilenet_v3_large --norm batch --lr 0.01 --out "$OUT/v3-scratch/model.pt" ;;
    *) echo "unknown recipe $1 (mnv2, v3-scratch)" >&2; exit 2 ;;
  esac
}
for r in "${@:-mnv2}"; do recipe "$r"; done
