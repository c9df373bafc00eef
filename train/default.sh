#!/usr/bin/env bash
# The bundled default model, exactly as it was trained (2-core CPU; see train/RESULTS.md):
# a compact MobileNetV3-Large FPN Mask R-CNN with the paper's 112x112 head, from scratch,
# on the patient split in train/split.json, then a second, shorter cosine cycle from the best
# checkpoint, then FP16 storage into the package.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${DATA:-../shared/data/median-nerve-univpm}"
ARCH=(--backbone mobilenet_v3_large --mask-head 112 --fpn-channels 128 --mask-head-width 128 --box-head-width 256)
AUG=(--intensity-aug --hflip --batch-size 4 --schedule cosine --split train/split.json)
mkdir -p runs/default runs/ft runs/ft2
# stage 1: 35 epochs from scratch (140 min on 2 CPU cores)
streamseg train --data "$DATA" "${ARCH[@]}" "${AUG[@]}" --epochs 35 --lr 0.01 --out runs/default/model.pt
# stage 2: 16 more epochs, a fresh cosine cycle from the best stage-1 checkpoint (about 70 min)
streamseg train --data "$DATA" "${ARCH[@]}" "${AUG[@]}" --epochs 16 --lr 0.004 --init runs/default/model.pt --out runs/ft/model.pt
# stage 3: one more such cycle from the last stage-2 checkpoint (about 60 min)
streamseg train --data "$DATA" "${ARCH[@]}" "${AUG[@]}" --epochs 16 --lr 0.003 --init runs/ft/model_last.pt --out runs/ft2/model.pt
# the bundled checkpoint is the last of stage 3 (runs/ft2/model_last.pt): on the validation patients
# it had the best mAP@0.7 of the candidates (the best and last checkpoints of each stage;
# train/RESULTS.md). Evaluate it on the test patients, then store it as FP16 in the package.
streamseg eval --data "$DATA" --model runs/ft2/model_last.pt --split train/split.json --subset val --json runs/ft2/eval_val.json
streamseg eval --data "$DATA" --model runs/ft2/model_last.pt --split train/split.json --subset test --json runs/ft2/eval_test.json --out-dir runs/ft2/eval_test
python train/bundle.py runs/ft2/model_last.pt streamseg/weights/default.pt
