"""The model split in two, so the costly dense part can be compiled and the rest stays torchvision.

- `DenseNet`: normalisation + backbone + FPN + RPN head. Static shape (B×3×S×S in [0, 1]) in,
  a flat tuple out: the FPN maps, then objectness per level, then box deltas per level. Only
  Conv/Add/Relu/MaxPool/Resize-like ops, so it exports to ONNX and compiles cleanly.
- `SplitBackend`: runs a pluggable dense step (eager, ONNX Runtime, TensorRT, compiled), then
  anchor decoding, top-k and NMS with torchvision's own `RegionProposalNetwork` methods and the
  RoI heads (`model.roi_heads`: MultiScaleRoIAlign, box and mask heads) in torch on the same
  device, or a pluggable heads step with the same signature (`onnx_heads.OrtHeads`). Reusing torchvision's code is what makes every backend match eager results.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable, Sequence

import torch
from torch import nn
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import concat_box_prediction_layers

from ..model.architecture import ModelInfo
from ..types import Precision
from ..letterbox import window_sizes
from .base import BackendBase

# RPN proposals a tracking window hands the RoI heads (the full frame keeps rpn_post_nms_top_n_test,
# 150): on the test patients with simulated motion, 25 keeps Dice and misses (0.801 / 30 misses with
# 150, 0.801 / 30 with 25) and took tracked model time from 1.75x to 2.6x faster than full frames
# (p50, benchmarks/tracking_eval.py, side by side on a loaded 2-core CPU, windows from 160 then).
WINDOW_PROPOSALS = 25
DenseFn = Callable[[torch.Tensor], Sequence[torch.Tensor]]
HeadsFn = Callable[..., tuple]  # (features, proposals, image_sizes) -> (detections, losses), as RoIHeads


class DenseNet(nn.Module):
    """Normalise, backbone + FPN, RPN head -> (*features, *objectness, *box_deltas)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        t = model.transform
        self.register_buffer("mean", torch.tensor(t.image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(t.image_std).view(1, 3, 1, 1), persistent=False)
        self.backbone = model.backbone
        self.head = model.rpn.head
        self.feature_names = feature_names(model)

    def forward(self, x: torch.Tensor):
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        feats = list(self.backbone(x).values())
        objectness, deltas = self.head(feats)
        return (*feats, *objectness, *deltas)


@torch.no_grad()
def feature_names(model: nn.Module) -> list[str]:
    """Names of the FPN maps, in order, from a tiny dry run (eval mode, so BN stats stay)."""
    was = model.backbone.training
    model.backbone.eval()
    p = next(model.backbone.parameters())
    names = list(model.backbone(torch.zeros(1, 3, 64, 64, dtype=p.dtype, device=p.device)).keys())
    model.backbone.train(was)
    return names


def output_names(names: Sequence[str]) -> list[str]:
    """Graph output names for the dense part, in `DenseNet.forward`'s order."""
    return [f"feat_{n}" for n in names] + [f"objectness_{n}" for n in names] + [f"deltas_{n}" for n in names]


class _Clock:
    """Stage stamps: CUDA events on a GPU (no sync until the end), perf_counter on CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks: list[tuple[str, object]] = []
        self.mark("start")

    def mark(self, name: str):
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self.marks.append((name, ev))
        else:
            self.marks.append((name, time.perf_counter()))

    def stages(self) -> dict[str, float]:
        if self.cuda:
            self.marks[-1][1].synchronize()
            return {n: a.elapsed_time(b) / 1000.0 for (_, a), (n, b) in zip(self.marks, self.marks[1:])}
        return {n: b - a for (_, a), (n, b) in zip(self.marks, self.marks[1:])}


class EagerDense:
    """The dense part in eager torch (FP16 via autocast on CUDA): the reference and the fallback."""

    kind = "eager"

    def __init__(self, net: DenseNet, device: torch.device, half: bool):
        self.net = net.eval().to(device)
        self.half = half
        if device.type == "cuda":
            self.net = self.net.to(memory_format=torch.channels_last)

    def __call__(self, x: torch.Tensor) -> Sequence[torch.Tensor]:
        with torch.autocast(x.device.type, dtype=torch.float16, enabled=self.half):
            return self.net(x)


class SizedDense:
    """One dense step per square input size: `full` at the model's size, the others (window sizes,
    for tracking) made by `make(size)`, e.g. one static ONNX graph each: all at once by `prepare`
    (before the first frame), else on first use."""

    def __init__(self, full: DenseFn, make: Callable[[int], DenseFn], size: int):
        self.make = make
        self.steps: dict[int, DenseFn] = {size: full}

    def prepare(self, sizes: Sequence[int]) -> None:
        """Make the steps for `sizes` now (a live session must not stall on its first window)."""
        for s in sizes:
            if s not in self.steps:
                self.steps[s] = self.make(s)

    def __call__(self, x: torch.Tensor) -> Sequence[torch.Tensor]:
        size = int(x.shape[-1])
        if size not in self.steps:
            self.steps[size] = self.make(size)
        return self.steps[size](x)


class SplitBackend(BackendBase):
    """Dense step pluggable; proposals and RoI heads are torchvision's, in torch, on `device`.
    `roi_sizes`: the window inputs the dense step runs at (an eager or `SizedDense` step; none for
    a single static graph), so `infer(image, roi)` works; anchors are cached per input shape."""

    name = "split"

    def __init__(self, model: nn.Module, info: ModelInfo, dense: DenseFn, device: str = "cpu",
                 precision: Precision = "fp32", name: str | None = None, heads: HeadsFn | None = None,
                 roi_sizes: tuple[int, ...] = ()):
        super().__init__(info, device, precision)
        self.roi_sizes = tuple(roi_sizes)
        self.window_proposals = WINDOW_PROPOSALS  # RPN proposals kept for a tracking window (0: as the full frame)
        if name:
            self.name = name
        self.model = model.eval().to(self.device)
        self.rpn = self.model.rpn
        self.names = feature_names(self.model)
        self.dense = dense
        self.heads = heads or self.model.roi_heads  # onnx_heads.OrtHeads runs the box/mask stacks in ORT
        self._anchors: dict[tuple, list[torch.Tensor]] = {}

    def prepare_windows(self) -> None:
        """One dense step per window size smaller than the frame's, built now (`SizedDense.prepare`)."""
        if isinstance(self.dense, SizedDense):
            self.dense.prepare(window_sizes(self.roi_sizes, self.config.image_size))

    def _anchors_for(self, images: ImageList, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Anchors depend only on shapes (static here): torchvision's generator, computed once."""
        key = (tuple(images.tensors.shape), tuple(f.shape[-2:] for f in feats), feats[0].dtype)
        if key not in self._anchors:
            self._anchors[key] = self.rpn.anchor_generator(images, feats)
        return self._anchors[key]

    def proposals(self, x: torch.Tensor, outs: Sequence[torch.Tensor]):
        """torchvision's RegionProposalNetwork.forward after its head, at inference."""
        n = len(self.names)
        feats = [o.float() for o in outs[:n]] if not self.half else list(outs[:n])
        objectness = [o.float() for o in outs[n:2 * n]]
        deltas = [o.float() for o in outs[2 * n:3 * n]]
        size = x.shape[-1]  # image_size, or a window's input size (tracking)
        images = ImageList(x, [(size, size)] * x.shape[0])
        anchors = self._anchors_for(images, objectness)  # same grids as the features, float32
        num_anchors_per_level = [o[0].shape[0] * o[0].shape[1] * o[0].shape[2] for o in objectness]
        obj, pred = concat_box_prediction_layers(objectness, deltas)
        boxes = self.rpn.box_coder.decode(pred, anchors).view(x.shape[0], -1, 4)
        proposals, _ = self.rpn.filter_proposals(boxes, obj, images.image_sizes, num_anchors_per_level)
        if size != self.config.image_size and self.window_proposals:  # a tracking window: fewer RoIs
            proposals = [p[:self.window_proposals] for p in proposals]  # kept best first (NMS order)
        features = OrderedDict(zip(self.names, feats))
        return features, proposals, images.image_sizes

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> tuple[list[dict], dict[str, float]]:
        clock = _Clock(self.device)
        x = batch.to(self.device, non_blocking=True)
        outs = self.dense(x)
        clock.mark("dense")
        features, proposals, sizes = self.proposals(x, outs)
        clock.mark("proposals")
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.half):
            detections, _ = self.heads(features, proposals, sizes)
        clock.mark("heads")
        return detections, clock.stages()
