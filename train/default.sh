#!/usr/bin/env bash
# The bundled default model (issue 16), as it was made (train/RESULTS.md, "The bundled model"):
#  1. patient-wise 4-fold cross-validation of the recipe (train/cv.sh mnv2-usgra): the estimate for
#     unseen patients and the pooled held-out predictions the thresholds are chosen on; its first step
#     trains the ImageNet MobileNetV2 detector on usgra-seg's other nerves (usgra/init.pt), which every
#     fold and step 2 start from;
#  2. the same recipe trained on all 83 patients and every nerve-free scan (train/split_all.json:
#     nothing held out; the CV is the estimate), 20 epochs, the last epoch kept;
#  3. the lung-clip check, then FP16 storage into the package with the CV's display and CSA thresholds.
# Time on a 2-core CPU: the usgra pre-training 28 min; one training per core, about 2 h a fold; step 2
# about 2.3 h on one core (1.4 h on both).
# As bundled, the usgra pre-training and all 4 folds are done (train/results/cv/mnv2-usgra: cv.sh copies
# them in first, so step 1 only pools them again).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${DATA:-../shared/data/median-nerve-univpm}"
NEG="${NEG:-../shared/data/negatives}"
INIT=runs/cv/mnv2-usgra/usgra/init.pt
RECIPE=(--backbone mobilenet_v2 --init "$INIT" --norm frozen --freeze-blocks 4 --mask-head 112 --fpn-channels 128
        --mask-head-width 128 --box-head-width 256 --intensity-aug --hflip --batch-size 4 --schedule cosine
        --lr 0.005 --epochs 20)
OUT=runs/cv bash train/cv.sh mnv2-usgra
mkdir -p runs/all
streamseg train --data "$DATA" --negatives "$NEG" "${RECIPE[@]}" --split train/split_all.json --keep-epochs \
  --resume --out runs/all/model.pt
python train/false_positives.py --model runs/all/model_last.pt --json runs/all/false_positives.json ../shared/data/video/*.mp4
python train/bundle.py runs/all/model_last.pt streamseg/weights/default.pt --thresholds runs/cv/mnv2-usgra/cv.json
