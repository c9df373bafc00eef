"""One interface for every inference backend: images in (BGR uint8, any size), detections out
(boxes, scores and masks in source pixels). Pre- and post-processing are shared here, so backends
differ only in how they run the network (`forward`).

`BackendBase` keeps the contract (`types.Backend`): `infer(image, roi=None)` -> an `Inference`
(detections, seconds per stage of that call), `name`, `precision`, `describe()`, `prepare_windows()`.
With `roi` (x0, y0, x1, y1 in source pixels) only that window is run: cropped, letterboxed at the
full frame's scale into the smallest of `roi_sizes` that holds it (`letterbox.Letterbox.window`), and the
detections come back in full-frame pixels (masks H×W). A backend also holds its model's identity,
`info` (a `ModelInfo`: config, source, sha256, meta)."""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

from ..letterbox import ROI_SIZES, Letterbox, Roi, ensure_bgr, mask_box
from ..model.architecture import ModelInfo
from ..types import Detection, Inference, Precision, StreamsegError, Thresholds


def to_tensor(image_lb: np.ndarray) -> torch.Tensor:
    """Letterboxed H×W×3 BGR uint8 -> 3×H×W float RGB in [0, 1]."""
    rgb = np.ascontiguousarray(image_lb[..., ::-1])
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)


def paste_to_source(
    roi_masks: torch.Tensor, boxes_src: np.ndarray, src_h: int, src_w: int, threshold: float = 0.5
) -> np.ndarray:
    """Paste N×1×M×M RoI mask probabilities at their source-space boxes -> N×H×W bool."""
    if roi_masks.numel() == 0:
        return np.zeros((0, src_h, src_w), dtype=bool)
    boxes = torch.as_tensor(boxes_src, dtype=torch.float32, device=roi_masks.device)
    full = paste_masks_in_image(roi_masks.float(), boxes, (src_h, src_w), padding=1)
    return (full[:, 0] > threshold).cpu().numpy()


def preprocess(images: Sequence[np.ndarray], size: int) -> tuple[torch.Tensor, list[Letterbox]]:
    lbs = [Letterbox(im.shape[0], im.shape[1], size) for im in images]
    batch = torch.stack([to_tensor(lb.image(ensure_bgr(im))) for lb, im in zip(lbs, images)])
    return batch, lbs


def preprocess_window(image: np.ndarray, roi: Roi, size: int, sizes: Sequence[int]) -> tuple[torch.Tensor, list[Letterbox]]:
    """One image's window `roi` -> a 1×3×S×S batch (S from `sizes`) and its letterbox (`Letterbox.window`)."""
    h, w = image.shape[:2]
    try:
        lb = Letterbox.window(roi, h, w, size, sizes)
    except ValueError as e:
        raise StreamsegError(str(e)) from None
    return to_tensor(lb.image(ensure_bgr(image)))[None], [lb]


def postprocess(outputs: list[dict], lbs: list[Letterbox], mask_threshold: float = 0.5,
                box_from_mask: bool = True) -> list[list[Detection]]:
    """Model outputs (letterbox-space boxes, RoI masks) -> detections in source pixels, best first.

    With `box_from_mask` the reported box is the tight box of the pasted mask (the regressed box
    when the mask is empty): the outline the user sees and the box the metrics score agree."""
    results = []
    for out, lb in zip(outputs, lbs):
        scores = out["scores"].float().cpu().numpy()
        order = np.argsort(-scores, kind="stable")
        boxes_src = lb.boxes_to_source(out["boxes"].float().cpu().numpy()[order])
        masks = paste_to_source(out["masks"][order], boxes_src, lb.src_h, lb.src_w, mask_threshold)
        dets = []
        for i, b, m in zip(order, boxes_src, masks):
            tight = mask_box(m) if box_from_mask else None
            dets.append(Detection(box=b if tight is None else tight, score=float(scores[i]), mask=m))
        results.append(dets)
    return results


class BackendBase(ABC):
    """`infer(image, roi=None)` -> `Inference`: letterbox, `forward`, paste back to source pixels.
    Concrete backends implement `forward` (which also reports its inner stages)."""

    name: str = "base"
    roi_sizes: tuple[int, ...] = ROI_SIZES  # window inputs `infer(image, roi)` may run at; () = none

    def __init__(self, info: ModelInfo, device: str | torch.device = "cpu", precision: Precision = "fp32"):
        self.info = info
        self.config = info.config
        self.device = torch.device(device)
        self.precision = precision  # what `backends.load` resolved: "fp16" only on CUDA, "int8" only on CPU

    @property
    def half(self) -> bool:
        """FP16 (autocast, FP16 graphs): `precision` says it."""
        return self.precision == "fp16"

    @abstractmethod
    def forward(self, batch: torch.Tensor) -> tuple[list[dict], dict[str, float]]:
        """Letterboxed batch (B×3×S×S float in [0,1], on CPU) -> (per-image dicts of boxes
        (letterbox px), labels, scores, masks (N×1×M×M probabilities); seconds per stage inside
        this call, e.g. dense, proposals, heads, or none)."""

    @property
    def image_size(self) -> int:
        """The full-frame letterbox side (the window scale is image_size / max(H, W))."""
        return self.config.image_size

    @property
    def thresholds(self) -> Thresholds:
        """The model's operating point: its checkpoint's (chosen on its cross-validation), else the defaults."""
        return self.info.thresholds

    def prepare_windows(self) -> None:
        """Build what the window inputs need before the first frame (nothing for eager torch)."""

    def infer(self, image: np.ndarray, roi: Roi | None = None) -> Inference:
        """One image (or its window `roi`) -> its detections in source pixels, best first, and the
        seconds per stage of this call."""
        t0 = time.perf_counter()
        if roi is None:
            batch, lbs = preprocess([image], self.config.image_size)
        else:
            batch, lbs = preprocess_window(image, roi, self.config.image_size, self.roi_sizes)
        t1 = time.perf_counter()
        outputs, inner = self.forward(batch)
        t2 = time.perf_counter()
        dets = postprocess(outputs, lbs, box_from_mask=self.config.box_from_mask)
        t3 = time.perf_counter()
        return Inference(dets[0], {"preprocess": t1 - t0, "model": t2 - t1, "paste": t3 - t2, **inner})

    def describe(self) -> str:
        return f"{self.name} ({self.device.type}, {self.precision}, {self.config.backbone}, mask{self.config.mask_head})"
