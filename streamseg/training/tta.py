"""Mirror test-time augmentation, a lever the cross-validation measures (`train/cv_predict.py --mirror`):
run the model on the image and on its left-right mirror, and score each detection by the mean of
its two views' scores (a view that did not find it counts 0), so an outline is only as sure as the
two views agree. Boxes and masks are the original view's (the mirror's for what only it found).
Evaluation only: it doubles the model's cost per frame.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from ..types import Detection, Inference
from .metrics import box_iou

MATCH_IOU = 0.5  # two views' boxes with at least this IoU are one structure


def unmirror(d: Detection, width: int) -> Detection:
    """A detection found on the mirrored image, in the original image's pixels."""
    x1, y1, x2, y2 = (float(v) for v in d.box)
    box = np.array([width - x2, y1, width - x1, y2], dtype=np.float32)
    return replace(d, box=box, mask=np.ascontiguousarray(d.mask[:, ::-1]))


def merge_views(a: list[Detection], b: list[Detection]) -> list[Detection]:
    """Detections of the two views -> one list, best first: each of `a` paired with its best-IoU
    unpaired match in `b` (IoU >= MATCH_IOU), scored by the mean of the two scores."""
    iou = box_iou(np.array([d.box for d in a]), np.array([d.box for d in b])) if a and b else None
    used: set[int] = set()
    out = []
    for i, d in enumerate(a):
        j = None
        if iou is not None:
            free = [k for k in np.argsort(-iou[i]) if k not in used and iou[i, k] >= MATCH_IOU]
            j = int(free[0]) if free else None
        other = 0.0 if j is None else b[j].score
        if j is not None:
            used.add(j)
        out.append(replace(d, score=(d.score + other) / 2.0))
    out += [replace(d, score=d.score / 2.0) for k, d in enumerate(b) if k not in used]
    return sorted(out, key=lambda d: -d.score)


def mirror_merged(infer: Callable[[np.ndarray], Inference], image: np.ndarray) -> list[Detection]:
    """`infer` on `image` and on its mirror, merged (`merge_views`)."""
    a = infer(image).detections
    width = image.shape[1]
    b = [unmirror(d, width) for d in infer(np.ascontiguousarray(image[:, ::-1])).detections]
    return merge_views(a, b)
