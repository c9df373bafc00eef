"""Backends share one interface (`Backend.predict`); `load` is the only door to a concrete one."""
from __future__ import annotations

from .base import Backend, ensure_bgr, postprocess, preprocess, to_tensor
from .device import select_device
from ..types import StreamsegError

BACKENDS = ("auto", "torch", "compiled", "onnxruntime", "tensorrt")


def available(device: str = "cpu") -> list[str]:
    """Concrete backends usable on `device`, fastest first (the order `auto` tries)."""
    import torch

    from . import onnxrt, tensorrt

    cuda = str(device).startswith("cuda") and torch.cuda.is_available()
    names = []
    if cuda and tensorrt.available():
        names.append("tensorrt")
    if cuda:
        names.append("compiled")
    if onnxrt.available() and (not cuda or onnxrt.cuda_available()):
        names.append("onnxruntime")
    names.append("torch")
    return names


def load(name: str = "auto", model_path=None, device: str = "cpu", half: bool = False, *, model=None,
         engines_dir=None, log=None, **overrides) -> Backend:
    """Open a backend by name for a checkpoint (None = the bundled default) or an in-memory `model`.

    `device`: "cpu", "cuda[:N]" or "auto" (`select_device`). Compiled backends build their
    artefacts into `engines_dir` (default `engines/`) on first use
    and reuse them while their sidecar matches. `auto` picks the fastest available on `device`.
    """
    from .artefacts import DEFAULT_DIR

    if name not in BACKENDS:
        raise StreamsegError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    device = select_device(device, "device")
    if name == "tensorrt":
        from .tensorrt import import_tensorrt

        import_tensorrt()  # one clear line where TensorRT is missing, before any model work
    if model is None:
        from ..checkpoint import load_model

        model = load_model(model_path, device="cpu", **overrides)
    out = engines_dir if engines_dir is not None else DEFAULT_DIR
    if name == "auto":
        name = available(device)[0]
    if name == "torch":
        from .torch_eager import TorchBackend

        return TorchBackend(model, device=device, half=half)
    if name == "onnxruntime":
        from .onnxrt import open_onnxruntime

        return open_onnxruntime(model, device, half, out, log=log)
    if name == "compiled":
        from .compiled import open_compiled

        return open_compiled(model, device, half, out, log=log)
    from .tensorrt import open_tensorrt

    return open_tensorrt(model, device, half, out, log=log)


__all__ = ["Backend", "load", "available", "select_device", "BACKENDS", "ensure_bgr", "postprocess", "preprocess",
           "to_tensor"]
