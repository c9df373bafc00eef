"""Eager PyTorch: CPU or CUDA, FP32 or FP16 (autocast), channels_last, cudnn benchmark."""
from __future__ import annotations

import torch

from .base import Backend


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model: torch.nn.Module, device: str = "cpu", half: bool = False):
        super().__init__(model.streamseg_config, device, half and torch.device(device).type == "cuda")
        self.model = model.eval().to(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            self.model = self.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> list[dict]:
        x = batch.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.half):
            return self.model(list(x))
