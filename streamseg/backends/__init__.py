"""Inference backends. `load` is the only door to a concrete one; every backend keeps one contract
(`types.Backend`: `infer(image, roi=None) -> Inference`, name, precision, describe; the torch-run
ones share `base.BackendBase`, which also holds the model's `info`).

Modules, each importing only those below it (no circles):
    __init__ (load, available) -> torch_eager, onnxrt, compiled, tensorrt   one module per backend
    export (`streamseg export`) -> onnx_export, onnx_heads, compiled, tensorrt
    onnx_export -> artefacts, split;  split -> base;  artefacts, device, bn_warmup, parity: leaves
A new backend is a module with `open_<name>(model, info, device, precision, out_dir, log, settings)
-> Backend`
(its artefacts through `artefacts.ensure_artefact` / `load_or_rebuild`), an entry in `_OPENERS`
and `choices.Backend`, and a line in `available`.
"""
from __future__ import annotations

import importlib

from ..settings import Settings, quiet_onnxruntime

quiet_onnxruntime()  # before onnxruntime is first imported
from .base import ensure_bgr, postprocess, preprocess, to_tensor
from .device import select_device
from .. import choices
from ..choices import Precision, choice, resolve_precision
from ..types import Backend

_OPENERS = {  # name -> (module, opener), imported only when asked for
    "torch": ("torch_eager", "open_torch"),
    "onnxruntime": ("onnxrt", "open_onnxruntime"),
    "compiled": ("compiled", "open_compiled"),
    "tensorrt": ("tensorrt", "open_tensorrt"),
}


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


def load(name: str = "auto", model_path=None, device: str = "cpu", *, precision: str = "fp32", model=None, info=None,
         split: bool = False, engines_dir=None, log=None, onnx_heads: bool | None = None,
         settings: Settings | None = None, **overrides) -> Backend:
    """Open a backend by name for a checkpoint (None = the bundled default), or for an in-memory
    `model` with its `info` (a ModelInfo; `overrides` then do not apply).

    `device`: "cpu", "cuda[:N]" or "auto" (`select_device`). `split` (torch only) runs eager torch
    through the split path, as the compiled backends run, so it reports dense/proposals/heads stage
    times (the bench's baseline); the detections are the same. Compiled backends build their
    artefacts into `engines_dir` (default: the user cache, `artefacts.DEFAULT_DIR`) on first use and reuse them while their
    sidecar matches. `onnx_heads` (onnxruntime on CPU) runs the RoI box/mask stacks as ONNX graphs
    too (None: as `settings.ort_heads`; see onnxrt.open_onnxruntime). `auto` picks the fastest available on `device`.
    `precision`: "fp32", "fp16" (CUDA), "int8" (onnxruntime on CPU: an INT8 dense graph,
    `onnx_quant`), or "auto" (`choices.resolve_precision` for the backend `auto` resolves to: what
    `file` and `live` run, FP16 for the compiled backends on CUDA); the backend's `precision` is the
    resolved one, and one that cannot run on `device` is one StreamsegError line. `settings`: the
    runtime knobs (`settings.Settings`; None: read from the environment now).
    """
    name = choice(choices.Backend, name, "backend")
    device = select_device(device, "device")
    choice(Precision, precision, "precision")
    if name == "tensorrt":
        from .tensorrt import import_tensorrt

        import_tensorrt()  # one clear line where TensorRT is missing, before any model work
    if name == "onnxruntime":
        from .onnx_export import require_onnx

        require_onnx(runtime=True)  # the same, for onnx and onnxruntime
    if model is None:
        from ..model.checkpoint import load_checkpoint

        model, info = load_checkpoint(model_path, device="cpu", **overrides)
    elif info is None:
        raise TypeError("backends.load(model=...) needs the model's info (a ModelInfo) too")
    if name == choices.Backend.AUTO:
        name = available(device)[0]
    precision = resolve_precision(precision, name, device).value
    if name != "torch":
        info = info.with_sha256(model)  # artefacts are named by it
    module, opener = _OPENERS[name]
    kw = {"split": split} if name == "torch" else {"onnx_heads": onnx_heads} if name == "onnxruntime" else {}
    settings = settings or Settings.from_env()
    out = engines_dir if engines_dir is not None else settings.engines
    open_ = getattr(importlib.import_module(f".{module}", __name__), opener)
    return open_(model, info, device, precision, out, log, settings, **kw)


__all__ = ["Backend", "load", "available", "select_device", "ensure_bgr", "postprocess", "preprocess",
           "to_tensor"]
