"""Backends share one interface (`Backend.predict`); `load` is the only door to a concrete one."""
from __future__ import annotations

from .base import Backend, ensure_bgr, postprocess, preprocess, to_tensor
from ..types import StreamsegError

BACKENDS = ("auto", "torch")


def load(name: str = "auto", model_path=None, device: str = "cpu", half: bool = False, **overrides) -> Backend:
    """Open a backend by name for a checkpoint (None = the bundled default)."""
    from ..checkpoint import load_model

    if name not in BACKENDS:
        raise StreamsegError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    model = load_model(model_path, device="cpu", **overrides)
    from .torch_eager import TorchBackend

    return TorchBackend(model, device=device, half=half)


__all__ = ["Backend", "load", "BACKENDS", "ensure_bgr", "postprocess", "preprocess", "to_tensor"]
