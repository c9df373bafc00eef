"""Shared fixtures: the bundled real sample (always present), ../shared/data (when beside the repo;
required under CI=true, see `shared_data`), and small untrained-but-valid checkpoints for pipeline tests."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "streamseg" / "data" / "sample"
SHARED = Path(os.environ.get("STREAMSEG_SHARED", REPO.parent / "shared")) / "data"

# The suite runs in pytest-xdist workers (README: `-n 2`): each worker's own torch gets its share of
# the cores, so two workers on a 2-core machine do not fight over four spinning OpenMP threads (the
# bundled-model tests ran 7x slower so). The CLI subprocesses the tests start size their own pools.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // WORKERS)))


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def shared_data(name: str, needs: str = "") -> Path:
    """The folder ../shared/data/NAME (STREAMSEG_SHARED replaces ../shared), which must hold `needs`.

    Missing: the test skips on a developer's machine without the data, but fails under CI=true,
    where the data is promised and a skip would hide that it is gone. Every test that reads
    ../shared/data goes through here."""
    p = SHARED / name
    if not (p / needs).is_dir():
        msg = f"real data not beside the repo ({p / needs})"
        if in_ci():
            pytest.fail(f"{msg}: CI=true promises ../shared/data; put it back or set STREAMSEG_SHARED",
                        pytrace=False)
        pytest.skip(msg)
    return p


@pytest.fixture(scope="session")
def univpm_dir() -> Path:
    return shared_data("median-nerve-univpm", needs="images")


@pytest.fixture(scope="session")
def video_dir() -> Path:
    return shared_data("video")


@pytest.fixture(scope="session")
def negatives_dir() -> Path:
    """Nerve-free scans of other anatomy (muscle, fetal head), listed in manifest.csv."""
    return shared_data("negatives")


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    """A small model (MobileNetV3-FPN, mask112) with BatchNorm statistics set on real images (the
    bundled sample, run through the backbone in train-mode BN under no_grad), saved as a real
    checkpoint. Untrained heads: it finds boxes, not nerves. For plumbing tests."""
    from streamseg.backends.bn_warmup import sample_images, warm_up_batchnorm
    from streamseg.model.checkpoint import save_checkpoint
    from streamseg.model.architecture import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(backbone="mobilenet_v3_large", mask_head="112", box_head_width=256, max_detections=2,
                      rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=50)
    model = build_model(cfg)
    assert warm_up_batchnorm(model, cfg.image_size, sample_images()) > 0
    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    save_checkpoint(path, model.eval(), meta={"note": "untrained test model"}, config=cfg)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """The small model at a 256-px letterbox (~3x fewer pixels than 512) with narrow FPN and heads
    (32/64/32 channels; the paper's 112² mask head kept): a real, valid checkpoint for pipeline
    tests that must push hundreds of frames through on CPU, 3.5x faster a frame than at the
    default widths (100 lung-clip frames through `file`: 17 s against 61 s on one busy core). Untrained."""
    from streamseg.model.checkpoint import save_checkpoint
    from streamseg.model.architecture import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(backbone="mobilenet_v3_large", mask_head="112", fpn_channels=32, box_head_width=64,
                      mask_head_width=32, max_detections=2, rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=50,
                      image_size=256)
    model = build_model(cfg)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model.eval(), meta={"note": "untrained test model, 256-px input"}, config=cfg)
    return path


@pytest.fixture(scope="session")
def calibrated_checkpoint(tmp_path_factory) -> Path:
    """A small model (MobileNetV3-FPN, mask112) whose BatchNorm statistics are set on the bundled
    real images and whose score threshold is 0, so every frame has its 2 detections: what parity
    and export tests compare. Untrained heads: it finds boxes, not nerves."""
    from streamseg.backends.bn_warmup import bench_model
    from streamseg.model.checkpoint import save_checkpoint

    model, info = bench_model("mobilenet_v3_large", "112", box_head_width=256, max_detections=2, fpn_channels=128,
                              mask_head_width=128, rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=50)
    path = tmp_path_factory.mktemp("calibrated") / "small-calibrated.pt"
    save_checkpoint(path, model, meta={"note": "untrained, BN calibrated on the bundled sample"}, config=info.config)
    return path


@pytest.fixture(scope="session")
def engines_dir(tmp_path_factory) -> Path:
    """One artefact folder per test session: each graph is exported once and reused."""
    return tmp_path_factory.mktemp("engines")


GT_BOX = np.array([100, 100, 200, 160], np.float32)  # an expert box for constructed metric cases


def box_mask(box, shape=(300, 300)) -> np.ndarray:
    """A boolean mask filling `box` (x1, y1, x2, y2), for constructed metric cases."""
    m = np.zeros(shape, bool)
    x1, y1, x2, y2 = map(int, box)
    m[y1:y2, x1:x2] = True
    return m
