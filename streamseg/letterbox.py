"""The paper's preprocessing: resize so the longer side is `size` (aspect kept), zero-pad right/bottom.

`Letterbox` holds the exact forward affine (a scale, no offset) so boxes map back to source
pixels exactly; masks go back by pasting the model's RoI mask into the source frame at the
source-space box (`backends.base.paste_to_source`), so a mask is resampled once, never twice.
numpy and OpenCV only: sources and training share `ensure_bgr` without importing torch.
"""
from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Letterbox:
    src_h: int
    src_w: int
    size: int = 512

    @property
    def scale(self) -> float:
        return self.size / max(self.src_h, self.src_w)

    @property
    def inner_hw(self) -> tuple[int, int]:
        """Height and width of the resized image inside the padded square."""
        s = self.scale
        return min(self.size, round(self.src_h * s)), min(self.size, round(self.src_w * s))

    def image(self, img: np.ndarray) -> np.ndarray:
        """H×W(×C) image -> size×size(×C), zero padding right and bottom."""
        h, w = self.inner_hw
        interp = cv2.INTER_AREA if self.scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(img, (w, h), interpolation=interp)
        out = np.zeros((self.size, self.size) + img.shape[2:], dtype=img.dtype)
        out[:h, :w] = resized
        return out

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """Binary mask -> letterboxed binary mask (nearest neighbour)."""
        h, w = self.inner_hw
        resized = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
        out = np.zeros((self.size, self.size), dtype=np.uint8)
        out[:h, :w] = resized
        return out.astype(bool)

    def boxes_to_source(self, boxes: np.ndarray) -> np.ndarray:
        """Letterbox-space x1,y1,x2,y2 -> source pixels (exact inverse of the scale), clipped."""
        b = np.asarray(boxes, dtype=np.float64) / self.scale
        b[..., 0::2] = b[..., 0::2].clip(0, self.src_w)
        b[..., 1::2] = b[..., 1::2].clip(0, self.src_h)
        return b.astype(np.float32)

    def boxes_to_letterbox(self, boxes: np.ndarray) -> np.ndarray:
        return (np.asarray(boxes, dtype=np.float64) * self.scale).astype(np.float32)

    def mask_to_source(self, mask_lb: np.ndarray) -> np.ndarray:
        """A full letterbox-space mask -> source resolution (nearest). Prefer `backends.base.paste_to_source`."""
        h, w = self.inner_hw
        inner = mask_lb[:h, :w].astype(np.uint8)
        return cv2.resize(inner, (self.src_w, self.src_h), interpolation=cv2.INTER_NEAREST_EXACT).astype(bool)


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """Union box x1,y1,x2,y2 (pixel edges) of a binary mask; None when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)
