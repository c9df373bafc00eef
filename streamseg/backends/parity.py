"""How two backends' detections are compared (tests/test_parity.py, benchmarks/gpu_check.py)."""
from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 1.0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return float(2 * np.logical_and(a, b).sum() / s) if s else 1.0


def compare(ref, got) -> tuple[float, float]:
    """Same count required; each reference detection is matched to the candidate box it overlaps
    most (near-tied scores may swap order between backends) -> (min mask Dice, min box IoU)."""
    if len(got) != len(ref):
        raise AssertionError(f"detection count {len(got)} != reference {len(ref)}")
    dices, ious, free = [], [], list(range(len(got)))
    for r in ref:
        j = max(free, key=lambda k: box_iou(r.box, got[k].box))
        free.remove(j)
        ious.append(box_iou(r.box, got[j].box))
        dices.append(dice(r.mask, got[j].mask))
    return min(dices, default=1.0), min(ious, default=1.0)
