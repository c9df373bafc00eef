"""`streamseg export`: build one artefact format into an engines folder (see `artefacts` for names and
sidecars). The top of the artefact graph: it imports the format modules, and none imports it."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from ..model.architecture import ModelInfo
from ..choices import ExportFormat, Precision, choice, resolve_precision
from .artefacts import DEFAULT_DIR, artefact_path, ensure_dir, sidecar_path
from .compiled import ensure_compiled
from .device import select_device
from .onnx_export import ensure_onnx, export_onnx, require_onnx
from .onnx_heads import ensure_heads
from .tensorrt import ensure_engine
from ..letterbox import ROI_SIZES, window_sizes



def build(model: nn.Module, info: ModelInfo, fmt: str, out_dir: str | Path = DEFAULT_DIR, batch: int = 1,
          device: str | None = None, log=None, precision: str = "fp32") -> list[Path]:
    """Build one artefact format for `model`; returns the files written (sidecars included).
    `precision="int8"` (onnx only): the FP32 graph and its INT8 copy (`onnx_quant.ensure_int8`);
    "fp16": FP16 artefacts (compiled ones on CUDA only: `choices.resolve_precision`)."""
    fmt = choice(ExportFormat, fmt, "export format")
    precision = resolve_precision(precision, fmt, device or "cpu", export=True)
    half = precision == Precision.FP16
    if fmt in ("onnx", "engine"):  # TensorRT builds from the ONNX graph
        require_onnx(runtime=precision == Precision.INT8)
    info = info.with_sha256(model)
    out = ensure_dir(out_dir)
    if fmt == "onnx":  # with the RoI heads graphs that onnxruntime runs on CPU, so `--engines DIR` builds nothing
        path = export_onnx(model, info, artefact_path(info, out, "onnx", batch, half), batch, half)
        # the tracking windows' graphs too, so `file --engines DIR` (read-only) finds all it runs
        windows = [ensure_onnx(model, info, out, batch, half, log, size=s)
                   for s in window_sizes(ROI_SIZES, info.config.image_size)]
        heads = list(ensure_heads(model, info, out, log).values())
        if precision == Precision.INT8:
            from .onnx_quant import ensure_int8

            windows += [ensure_int8(p, log=log, force=True) for p in [path, *windows]]
        return [q for p in [path, *windows, *heads] for q in (p, sidecar_path(p))]
    if fmt == "engine":
        onnx_path = ensure_onnx(model, info, out, batch, False, log)  # TensorRT sets FP16 itself
        path = ensure_engine(info, onnx_path, out, batch, half, force=True, log=log)
        return [onnx_path, path, sidecar_path(path)]
    path = ensure_compiled(model, info, out, select_device(device or "auto"), batch, half, force=True, log=log)
    return [path, sidecar_path(path)]
