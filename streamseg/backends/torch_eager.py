"""Eager PyTorch: CPU or CUDA, FP32 or FP16 (autocast), channels_last (cudnn benchmark: `Settings.apply`).

`open_torch(..., split=True)` runs the same eager network through the split path (dense part, then
torchvision's proposals and heads): identical detections, plus the dense/proposals/heads stage
times the compiled backends report; `streamseg bench` uses it as its baseline."""
from __future__ import annotations

import torch
from torch import nn

from ..model.architecture import ModelInfo
from ..settings import Settings
from ..types import Precision
from ..letterbox import ROI_SIZES
from .base import BackendBase
from .split import DenseNet, EagerDense, SplitBackend


class TorchBackend(BackendBase):
    name = "torch"

    def __init__(self, model: nn.Module, info: ModelInfo, device: str = "cpu", precision: Precision = "fp32"):
        super().__init__(info, device, precision)
        self.model = model.eval().to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> tuple[list[dict], dict[str, float]]:
        x = batch.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.half):
            return self.model(list(x)), {}


def open_torch(model: nn.Module, info: ModelInfo, device: str = "cpu", precision: Precision = "fp32", out_dir=None,
               log=None, settings: Settings | None = None, split: bool = False) -> BackendBase:
    """Eager torch (no artefacts: `out_dir`, `log` and `settings` are unused); `split` as the module says."""
    if not split:
        return TorchBackend(model, info, device, precision)
    dev = torch.device(device)
    return SplitBackend(model, info, EagerDense(DenseNet(model), dev, precision == "fp16"), device, precision,
                        name="torch", roi_sizes=ROI_SIZES)
