"""gpu_check's model steps (issue 21, items 1 and 2): one backend at one precision, opened as
`streamseg bench` opens it, checked against the eager FP32 reference and then timed stage by stage.

- The bundled model (trained): its detections on the sample scans against eager torch FP32, same
  count and mask Dice >= DICE_FLOOR (`parity.compare`).
- The paper's R101 mask112 (untrained, `bench_model`): near-tied top detections flip between
  precisions, so its dense outputs (`split.DenseNet`: FPN maps, objectness, box deltas) are compared
  instead: max |candidate - reference| / max |reference| per output, FPN maps and objectness
  <= DENSE_TOL.
The reference runs with TF32 off (true FP32; cuDNN's convolutions use TF32 by default on CUDA).
Torch-only: imported by benchmarks/gpu_check.py."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from streamseg import backends
from streamseg.app.bench import time_backend
from streamseg.backends.artefacts import artefact_path
from streamseg.backends.base import frame_letterbox, input_batch
from streamseg.backends.bn_warmup import bench_model, sample_images
from streamseg.backends.parity import compare
from streamseg.backends.split import DenseNet, SplitBackend
from streamseg.model.architecture import ModelInfo
from streamseg.model.checkpoint import DEFAULT_WEIGHTS, load_checkpoint
from streamseg.types import SHOWN_DETECTIONS

DICE_FLOOR = 0.99  # issue 21: FP16 keeps the trained model's detections, mask Dice >= 0.99
DENSE_TOL = 0.05  # max abs error / max abs value of a dense output (FP16, or TF32 convolutions, vs FP32)
CHECKED_DENSE = ("features", "objectness")  # the deltas are reported, not checked
PAPER = dict(backbone="resnet101", mask_head="112")
# the quick (CPU smoke) mode's stand-in for R101: the small test architecture
SMALL = dict(backbone="mobilenet_v3_large", mask_head="112", box_head_width=256, fpn_channels=128,
             mask_head_width=128, rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=50)


@dataclass
class Loaded:
    """One model of the check, its sample scans and what every backend is compared against:
    detections per scan (bundled) or dense outputs per scan (paper)."""

    label: str  # "bundled" or "paper"
    model: nn.Module
    info: ModelInfo
    description: str
    scans: list[np.ndarray]
    reference: list


@contextmanager
def strict_fp32():
    """TF32 off for cuDNN and matmuls inside (true FP32 on CUDA), restored after."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def load_bundled(device: str, n_scans: int) -> Loaded:
    """The bundled checkpoint as `file` runs it (one detection) and eager FP32's detections on the scans."""
    model, info = load_checkpoint(None, max_detections=SHOWN_DETECTIONS)
    scans = sample_images(limit=n_scans)
    with strict_fp32():
        ref = backends.load("torch", model=model, info=info, device=device, precision="fp32")
        reference = [ref.infer(im).detections for im in scans]
    desc = f"bundled {info.config.backbone} mask{info.config.mask_head} ({DEFAULT_WEIGHTS.name}), trained"
    return Loaded("bundled", model, info, desc, scans, reference)


def load_paper(device: str, n_scans: int, quick: bool) -> Loaded:
    """R101 mask112 as `bench --paper` builds it (the small architecture when `quick`) and its FP32
    dense outputs on the scans."""
    arch = SMALL if quick else PAPER
    model, info = bench_model(**arch, max_detections=SHOWN_DETECTIONS)
    scans = sample_images(limit=n_scans)
    net = DenseNet(model).eval().to(device)
    with strict_fp32(), torch.inference_mode():
        reference = [tuple(o.float() for o in net(model_input(im, info, device))) for im in scans]
    desc = f"{arch['backbone']} mask{arch['mask_head']}, untrained, BatchNorm warmed up on the sample scans"
    return Loaded("paper", model, info, desc, scans, reference)


def model_input(image: np.ndarray, info: ModelInfo, device: str) -> torch.Tensor:
    """The 1×3×S×S letterboxed input a backend makes of `image` on `device` (`BackendBase.infer`)."""
    return input_batch(image, frame_letterbox(image, info.config.image_size), torch.device(device))


def needs_build(loaded: Loaded, backend: str, precision: str, device: str, engines: Path) -> bool:
    """Whether opening `backend` builds an artefact first (eager torch never; compiled: no package
    for these weights and precision in `engines` yet; the others: assumed so)."""
    if backend == "torch":
        return False
    if backend != "compiled":
        return True
    info = loaded.info.with_sha256(loaded.model)
    return not artefact_path(info, engines, f"{torch.device(device).type}.pt2", 1, precision == "fp16").is_file()


def detection_parity(loaded: Loaded, be) -> dict:
    """`be`'s detections on the scans against eager FP32's: same count on every scan, mask Dice >=
    DICE_FLOOR (box IoU reported). Each matched pair as `parity.compare` matches them."""
    got = [be.infer(im).detections for im in loaded.scans]
    counts_ref, counts = [len(d) for d in loaded.reference], [len(d) for d in got]
    pairs = [compare(r, g) for r, g in zip(loaded.reference, got) if len(r) == len(g)]
    min_dice = min((d for d, _ in pairs), default=None)
    min_iou = min((i for _, i in pairs), default=None)
    ok = counts == counts_ref and min_dice is not None and min_dice >= DICE_FLOOR
    return {"reference": "eager torch fp32 (TF32 off)", "scans": len(got), "counts_reference": counts_ref,
            "counts": counts, "same_counts": counts == counts_ref, "min_dice": min_dice, "min_box_iou": min_iou,
            "dice_floor": DICE_FLOOR, "ok": ok}


def dense_parity(loaded: Loaded, be) -> dict:
    """`be`'s dense step on the scans against the FP32 `DenseNet`: per output group (FPN maps,
    objectness, box deltas) the largest max|diff| / max|ref| over its tensors and scans, and
    sum|diff| / sum|ref|; FPN maps and objectness <= DENSE_TOL."""
    if not isinstance(be, SplitBackend):
        return {"ok": None, "skipped": f"{be.name} has no separate dense step to compare"}
    n = len(loaded.reference[0]) // 3
    groups = {"features": slice(0, n), "objectness": slice(n, 2 * n), "deltas": slice(2 * n, 3 * n)}
    worst = {g: 0.0 for g in groups}
    diff_sum, ref_sum = {g: 0.0 for g in groups}, {g: 0.0 for g in groups}
    with torch.inference_mode():
        for im, ref in zip(loaded.scans, loaded.reference):
            out = [o.float() for o in be.dense(model_input(im, loaded.info, be.device))]
            for g, s in groups.items():
                for a, r in zip(out[s], ref[s]):
                    d = (a - r).abs()
                    worst[g] = max(worst[g], float(d.max() / r.abs().max().clamp_min(1e-12)))
                    diff_sum[g] += float(d.sum())
                    ref_sum[g] += float(r.abs().sum())
    mean_rel = {g: diff_sum[g] / ref_sum[g] if ref_sum[g] else 0.0 for g in groups}
    ok = all(np.isfinite(worst[g]) and worst[g] <= DENSE_TOL for g in CHECKED_DENSE)
    return {"reference": "split.DenseNet eager fp32 (TF32 off)", "scans": len(loaded.scans),
            "max_rel_error": worst, "mean_rel_error": mean_rel, "tolerance": DENSE_TOL,
            "checked": list(CHECKED_DENSE), "ok": bool(ok)}


def run_row(loaded: Loaded, backend: str, precision: str, device: str, engines: Path, frames: list[np.ndarray],
            n_timed: int, warmup: int, log: Callable[[str], None]) -> dict:
    """Open `backend` at `precision` (eager torch through the split path, so it has stage times),
    check it (detections or dense outputs) and time it over `frames` (`bench.time_backend`: what
    `file` runs per frame, full frames, in series) -> the row."""
    import time

    t = time.perf_counter()
    be = backends.load(backend, model=loaded.model, info=loaded.info, device=device, precision=precision,
                       split=backend == "torch", engines_dir=engines, log=log)
    row = {"backend": backend, "precision": be.precision, "describe": be.describe(),
           "setup_s": round(time.perf_counter() - t, 2)}
    if loaded.label == "bundled":
        row["parity"] = detection_parity(loaded, be)
    else:
        row["dense_parity"] = dense_parity(loaded, be)
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    summary, memory = time_backend(be, frames, n_timed, warmup)
    row.update(asdict(summary), memory=memory)
    return row


def row_ok(row: dict) -> bool | None:
    """The row's parity verdict: None where it had none."""
    return (row.get("parity") or row.get("dense_parity") or {}).get("ok")


def row_line(row: dict) -> str:
    """One line for the steps' table: parity and model p50."""
    p, d = row.get("parity"), row.get("dense_parity")
    if p is not None:
        check = f"Dice {_num(p['min_dice'])} counts {'equal' if p['same_counts'] else 'DIFFER'}"
    elif d is not None and "max_rel_error" in d:
        check = "dense err " + " ".join(f"{g[:4]} {d['max_rel_error'][g]:.1e}" for g in d["max_rel_error"])
    else:
        check = (d or {}).get("skipped", "no parity")
    return f"{check}; model p50 {row['stages']['model']['p50']:.2f} ms"


def _num(x) -> str:
    return "-" if x is None else f"{x:.4f}"
