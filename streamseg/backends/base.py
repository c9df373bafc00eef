"""One interface for every inference backend: images in (BGR uint8, any size), detections out
(boxes, scores and masks in source pixels). Pre- and post-processing are shared here, so backends
differ only in how they run the network (`forward`).

`BackendBase` keeps the contract (`types.Backend`): `infer(image, roi=None)` -> an `Inference`
(detections, seconds per stage of that call), `name`, `precision`, `describe()`, `prepare_windows()`.
On a GPU the frame is resident (`letterbox_tensor`): its uint8 bytes go up once, the letterbox and
the mask paste run there, and only the detections' boxes, scores and masks come back; on the CPU
the letterbox is OpenCV's (`letterbox.Letterbox.image`), as in training.
With `roi` (x0, y0, x1, y1 in source pixels) only that window is run: cropped, letterboxed at the
full frame's scale into the smallest of `roi_sizes` that holds it (`letterbox.Letterbox.window`), and the
detections come back in full-frame pixels (masks H×W). A backend also holds its model's identity,
`info` (a `ModelInfo`: config, source, sha256, meta)."""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torchvision.models.detection.roi_heads import expand_boxes, expand_masks

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
    """Paste N×1×M×M RoI mask probabilities at their source-space boxes -> N×H×W bool.

    torchvision's paste (`paste_masks_in_image`, padding 1: the same expanded boxes, the same
    bilinear resize, so the same pixels), done box by box: each mask is resized and thresholded on
    its own device inside its box only, and only that box's bits come back to the host; the box
    arithmetic runs on the host, so a GPU is never asked for a box's size."""
    n = roi_masks.shape[0]
    out = np.zeros((n, src_h, src_w), dtype=bool)
    if n == 0:
        return out
    masks, scale = expand_masks(roi_masks.float(), padding=1)
    boxes = expand_boxes(torch.as_tensor(np.asarray(boxes_src), dtype=torch.float32).reshape(-1, 4), scale)
    for i, (bx0, by0, bx1, by1) in enumerate(boxes.to(torch.int64).tolist()):
        x0, x1, y0, y1 = max(bx0, 0), min(bx1 + 1, src_w), max(by0, 0), min(by1 + 1, src_h)
        if x1 <= x0 or y1 <= y0:
            continue  # the box lies outside the frame
        size = (max(by1 - by0 + 1, 1), max(bx1 - bx0 + 1, 1))
        m = F.interpolate(masks[i:i + 1], size=size, mode="bilinear", align_corners=False)[0, 0]
        out[i, y0:y1, x0:x1] = (m[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0] > threshold).cpu().numpy()
    return out


@lru_cache(maxsize=16)
def mask_scores(roi_masks: torch.Tensor, threshold: float = 0.5) -> np.ndarray:
    """N×1×M×M RoI mask probabilities -> (N,) the mean probability over each mask's outline (its
    pixels over `threshold`; 0 for an empty mask): how sure the mask head is of the outline. One
    reduction on the masks' device; only N numbers come back."""
    p = roi_masks.float().flatten(1)
    fg = p > threshold
    mean = (p * fg).sum(1) / fg.sum(1).clamp(min=1)
    return mean.cpu().numpy().astype(np.float64)


def _resize_weights(lb: Letterbox, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """`lb`'s resize matrices on `device`, made once per frame geometry (a stream keeps one)."""
    rows, cols = lb.resize_weights()
    return torch.from_numpy(rows).to(device), torch.from_numpy(cols.T.copy()).to(device)


def letterbox_tensor(image: np.ndarray, lb: Letterbox, device: str | torch.device) -> torch.Tensor:
    """`lb.image` made on `device` from the uint8 frame -> 1×3×S×S float RGB in [0, 1]. Only the
    crop's bytes are uploaded; the resize runs there as two matrix products with OpenCV's own
    weights (`Letterbox.resize_weights`: the model sees what it was trained on, to a grey level),
    rounded to 8 bits as OpenCV's output is, zero padding right and bottom."""
    device = torch.device(device)
    x0, y0, x1, y1 = lb.crop
    crop = torch.from_numpy(np.ascontiguousarray(ensure_bgr(image)[y0:y1, x0:x1]))
    x = crop.to(device, non_blocking=True).permute(2, 0, 1).flip(0).float()  # 3×h×w RGB, 0-255
    rows, cols = _resize_weights(lb, device)
    h, w = lb.inner_hw
    out = x.new_zeros((1, 3, lb.size, lb.size))
    out[0, :, :h, :w] = torch.matmul(torch.matmul(rows, x), cols).round_().clamp_(0, 255)
    return out.div_(255.0)


def input_batch(image: np.ndarray, lb: Letterbox, device: torch.device) -> torch.Tensor:
    """The 1×3×S×S model input of `image` letterboxed by `lb`: made on the GPU from the uploaded
    frame where `device` is CUDA (`letterbox_tensor`), else OpenCV's letterbox on the CPU, as in training."""
    if device.type == "cuda":
        return letterbox_tensor(image, lb, device)
    return to_tensor(lb.image(ensure_bgr(image)))[None]


def frame_letterbox(image: np.ndarray, size: int, roi: Roi | None = None, sizes: Sequence[int] = ()) -> Letterbox:
    """The letterbox of one frame (`roi` None) or of its window `roi` (`Letterbox.window`: S from `sizes`)."""
    h, w = image.shape[:2]
    if roi is None:
        return Letterbox(h, w, size)
    try:
        return Letterbox.window(roi, h, w, size, sizes)
    except ValueError as e:
        raise StreamsegError(str(e)) from None


def preprocess(images: Sequence[np.ndarray], size: int) -> tuple[torch.Tensor, list[Letterbox]]:
    """Frames -> a B×3×S×S batch on the CPU (OpenCV's letterbox, as in training) and their letterboxes."""
    lbs = [frame_letterbox(im, size) for im in images]
    batch = torch.stack([to_tensor(lb.image(ensure_bgr(im))) for lb, im in zip(lbs, images)])
    return batch, lbs


def postprocess(outputs: list[dict], lbs: list[Letterbox], mask_threshold: float = 0.5,
                box_from_mask: bool = True) -> list[list[Detection]]:
    """Model outputs (letterbox-space boxes, RoI masks) -> detections in source pixels, best first
    (by the detector's score), each with its mask score (`mask_scores`).

    With `box_from_mask` the reported box is the tight box of the pasted mask (the regressed box
    when the mask is empty): the outline the user sees and the box the metrics score agree."""
    results = []
    for out, lb in zip(outputs, lbs):
        scores = out["scores"].float().cpu().numpy()
        order = np.argsort(-scores, kind="stable")
        boxes_src = lb.boxes_to_source(out["boxes"].float().cpu().numpy()[order])
        roi_masks = out["masks"][order]
        masks = paste_to_source(roi_masks, boxes_src, lb.src_h, lb.src_w, mask_threshold)
        certainty = mask_scores(roi_masks, mask_threshold)
        dets = []
        for i, b, m, c in zip(order, boxes_src, masks, certainty):
            tight = mask_box(m) if box_from_mask else None
            dets.append(Detection(box=b if tight is None else tight, score=float(scores[i]), mask=m,
                                  mask_score=float(c)))
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
        """Letterboxed batch (B×3×S×S float in [0,1], on the CPU or already on the backend's device) -> (per-image dicts of boxes
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
        lb = frame_letterbox(image, self.config.image_size, roi, self.roi_sizes)
        batch = input_batch(image, lb, self.device)  # on a GPU: one upload of the frame's bytes
        t1 = time.perf_counter()
        outputs, inner = self.forward(batch)
        t2 = time.perf_counter()
        dets = postprocess(outputs, [lb], box_from_mask=self.config.box_from_mask)
        t3 = time.perf_counter()
        return Inference(dets[0], {"preprocess": t1 - t0, "model": t2 - t1, "paste": t3 - t2, **inner})

    def describe(self) -> str:
        return f"{self.name} ({self.device.type}, {self.precision}, {self.config.backbone}, mask{self.config.mask_head})"
