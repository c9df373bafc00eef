"""The paper's preprocessing: resize so the longer side is `size` (aspect kept), zero-pad right/bottom;
the same for a tracking window (a crop of the frame, at the full frame's scale, in a smaller square).

`Letterbox` holds the exact forward affine (a scale, no offset) so boxes map back to source
pixels exactly; masks go back by pasting the model's RoI mask into the source frame at the
source-space box (`backends.base.paste_to_source`), so a mask is resampled once, never twice.
numpy and OpenCV only: sources and training share `ensure_bgr` without importing torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np


def ensure_bgr(image: np.ndarray) -> np.ndarray:
    """Grey, BGR or BGRA, 8- or 16-bit -> H×W×3 uint8 BGR."""
    img = np.asarray(image)
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    elif img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.shape[2] == 4:
        img = img[..., :3]
    return np.ascontiguousarray(img)


# square window inputs, multiples of 32 (one compiled graph each). One size, 384 (a 454-px window of
# a 606x468 scan): the model needs the context around the nerve. Second frames of the 22 test-patient
# scans, paper's rule (TP/FP/FN, median Dice), FP32 windows: 192-320 gave 13/1/8 0.908, 320 17/1/4
# 0.908, 384 17/1/4 0.920 = eager's 17/1/4 0.921 (benchmarks/RESULTS.md). The policy takes any sizes.
ROI_SIZES = (384,)
Roi = tuple[int, int, int, int]  # x0, y0, x1, y1 in source pixels (x1, y1 exclusive)


def window_sizes(sizes: Sequence[int], image_size: int) -> tuple[int, ...]:
    """The window inputs worth building for a model run at `image_size`: those smaller than it (a
    window as large as the frame saves nothing; `tracking.Tracker.roi` never asks for one)."""
    return tuple(s for s in sizes if s < image_size)


@dataclass(frozen=True)
class Letterbox:
    """The crop `roi` of an src_h × src_w frame (None: the whole frame), resized at the full frame's
    scale, `frame_size / max(src_h, src_w)`, and zero-padded right/bottom to `size` × `size`.
    `frame_size` (None: `size`) is the full-frame input side; a tracking window (`window`) is a
    smaller square input at the same scale, so the nerve keeps the size the model was trained on."""

    src_h: int
    src_w: int
    size: int = 512
    roi: Roi | None = None
    frame_size: int | None = None

    @classmethod
    def window(cls, roi: Roi, src_h: int, src_w: int, image_size: int, sizes: Sequence[int]) -> Letterbox:
        """The window for `roi` in a frame of src_h × src_w: the full-frame scale (`image_size`), the
        smallest of `sizes` that holds the scaled crop (ValueError when none does)."""
        x0, y0, x1, y1 = (int(v) for v in roi)
        if not (0 <= x0 < x1 <= src_w and 0 <= y0 < y1 <= src_h):
            raise ValueError(f"roi {roi} is not inside the {src_w}x{src_h} frame")
        scale = image_size / max(src_h, src_w)
        need = max(round((x1 - x0) * scale), round((y1 - y0) * scale))
        fit = [s for s in sorted(sizes) if s >= need]
        if not fit:
            raise ValueError(f"roi {roi} needs a {need} px input; the largest window input is {max(sizes, default=0)}")
        return cls(src_h, src_w, fit[0], (x0, y0, x1, y1), image_size)

    @property
    def crop(self) -> Roi:
        """The part of the frame letterboxed: `roi`, or the whole frame."""
        return self.roi or (0, 0, self.src_w, self.src_h)

    @property
    def scale(self) -> float:
        return (self.frame_size or self.size) / max(self.src_h, self.src_w)

    @property
    def inner_hw(self) -> tuple[int, int]:
        """Height and width of the resized crop inside the padded square."""
        x0, y0, x1, y1 = self.crop
        s = self.scale
        return min(self.size, round((y1 - y0) * s)), min(self.size, round((x1 - x0) * s))

    def _fit(self, img: np.ndarray, interp: int) -> np.ndarray:
        x0, y0, x1, y1 = self.crop
        h, w = self.inner_hw
        out = np.zeros((self.size, self.size) + img.shape[2:], dtype=img.dtype)
        out[:h, :w] = cv2.resize(img[y0:y1, x0:x1], (w, h), interpolation=interp)
        return out

    def image(self, img: np.ndarray) -> np.ndarray:
        """H×W(×C) frame -> size×size(×C): its crop resized, zero padding right and bottom."""
        return self._fit(img, cv2.INTER_AREA if self.scale < 1 else cv2.INTER_LINEAR)

    def resize_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """`image`'s resize as two matrices, rows (h × crop height) and columns (w × crop width):
        inner = rows @ crop @ columns.T per channel, OpenCV's weights (`resize_weights`)."""
        x0, y0, x1, y1 = self.crop
        h, w = self.inner_hw
        area = self.scale < 1
        return resize_weights(y1 - y0, h, area), resize_weights(x1 - x0, w, area)

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """Binary mask -> letterboxed binary mask (nearest neighbour)."""
        return self._fit(mask.astype(np.uint8), cv2.INTER_NEAREST_EXACT).astype(bool)

    def boxes_to_source(self, boxes: np.ndarray) -> np.ndarray:
        """Letterbox-space x1,y1,x2,y2 -> source pixels (exact inverse of the scale), clipped to the crop."""
        x0, y0, x1, y1 = self.crop
        b = np.asarray(boxes, dtype=np.float64) / self.scale
        b[..., 0::2] = (b[..., 0::2] + x0).clip(x0, x1)
        b[..., 1::2] = (b[..., 1::2] + y0).clip(y0, y1)
        return b.astype(np.float32)

    def boxes_to_letterbox(self, boxes: np.ndarray) -> np.ndarray:
        x0, y0 = self.crop[:2]
        return ((np.asarray(boxes, dtype=np.float64) - (x0, y0, x0, y0)) * self.scale).astype(np.float32)

    def mask_to_source(self, mask_lb: np.ndarray) -> np.ndarray:
        """A full letterbox-space mask -> source resolution (nearest). Prefer `backends.base.paste_to_source`."""
        x0, y0, x1, y1 = self.crop
        h, w = self.inner_hw
        inner = mask_lb[:h, :w].astype(np.uint8)
        out = np.zeros((self.src_h, self.src_w), dtype=bool)
        out[y0:y1, x0:x1] = cv2.resize(inner, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST_EXACT).astype(bool)
        return out


def resize_weights(n_in: int, n_out: int, area: bool) -> np.ndarray:
    """The n_out × n_in weights of OpenCV's resize along one axis: INTER_AREA's exact pixel-area
    shares when `area` (shrinking), else INTER_LINEAR's (half-pixel centres, edge clamped). A torch
    letterbox built from them (`backends.base.letterbox_tensor`) matches `Letterbox.image` to a grey
    level (OpenCV rounds its linear weights to 1/2048), where torch's own resize modes differ."""
    a = np.zeros((n_out, n_in), dtype=np.float64)
    scale = n_in / n_out
    for d in range(n_out):
        if area and n_out < n_in:  # cv2 resizeArea's computeResizeAreaTab
            f1 = d * scale
            f2 = f1 + scale
            cell = min(scale, n_in - f1)
            s1, s2 = int(np.ceil(f1)), min(int(np.floor(f2)), n_in - 1)
            s1 = min(s1, s2)
            if s1 - f1 > 1e-3:
                a[d, s1 - 1] += (s1 - f1) / cell
            a[d, s1:s2] += 1.0 / cell
            if f2 - s2 > 1e-3:
                a[d, s2] += min(min(f2 - s2, 1.0), cell) / cell
        else:  # INTER_LINEAR (also what INTER_AREA does along an axis it does not shrink)
            f = (d + 0.5) * scale - 0.5
            s = int(np.floor(f))
            f -= s
            if s < 0:
                s, f = 0, 0.0
            if s >= n_in - 1:
                s, f = n_in - 1, 0.0
            a[d, s] += 1.0 - f
            a[d, min(s + 1, n_in - 1)] += f
    return a.astype(np.float32)


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """Union box x1,y1,x2,y2 (pixel edges) of a binary mask; None when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)
