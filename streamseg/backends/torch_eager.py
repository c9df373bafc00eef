"""Eager PyTorch: CPU or CUDA, FP32 or FP16 (autocast), channels_last, cudnn benchmark.

`open_torch(..., split=True)` runs the same eager network through the split path (dense part, then
torchvision's proposals and heads): identical detections, plus the dense/proposals/heads stage
times the compiled backends report; `streamseg bench` uses it as its baseline."""
from __future__ import annotations

import torch
from torch import nn

from ..model import ModelInfo
from ..tracking import ROI_SIZES
from .base import BackendBase
from .split import DenseNet, EagerDense, SplitBackend


class TorchBackend(BackendBase):
    name = "torch"

    def __init__(self, model: nn.Module, info: ModelInfo, device: str = "cpu", half: bool = False):
        super().__init__(info, device, half and torch.device(device).type == "cuda")
        self.model = model.eval().to(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            self.model = self.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> tuple[list[dict], dict[str, float]]:
        x = batch.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.half):
            return self.model(list(x)), {}


def open_torch(model: nn.Module, info: ModelInfo, device: str = "cpu", half: bool = False, out_dir=None, log=None,
               split: bool = False) -> BackendBase:
    """Eager torch (no artefacts: `out_dir` and `log` are unused); `split` as the module says."""
    if not split:
        return TorchBackend(model, info, device, half)
    dev = torch.device(device)
    half = half and dev.type == "cuda"
    return SplitBackend(model, info, EagerDense(DenseNet(model), dev, half), device, half, name="torch",
                        roi_sizes=ROI_SIZES)
