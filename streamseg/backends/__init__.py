"""Inference backends. `load` is the only door to a concrete one; every backend keeps one contract
(`types.Backend`: `infer(image, roi=None) -> Inference`, name, precision, describe; the torch-run
ones share `base.BackendBase`, which also holds the model's `info`).

Modules, each importing only those below it (no circles):
    __init__ (load, available) -> torch_eager, onnxrt, compiled, tensorrt   one module per backend
    export (`streamseg export`) -> onnx_export, onnx_heads, compiled, tensorrt
    onnx_export -> artefacts, split;  split -> base;  artefacts, device, bn_warmup, parity: leaves
A new backend is a module with `open_<name>(model, info, device, half, out_dir, log) -> Backend`
(its artefacts through `artefacts.ensure_artefact` / `load_or_rebuild`), an entry in `_OPENERS`
and `BACKENDS`, and a line in `available`.
"""
from __future__ import annotations

import importlib
import os

# onnxruntime (1.32) writes a telemetry session file, $TMPDIR/.ses, when imported, and left it behind
# every run (or warned "Failed to persist telemetry device ID" where it cannot): no telemetry.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from .artefacts import DEFAULT_DIR
from .base import ensure_bgr, postprocess, preprocess, to_tensor
from .device import select_device
from ..types import Backend, StreamsegError

BACKENDS = ("auto", "torch", "compiled", "onnxruntime", "tensorrt")
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


def default_precision(name: str, device, half: bool = False) -> str:
    """What `--precision auto` runs: INT8 where onnxruntime runs on the CPU (the same TP/FP/FN as
    eager FP32 on the test patients, median Dice -0.003; dense part 2.2-2.6x faster: benchmarks/
    RESULTS.md), else FP32 (or FP16 with `half`)."""
    return "int8" if name == "onnxruntime" and str(device) == "cpu" and not half else "fp32"


def load(name: str = "auto", model_path=None, device: str = "cpu", half: bool = False, *, model=None, info=None,
         split: bool = False, engines_dir=None, log=None, onnx_heads: bool | None = None, precision: str = "fp32",
         **overrides) -> Backend:
    """Open a backend by name for a checkpoint (None = the bundled default), or for an in-memory
    `model` with its `info` (a ModelInfo; `overrides` then do not apply).

    `device`: "cpu", "cuda[:N]" or "auto" (`select_device`). `split` (torch only) runs eager torch
    through the split path, as the compiled backends run, so it reports dense/proposals/heads stage
    times (the bench's baseline); the detections are the same. Compiled backends build their
    artefacts into `engines_dir` (default `engines/`) on first use and reuse them while their
    sidecar matches. `onnx_heads` (onnxruntime on CPU) runs the RoI box/mask stacks as ONNX graphs
    too (None: on for CPU unless STREAMSEG_ORT_HEADS=0; see onnxrt.open_onnxruntime). `auto` picks the fastest available on `device`.
    `precision`: "fp32", "int8" (onnxruntime on CPU: an INT8 dense graph, `onnx_quant`), or "auto"
    (`default_precision` of the backend `auto` resolves to: what `file` and `live` run).
    """
    if name not in BACKENDS:
        raise StreamsegError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    device = select_device(device, "device")
    if precision not in ("auto", "fp32", "int8"):
        raise StreamsegError(f"unknown precision {precision!r}: choose auto, fp32 or int8")
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
    if name == "auto":
        name = available(device)[0]
    if precision == "auto":
        precision = default_precision(name, device, half)
    if precision == "int8" and name != "onnxruntime":
        raise StreamsegError(f"INT8 runs with the onnxruntime backend on CPU, not {name}")
    if name != "torch":
        info = info.with_sha256(model)  # artefacts are named by it
    module, opener = _OPENERS[name]
    kw = ({"split": split} if name == "torch" else {"onnx_heads": onnx_heads, "precision": precision}
          if name == "onnxruntime" else {})
    out = engines_dir if engines_dir is not None else DEFAULT_DIR
    return getattr(importlib.import_module(f".{module}", __name__), opener)(model, info, device, half, out, log, **kw)


__all__ = ["Backend", "load", "available", "select_device", "BACKENDS", "ensure_bgr", "postprocess", "preprocess",
           "to_tensor"]
