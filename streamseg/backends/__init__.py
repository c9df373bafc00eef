"""Inference backends. `load` is the only door to a concrete one; every backend keeps one contract
(`base.Backend`: name, half, info, describe, predict_one, infer).

Modules, each importing only those below it (no circles):
    __init__ (load, available) -> torch_eager, onnxrt, compiled, tensorrt   one module per backend
    export (`streamseg export`) -> onnx_export, onnx_heads, compiled, tensorrt
    onnx_export -> artefacts, split;  split -> base;  artefacts, device, bn_warmup, parity: leaves
A new backend is a module with `open_<name>(model, info, device, half, out_dir, log) -> Backend`
(its artefacts through `artefacts.ensure_artefact` / `load_or_rebuild`), an entry in `_OPENERS`
and `choices.Backend`, and a line in `available`.
"""
from __future__ import annotations

import importlib
import os

# onnxruntime (1.32) writes a telemetry session file, $TMPDIR/.ses, when imported, and left it behind
# every run (or warned "Failed to persist telemetry device ID" where it cannot): no telemetry.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from .artefacts import DEFAULT_DIR
from .base import Backend, ensure_bgr, postprocess, preprocess, to_tensor
from .device import select_device
from .. import choices
from ..choices import Precision, choice, resolve_precision

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


def load(name: str = "auto", model_path=None, device: str = "cpu", half: bool = False, *, model=None, info=None,
         split: bool = False, engines_dir=None, log=None, onnx_heads: bool | None = None, precision: str = "fp32",
         **overrides) -> Backend:
    """Open a backend by name for a checkpoint (None = the bundled default), or for an in-memory
    `model` with its `info` (a ModelInfo; `overrides` then do not apply).

    `device`: "cpu", "cuda[:N]" or "auto" (`select_device`). `split` (torch only) runs eager torch
    through the split path, as the compiled backends run, so it reports dense/proposals/heads stage
    times (the bench's baseline); the detections are the same. Compiled backends build their
    artefacts into `engines_dir` (default: the user cache, `artefacts.DEFAULT_DIR`) on first use and reuse them while their
    sidecar matches. `onnx_heads` (onnxruntime on CPU) runs the RoI box/mask stacks as ONNX graphs
    too (None: on for CPU unless STREAMSEG_ORT_HEADS=0; see onnxrt.open_onnxruntime). `auto` picks the fastest available on `device`.
    `precision`: "fp32", "int8" (onnxruntime on CPU: an INT8 dense graph, `onnx_quant`), or "auto"
    (`choices.resolve_precision` for the backend `auto` resolves to: what `file` and `live` run;
    INT8 on the CPU keeps eager FP32's TP/FP/FN on the test patients, median Dice -0.003, dense part
    2.2-2.6x faster: benchmarks/RESULTS.md).
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
        from ..checkpoint import load_checkpoint

        model, info = load_checkpoint(model_path, device="cpu", **overrides)
    elif info is None:
        raise TypeError("backends.load(model=...) needs the model's info (a ModelInfo) too")
    if name == choices.Backend.AUTO:
        name = available(device)[0]
    precision = resolve_precision(precision, name, device, half).value
    if name != "torch":
        info = info.with_sha256(model)  # artefacts are named by it
    module, opener = _OPENERS[name]
    kw = ({"split": split} if name == "torch" else {"onnx_heads": onnx_heads, "precision": precision}
          if name == "onnxruntime" else {})
    out = engines_dir if engines_dir is not None else DEFAULT_DIR
    return getattr(importlib.import_module(f".{module}", __name__), opener)(model, info, device, half, out, log, **kw)


__all__ = ["Backend", "load", "available", "select_device", "ensure_bgr", "postprocess", "preprocess",
           "to_tensor"]
