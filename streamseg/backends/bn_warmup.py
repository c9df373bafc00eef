"""BatchNorm warm-up: models for benchmarks and parity tests when no trained checkpoint is at hand.
(Not pixel-spacing calibration: that is `streamseg/inputs/calibration.py`.)

An untrained network's BatchNorm layers hold running statistics of mean 0 / variance 1; through a
ResNet101 that makes the features degenerate and the detector finds nothing, which flatters the
heads (no RoIs, no masks). `warm_up_batchnorm` sets the statistics the honest way: it runs the
backbone in train-mode BN over real letterboxed ultrasound images (cumulative average), then
returns to eval. `bench_model` builds the paper's (or a small) architecture from a config,
warms its BatchNorm up, and lowers the score threshold so the configured number of detections exists.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from torch import nn

from ..model.architecture import ModelConfig, ModelInfo, build_model
from ..types import StreamsegError
from .base import preprocess

SAMPLE_IMAGES = Path(__file__).resolve().parents[1] / "data" / "sample" / "images"


def sample_images(folder: str | Path | None = None, limit: int | None = None) -> list[np.ndarray]:
    """Real ultrasound images (BGR uint8), sorted by name: the bundled sample by default."""
    folder = Path(folder) if folder is not None else SAMPLE_IMAGES
    paths = sorted(p for p in folder.glob("*.png"))[:limit]
    images = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]
    images = [im for im in images if im is not None]
    if not images:
        raise StreamsegError(f"{folder}: no readable .png images to warm BatchNorm up on")
    return images


@torch.no_grad()
def warm_up_batchnorm(model: nn.Module, image_size: int, images: Sequence[np.ndarray], batch_size: int = 2) -> int:
    """Set every BatchNorm's running mean/var from `images`; returns how many BN layers were set."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    was_training = model.training
    model.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average over all batches
        bn.train()
    for i in range(0, len(images), batch_size):
        batch, _ = preprocess(images[i:i + batch_size], image_size)
        model.backbone(model.transform.normalize(batch))
    for bn in bns:
        bn.momentum = 0.1
        bn.eval()
    model.train(was_training)
    return len(bns)


def bench_model(backbone: str = "resnet101", mask_head: str = "112", seed: int = 0,
                images: Sequence[np.ndarray] | None = None, **overrides) -> tuple[nn.Module, ModelInfo]:
    """An untrained model of the given architecture with realistic BN statistics (eval mode), and its
    ModelInfo (sha256 of its weights).

    Its score threshold is 0 so that, like a trained model on a nerve, it returns
    `max_detections` detections per frame and the heads do their full work.
    """
    torch.manual_seed(seed)
    cfg = ModelConfig(backbone=backbone, mask_head=mask_head, **{"box_score_thresh": 0.0, **overrides})
    model = build_model(cfg)
    warm_up_batchnorm(model, cfg.image_size, images if images is not None else sample_images())
    meta = {"note": "untrained, BatchNorm warmed up on real images", "seed": seed}
    info = ModelInfo(cfg, source=f"untrained {backbone} mask{mask_head}", meta=meta).with_sha256(model)
    return model.eval(), info
