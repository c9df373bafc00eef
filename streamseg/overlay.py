"""Draw one Result: semi-transparent mask + contour, CSA with its unit, CTS flag, score, and the HUD.

Uncalibrated runs show the area in px² marked "uncalibrated" (never a made-up mm²). A frame
without a confident detection shows a clear "no nerve" state; a lost source shows "SIGNAL LOST".
OpenCV's Hershey fonts are ASCII only, so units are written mm^2 / px^2.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .types import NERVE_SCORE, Hud, Result

FONT = cv2.FONT_HERSHEY_SIMPLEX
GREEN, RED, YELLOW, WHITE, CYAN = (80, 220, 80), (60, 60, 255), (0, 220, 255), (255, 255, 255), (255, 200, 0)


@dataclass
class Style:
    calibrated: bool
    score_thresh: float = NERVE_SCORE
    cts_cutoff_mm2: float = 10.0
    alpha: float = 0.35
    colour: tuple[int, int, int] = (0, 200, 255)  # BGR mask fill


def _text(img, s, org, scale, colour, thick=1):
    (w, h), base = cv2.getTextSize(s, FONT, scale, thick)
    x, y = org
    cv2.rectangle(img, (x - 2, y - h - 3), (x + w + 2, y + base), (0, 0, 0), -1)
    cv2.putText(img, s, (x, y), FONT, scale, colour, thick, cv2.LINE_AA)
    return h + base + 4


def _fmt(v, unit, digits=1):
    return "-" if v is None else f"{v:.{digits}f}{unit}"


def draw(r: Result, style: Style, hud: Hud | None = None) -> np.ndarray:
    img = r.frame.image.copy()
    H, W = img.shape[:2]
    scale = max(0.3, min(1.0, W / 1000))
    thick = 1 if scale < 0.6 else 2
    d, m = r.best, r.measurement
    present = d is not None and m is not None and d.score >= style.score_thresh

    if present:
        mask = d.mask
        ys, xs = np.nonzero(mask)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        roi = img[y0:y1, x0:x1]
        sub = mask[y0:y1, x0:x1]
        tint = np.empty_like(roi)
        tint[:] = style.colour
        roi[sub] = cv2.addWeighted(roi, 1 - style.alpha, tint, style.alpha, 0)[sub]
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(img, contours, -1, style.colour, thick, cv2.LINE_AA)

    x, y = 6, 6 + int(22 * scale)
    if present:
        if style.calibrated and m.csa_mm2 is not None:
            shown = m.csa_mm2_stable if m.csa_mm2_stable is not None else m.csa_mm2
            y += _text(img, f"CSA {shown:.1f} mm^2 (raw {m.csa_mm2:.1f})", (x, y), scale, WHITE, thick)
            flag = shown >= style.cts_cutoff_mm2
            y += _text(img, (f"CTS? CSA >= {style.cts_cutoff_mm2:g} mm^2" if flag else f"below {style.cts_cutoff_mm2:g} mm^2 cut-off"),
                       (x, y), scale, RED if flag else GREEN, thick)
        else:
            shown = m.area_px_stable if m.area_px_stable is not None else m.area_px
            y += _text(img, f"area {shown:.0f} px^2 (uncalibrated)", (x, y), scale, WHITE, thick)
        y += _text(img, f"score {d.score:.2f}", (x, y), scale, CYAN, thick)
    else:
        why = "no nerve" if d is None else f"no nerve (best score {d.score:.2f})"
        y += _text(img, why, (x, y), scale, YELLOW, thick)

    if hud is not None:
        line = (f"src {_fmt(hud.source_fps, '', 1)} fps | proc {_fmt(hud.processed_fps, '', 1)} fps | "
                f"model {_fmt(hud.model_ms, ' ms', 0)} | e2e {_fmt(hud.end_to_end_ms, ' ms', 0)} | drop {hud.dropped}")
        small = scale * 0.85
        (tw, _), _ = cv2.getTextSize(line, FONT, small, 1)
        if tw > W - 12:  # narrow frames: two lines
            parts = line.split(" | ")
            lines = [" | ".join(parts[:2]), " | ".join(parts[2:])]
        else:
            lines = [line]
        yy = H - 8 - int(18 * small) * (len(lines) - 1)
        for ln in lines:
            _text(img, ln, (x, yy), small, WHITE, 1)
            yy += int(18 * small) + 4
        if hud.lost_now or hud.signal_lost:
            msg = "SIGNAL LOST" if hud.lost_now else f"signal lost x{hud.signal_lost}"
            (tw, th), _ = cv2.getTextSize(msg, FONT, scale * (1.4 if hud.lost_now else 0.8), thick + 1)
            _text(img, msg, (max(4, W - tw - 8), 6 + th + 4), scale * (1.4 if hud.lost_now else 0.8), RED, thick + 1)
    return img


def lost_screen(last: np.ndarray | None, width: int, height: int, style: Style | None = None) -> np.ndarray:
    """What the window shows while the source is gone: the last image dimmed, with SIGNAL LOST."""
    img = (last * 0.35).astype(np.uint8) if last is not None else np.zeros((height, width, 3), np.uint8)
    scale = max(0.5, min(1.5, img.shape[1] / 600))
    (tw, th), _ = cv2.getTextSize("SIGNAL LOST", FONT, scale, 2)
    _text(img, "SIGNAL LOST", ((img.shape[1] - tw) // 2, (img.shape[0] + th) // 2), scale, RED, 2)
    return img
