"""INT8 copies of FP32 ONNX graphs (onnxruntime.quantization): static QDQ quantisation with
per-channel INT8 weights and UINT8 activations, calibrated on training-patient scans.

`ensure_int8(fp32_path, ...)` turns any FP32 dense graph (any input size: it is read from the
graph) into `<same name>-int8.onnx` beside it, reused while its sidecar matches: the FP32 graph's
identity (checkpoint sha256, config, input shape), the calibration set's hash and the method. The
calibration scans are letterboxed exactly as the backend does (`base.preprocess`). The bundled set
(`streamseg/data/calib`, 16 training-patient scans) makes the artefact buildable without
../shared; the bundled sample holds test patients and is never used here.
"""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np

from ..files import atomic_write, file_sha256, first_line
from ..letterbox import ensure_bgr
from ..types import StreamsegError
from .artefacts import Building, ensure_artefact, read_sidecar
from .base import preprocess
from .onnx_export import check_onnx, graph_inputs

CALIB_DIR = Path(__file__).resolve().parents[1] / "data" / "calib" / "images"
METHODS = ("MinMax", "Percentile", "Entropy")
DEFAULT_METHOD = "MinMax"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def calibration_files(folder: str | Path = CALIB_DIR) -> list[Path]:
    """The images in `folder`, sorted; a missing or empty folder is one StreamsegError line."""
    folder = Path(folder)
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise StreamsegError(f"{folder}: no calibration images (INT8 needs training-patient scans, PNG/JPEG)")
    return files


def calibration_hash(files: list[Path]) -> str:
    """sha256 over the files' names and bytes, in order: what the sidecar records."""
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def calibration_batches(files: list[Path], size: int) -> list[np.ndarray]:
    """Each file as a 1×3×S×S float32 batch, letterboxed as the backend letterboxes a frame."""
    import cv2

    out = []
    for p in files:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise StreamsegError(f"{p}: not a readable image (calibration set)")
        out.append(preprocess([ensure_bgr(img)], size)[0].numpy())
    return out


def int8_path(fp32_path: str | Path) -> Path:
    """`...-fp32.onnx` -> `...-int8.onnx` beside it (artefacts.artefact_path's naming)."""
    p = Path(fp32_path)
    stem = p.stem[: -len("-fp32")] if p.stem.endswith("-fp32") else p.stem
    return p.with_name(f"{stem}-int8{p.suffix}")


def _graph(fp32_path: Path):
    import onnx

    return onnx.load(str(fp32_path), load_external_data=False).graph


def _input(fp32_path: Path) -> tuple[str, list[int]]:
    inp = _graph(fp32_path).input[0]
    return inp.name, [d.dim_value for d in inp.type.tensor_type.shape.dim]


def stem_conv(fp32_path: str | Path) -> tuple[str, ...]:
    """The first Conv (the stem, on the normalised image), which stays FP32: with it quantised the
    test patients' median Dice fell 0.008 (MinMax), with it FP32 0.003 (benchmarks/RESULTS.md)."""
    return tuple(n.name for n in _graph(Path(fp32_path)).node if n.op_type == "Conv")[:1]


def quantize(fp32_path: str | Path, out_path: str | Path, batches: list[np.ndarray], method: str = DEFAULT_METHOD,
             per_channel: bool = True, exclude: tuple[str, ...] = ()) -> None:
    """Static QDQ INT8 of the graph at `fp32_path` (after quant_pre_process), written atomically;
    the nodes named in `exclude` stay FP32."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in METHODS:
        raise StreamsegError(f"unknown calibration method {method!r}: choose one of {', '.join(METHODS)}")
    name, _ = _input(Path(fp32_path))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {name: x}

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)

        def write(target):
            quantize_static(str(pre), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=getattr(CalibrationMethod, method), nodes_to_exclude=list(exclude),
                            extra_options={"CalibTensorRangeSymmetric": False})

        try:
            atomic_write(out_path, write)
        except StreamsegError:
            raise
        except Exception as e:  # noqa: BLE001 - a graph the quantiser refuses is one clear line
            raise StreamsegError(f"{fp32_path}: INT8 quantisation failed ({first_line(e, 160)})") from None


def int8_meta(fp32_path: Path, calib_sha256: str, method: str) -> dict:
    """What the INT8 sidecar must match: the FP32 graph's identity plus the calibration."""
    import onnxruntime

    src = read_sidecar(fp32_path) or {}
    keep = {k: src[k] for k in ("checkpoint_sha256", "config", "input_shape", "opset") if k in src}
    return {**keep, "format": f"{src.get('format', 'onnx')}-int8", "precision": "int8",
            "source": fp32_path.name, "source_sha256": file_sha256(fp32_path), "quant_format": "QDQ",
            "per_channel": True, "fp32_stem": True, "calibration_sha256": calib_sha256,
            "calibration_method": method, "onnxruntime": onnxruntime.__version__}


def ensure_int8(fp32_path: str | Path, calib_dir: str | Path = CALIB_DIR, method: str = DEFAULT_METHOD,
                log=None, force: bool = False) -> Path:
    """The INT8 copy of the FP32 graph at `fp32_path`, quantised now unless a matching one is there."""
    fp32_path = Path(fp32_path)
    files = calibration_files(calib_dir)
    if not fp32_path.is_file():
        raise StreamsegError(f"{fp32_path}: no FP32 ONNX graph to quantise (streamseg export --format onnx)")
    meta = int8_meta(fp32_path, calibration_hash(files), method)

    def build(path: Path) -> dict:
        _, shape = _input(fp32_path)
        if log:
            log(Building(f"quantising {fp32_path.name} to INT8 ({len(files)} calibration scans, {method})", path))
        keep = stem_conv(fp32_path)
        quantize(fp32_path, path, calibration_batches(files, shape[-1]), method, exclude=keep)
        return {"calibration_images": len(files), "fp32_nodes": list(keep)}

    inputs = graph_inputs(_graph(fp32_path))  # the INT8 copy takes what its FP32 graph takes
    return ensure_artefact(int8_path(fp32_path), meta, build, force=force, check=lambda p: check_onnx(p, inputs),
                           log=log)
