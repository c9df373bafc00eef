"""Draw one Result: semi-transparent mask + contour, CSA with its unit, CTS flag, score, and the HUD.

Uncalibrated runs show the area in px² marked "uncalibrated" (never a made-up mm²). A frame
without a confident detection shows a clear "no nerve" state; while the source is lost the window
shows the last image dimmed with "SIGNAL LOST" (`lost_screen`).
OpenCV's Hershey fonts are ASCII only: a "²" in a label is drawn as a small raised "2" (`_text`).
The HUD line (`hud_text`) differs by mode: live shows the lag (capture to overlay); a file shows
the processing rate and the model time (there capture to overlay is queueing, not lag).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..types import CTS_CUTOFF_MM2, NERVE_SCORE, Hud, Result

FONT = cv2.FONT_HERSHEY_SIMPLEX
GREEN, RED, YELLOW, WHITE, CYAN = (80, 220, 80), (60, 60, 255), (0, 220, 255), (255, 255, 255), (255, 200, 0)


@dataclass
class Style:
    calibrated: bool
    score_thresh: float = NERVE_SCORE
    cts_cutoff_mm2: float = CTS_CUTOFF_MM2
    alpha: float = 0.35
    colour: tuple[int, int, int] = (0, 200, 255)  # BGR mask fill
    live: bool = False  # the HUD shows the lag (live) or the processing rate and model time (file)


SUP = 0.6  # a superscript's scale, relative to the text's


def _pieces(s: str, scale: float, thick: int) -> list[tuple[str, float, int, int, int]]:
    """`s` cut at each "²": (text, scale, x offset, baseline raise, width) per piece; "²" is a "2"
    at SUP scale raised to the cap line (Hershey fonts have no "²")."""
    out, x = [], 0
    (_, cap), _ = cv2.getTextSize("M", FONT, scale, thick)
    for k, part in enumerate(s.split("²")):
        if k:
            (w, _), _ = cv2.getTextSize("2", FONT, scale * SUP, thick)
            out.append(("2", scale * SUP, x, int(cap * (1 - SUP)) + 1, w))
            x += w + 1
        if part:
            (w, _), _ = cv2.getTextSize(part, FONT, scale, thick)
            out.append((part, scale, x, 0, w))
            x += w
    return out


def text_size(s: str, scale: float, thick: int = 1) -> tuple[int, int, int]:
    """(width, height, baseline) of `s` as `_text` draws it."""
    (_, h), base = cv2.getTextSize(s.replace("²", "") or "M", FONT, scale, thick)
    pieces = _pieces(s, scale, thick)
    return (pieces[-1][2] + pieces[-1][4] if pieces else 0), h, base


def _text(img, s, org, scale, colour, thick=1):
    """`s` on a black box at `org` (bottom-left); returns the line height used."""
    w, h, base = text_size(s, scale, thick)
    x, y = org
    cv2.rectangle(img, (x - 2, y - h - 3), (x + w + 2, y + base), (0, 0, 0), -1)
    for part, sc, dx, up, _ in _pieces(s, scale, thick):
        cv2.putText(img, part, (x + dx, y - up), FONT, sc, colour, thick, cv2.LINE_AA)
    return h + base + 4


def _fmt(v, unit, digits=1):
    return "-" if v is None else f"{v:.{digits}f}{unit}"


def hud_text(hud: Hud, live: bool) -> str:
    """The HUD line. Live: capture-to-overlay time is the lag the user sees ("lag N ms"), and frames
    dropped count. File: every frame waits its turn in a queue, so that time is not lag; the line
    shows the processing rate and the model's time per frame instead."""
    src = f"src {_fmt(hud.source_fps, '', 1)} fps"
    proc = f"proc {_fmt(hud.processed_fps, '', 1)} fps"
    model = f"model {_fmt(hud.model_ms, ' ms', 0)}"
    if live:
        return " | ".join([src, proc, f"lag {_fmt(hud.end_to_end_ms, ' ms', 0)}", model, f"drop {hud.dropped}"])
    return " | ".join([proc, model, src])


def draw(r: Result, style: Style, hud: Hud | None = None) -> np.ndarray:
    img = r.frame.image.copy()
    H, W = img.shape[:2]
    scale = max(0.3, min(1.0, W / 1000))
    thick = 1 if scale < 0.6 else 2
    d, m = r.best, r.measurement
    present = d is not None and m is not None and d.confidence >= style.score_thresh

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
            y += _text(img, f"CSA {shown:.1f} mm² (raw {m.csa_mm2:.1f})", (x, y), scale, WHITE, thick)
            flag = shown >= style.cts_cutoff_mm2
            y += _text(img, (f"CTS? CSA >= {style.cts_cutoff_mm2:g} mm²" if flag else f"below {style.cts_cutoff_mm2:g} mm² cut-off"),
                       (x, y), scale, RED if flag else GREEN, thick)
        else:
            shown = m.area_px_stable if m.area_px_stable is not None else m.area_px
            y += _text(img, f"area {shown:.0f} px² (uncalibrated)", (x, y), scale, WHITE, thick)
        y += _text(img, f"confidence {d.confidence:.2f}", (x, y), scale, CYAN, thick)
    else:
        why = "no nerve" if d is None else f"no nerve (best confidence {d.confidence:.2f})"
        y += _text(img, why, (x, y), scale, YELLOW, thick)

    if hud is not None:
        line = hud_text(hud, style.live)
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
        if hud.signal_lost:  # a drawn frame has a source: while it is lost the window shows lost_screen
            msg = f"signal lost x{hud.signal_lost}"
            (tw, th), _ = cv2.getTextSize(msg, FONT, scale * 0.8, thick + 1)
            _text(img, msg, (max(4, W - tw - 8), 6 + th + 4), scale * 0.8, RED, thick + 1)
    return img


def lost_screen(last: np.ndarray | None, width: int, height: int) -> np.ndarray:
    """What the window shows while the source is gone: the last image dimmed, with SIGNAL LOST."""
    img = (last * 0.35).astype(np.uint8) if last is not None else np.zeros((height, width, 3), np.uint8)
    scale = max(0.5, min(1.5, img.shape[1] / 600))
    (tw, th), _ = cv2.getTextSize("SIGNAL LOST", FONT, scale, 2)
    _text(img, "SIGNAL LOST", ((img.shape[1] - tw) // 2, (img.shape[0] + th) // 2), scale, RED, 2)
    return img
