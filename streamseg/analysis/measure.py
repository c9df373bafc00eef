"""A binary mask at source resolution -> a Measurement; the stabiliser for the displayed CSA; and
`Analyser`, the analyse step (best detection -> stabilised measurement) of every pipeline run.

Areas are pixel counts of the mask pasted back at source resolution (so a 1-px spacing error
is the only calibration term); perimeter and ellipse come from the largest outer contour.
One isotropic spacing (mm per pixel) is used: ultrasound scan converters emit square pixels.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Sequence

import cv2
import numpy as np

from ..types import CONFIDENT_SCORE, STABLE_WINDOW, Detection, Measurement


def measure(mask: np.ndarray, mm_per_px: float | None = None) -> Measurement | None:
    """Measure a boolean H×W mask; None when the mask is empty.

    `mm_per_px=None` means uncalibrated: every mm field stays None (never a made-up mm²).
    """
    m = np.asarray(mask, dtype=bool)
    area_px = float(np.count_nonzero(m))
    if area_px == 0:
        return None
    contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    perimeter_px = float(sum(cv2.arcLength(c, True) for c in contours))
    largest = max(contours, key=cv2.contourArea)
    if len(largest) >= 5:
        (_, _), (d1, d2), _ = cv2.fitEllipse(largest)
        major, minor = float(max(d1, d2)), float(min(d1, d2))
    else:  # a speck: fall back to the bounding box
        _, _, w, h = cv2.boundingRect(largest)
        major, minor = float(max(w, h)), float(min(w, h))
    circularity = float(4 * math.pi * area_px / perimeter_px**2) if perimeter_px > 0 else 0.0
    flattening = major / minor if minor > 0 else float("inf")
    cal = mm_per_px is not None
    return Measurement(
        area_px=area_px,
        csa_mm2=area_px * mm_per_px**2 if cal else None,
        perimeter_px=perimeter_px,
        perimeter_mm=perimeter_px * mm_per_px if cal else None,
        major_axis_px=major,
        minor_axis_px=minor,
        circularity=circularity,
        flattening=flattening,
    )


class Stabiliser:
    """Running median of the area over the last `window` confident frames (score >= `confident`).

    `update` fills `area_px_stable` / `csa_mm2_stable` on the measurement it is given; frames
    below the confidence threshold do not enter the window but still show the current median.
    """

    def __init__(self, window: int = STABLE_WINDOW, confident: float = CONFIDENT_SCORE):
        if window < 1:
            raise ValueError("window must be >= 1")
        self.confident = confident
        self._area = deque(maxlen=window)
        self._csa = deque(maxlen=window)

    def update(self, score: float | None, m: Measurement | None) -> Measurement | None:
        if m is None:
            return None
        if score is not None and score >= self.confident:
            self._area.append(m.area_px)
            if m.csa_mm2 is not None:
                self._csa.append(m.csa_mm2)
        m.area_px_stable = float(np.median(self._area)) if self._area else None
        m.csa_mm2_stable = float(np.median(self._csa)) if (self._csa and m.csa_mm2 is not None) else None
        return m


class Analyser:
    """The analyse step of `file`, `live` and the live benchmark: measure the best detection's mask
    (in mm when `mm_per_px` is known) and stabilise the displayed area over confident frames."""

    def __init__(self, mm_per_px: float | None = None, window: int = STABLE_WINDOW, confident: float = CONFIDENT_SCORE):
        self.mm_per_px = mm_per_px
        self.stabiliser = Stabiliser(window, confident)

    def __call__(self, detections: Sequence[Detection]) -> Measurement | None:
        if not detections:
            return None
        best = detections[0]  # backends return the best first
        return self.stabiliser.update(best.confidence, measure(best.mask, self.mm_per_px))
