"""The one place a compute device is resolved: `select_device` turns "auto" into the GPU when one is
visible (else the CPU) and refuses CUDA where none is visible, in one line naming the flag asked."""
from __future__ import annotations

import torch

from ..types import StreamsegError


def select_device(name: str | torch.device = "auto", flag: str = "--device") -> str:
    """"auto" | "cpu" | "cuda" | "cuda:N" -> the torch device string to run on.

    `flag` names the option the value came from, for the error (e.g. "--compute")."""
    name = str(name)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise StreamsegError(f"{flag} {name}: no CUDA device available")
    return name
