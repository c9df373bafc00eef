#!/usr/bin/env bash
# Patient-wise 4-fold cross-validation of the recipes compared in train/RESULTS.md, on the same
# folds (seed 0), each fold resumable: rerun after an interruption and it goes on where it stopped.
#   bash train/cv.sh [RECIPE ...]      RECIPE: mnv2 (default) | mnv2-e20 | mnv2-iou6 | v3-scratch | mnv2-usgra
# Each writes runs/cv/RECIPE/{folds.json,foldN/,cv.md,cv.json}. Two runs share the folds, so on a
# 2-core machine run one per core, each with one torch thread (a 20-epoch fold: about 2 h):
#   for c in 0 1; do taskset -c $c env OMP_NUM_THREADS=1 bash train/cv.sh mnv2-usgra & sleep 60; done
# (mnv2-usgra pre-trains first where its init.pt is missing: start the second run after that.)
# The folds already done are kept in train/results/cv/RECIPE (folds, splits, logs and held-out
# predictions; no checkpoints) and copied in first, so a fresh clone goes on where the last run stopped.
# train/cv_predict.py predicts a finished CV again with its fold models (after what a prediction
# records changed), and with --mirror is the mirror test-time lever (train/RESULTS.md):
#   python train/cv_predict.py runs/cv/mnv2-e20 runs/cv/mnv2-e20-mirror --mirror
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${DATA:-../shared/data/median-nerve-univpm}"
NEG="${NEG:-../shared/data/negatives}"
OUT="${OUT:-runs/cv}"
COMMON=(--data "$DATA" --negatives "$NEG" --mask-head 112 --fpn-channels 128 --mask-head-width 128 --box-head-width 256
        --intensity-aug --hflip --batch-size 4 --schedule cosine --folds 4 --seed 0)
recipe() {
  case "$1" in
    # ImageNet MobileNetV2 (torchvision's weights; see README, 'Pretrained backbone'), frozen BatchNorm
    mnv2) streamseg train "${COMMON[@]}" --epochs 10 --backbone mobilenet_v2 --pretrained --norm frozen --lr 0.005 --out "$OUT/mnv2/model.pt" ;;
    # the same, twice as long (the 10-epoch models were still learning and scored low: train/RESULTS.md)
    mnv2-e20) streamseg train "${COMMON[@]}" --epochs 20 --backbone mobilenet_v2 --pretrained --norm frozen --lr 0.005 --out "$OUT/mnv2-e20/model.pt" ;;
    # mnv2-e20 with the box and mask heads trained on tighter proposals (box IoU >= 0.6 is the nerve,
    # below background; torchvision's 0.5): the CV's wrong outlines are loose boxes on the nerve
    mnv2-iou6) streamseg train "${COMMON[@]}" --epochs 20 --backbone mobilenet_v2 --pretrained --norm frozen --lr 0.005 --box-iou 0.6 --out "$OUT/mnv2-iou6/model.pt" ;;
    # today's bundled architecture from scratch (BatchNorm), the same epochs
    v3-scratch) streamseg train "${COMMON[@]}" --epochs 10 --backbone mobilenet_v3_large --norm batch --lr 0.01 --out "$OUT/v3-scratch/model.pt" ;;
    # the pretrained recipe, first trained on usgra-seg's other nerves (label 1, each component a
    # nerve; its train/ folder of 204 scans, of which the default split trains on 142), then on the
    # median nerve from that model's FP16 copy (usgra/init.pt, kept in train/results/cv/mnv2-usgra so
    # every fold starts from the same weights, whichever session trains it) for as many epochs as
    # mnv2-e20, the recipe it is compared with
    mnv2-usgra)
      PRE="$OUT/mnv2-usgra/usgra"
      if [ ! -f "$PRE/init.pt" ]; then
        streamseg train --data ../shared/data/usgra-seg/train --nerve-label 1 --instances components \
          --backbone mobilenet_v2 --pretrained --norm frozen --mask-head 112 --fpn-channels 128 --mask-head-width 128 \
          --box-head-width 256 --intensity-aug --hflip --batch-size 4 --schedule cosine --lr 0.005 --epochs 10 \
          --split "$PRE/split.json" --resume --out "$PRE/model.pt"
        python train/bundle.py "$PRE/model_last.pt" "$PRE/init.pt"
      fi
      streamseg train "${COMMON[@]}" --epochs 20 --backbone mobilenet_v2 --init "$PRE/init.pt" --norm frozen --freeze-blocks 4 \
        --lr 0.005 --out "$OUT/mnv2-usgra/model.pt" ;;
    *) echo "unknown recipe $1 (mnv2, mnv2-e20, mnv2-iou6, v3-scratch, mnv2-usgra)" >&2; exit 2 ;;
  esac
}
for r in "${@:-mnv2}"; do
  if [ -d "train/results/cv/$r" ]; then mkdir -p "$OUT/$r" && cp -rn "train/results/cv/$r/." "$OUT/$r/"; fi
  recipe "$r"
done
