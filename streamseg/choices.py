"""Every fixed choice, defined once, torch-free: one `StrEnum` per choice. typer lists and refuses
them (`streamseg X --help` shows each as <a|b|c>), and the code that validates or branches on them
imports them from here. A member is a `str` (`Backend.TORCH == "torch"`); `choice(Enum, value, what)`
turns a plain string into a member or one StreamsegError line.

The precision rule, also once: `resolve_precision` (INT8 is onnxruntime's, on the CPU; FP16 runs on
CUDA, and auto picks it for the compiled backends there)."""
from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from .types import StreamsegError


class Backend(StrEnum):
    """`--backend`: auto is the fastest available on the device (`backends.available`)."""

    AUTO = "auto"
    TORCH = "torch"
    COMPILED = "compiled"
    ONNXRUNTIME = "onnxruntime"
    TENSORRT = "tensorrt"


class ExportFormat(StrEnum):
    """`export --format`."""

    ONNX = "onnx"
    ENGINE = "engine"
    COMPILED = "compiled"


class Precision(StrEnum):
    """`--precision` of file, live, bench (a comma list, without auto) and export: auto is
    `resolve_precision`'s pick."""

    AUTO = "auto"
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class Tracking(StrEnum):
    """`bench --tracking`: a comma list of these (on: windows around the nerve; off: the full frame)."""

    ON = "on"
    OFF = "off"


class Backbone(StrEnum):
    RESNET101 = "resnet101"
    RESNET50 = "resnet50"
    RESNET18 = "resnet18"
    MOBILENET_V3_LARGE = "mobilenet_v3_large"
    MOBILENET_V2 = "mobilenet_v2"


class MaskHead(StrEnum):
    """The mask head's output size in pixels (14 * 2**upsamplings)."""

    M112 = "112"
    M56 = "56"
    M28 = "28"

    @property
    def upsamplings(self) -> int:
        """Transposed convolutions after RoIAlign's 14 px: 28 -> 1, 56 -> 2, 112 -> 3."""
        return (int(self) // 14).bit_length() - 1


class Norm(StrEnum):
    BATCH = "batch"
    GROUP = "group"
    FROZEN = "frozen"


class Schedule(StrEnum):
    CONSTANT = "constant"
    COSINE = "cosine"


class Instances(StrEnum):
    UNION = "union"
    COMPONENTS = "components"


class Subset(StrEnum):
    TRAIN = "train"
    VAL = "val"
    TEST = "test"


class FnRule(StrEnum):
    PAPER = "paper"
    STRICT = "strict"


class BoxKind(StrEnum):
    MASK = "mask"
    REGRESSED = "regressed"


E = TypeVar("E", bound=StrEnum)


def choice(kind: type[E], value, what: str) -> E:
    """`value` as a member of `kind`, or StreamsegError "unknown WHAT 'x': choose one of a, b, c"."""
    try:
        return kind(str(value))
    except ValueError:
        raise StreamsegError(f"unknown {what} {value!r}: choose one of {', '.join(kind)}") from None


def int8_runs(backend, device) -> bool:
    """The INT8 rule: INT8 is onnxruntime's, on the CPU (an INT8 dense graph, backends/onnx_quant.py).
    `backend` or `device` "auto" (not picked yet) may still resolve so."""
    return str(backend) in (Backend.AUTO, Backend.ONNXRUNTIME) and not str(device).startswith("cuda")


FP16_BY_DEFAULT = (Backend.COMPILED, Backend.TENSORRT)  # graphs built for FP16: auto picks it on CUDA


def resolve_precision(precision, backend, device="auto", *, export: bool = False) -> Precision:
    """The precision a run (or `export`) uses. auto: INT8 where it runs (`int8_runs`: onnxruntime on
    the CPU), FP16 for the compiled backends on CUDA (eager torch stays FP32: FP16 did not make it
    faster, benchmarks/RESULTS.md), else FP32. A precision that cannot run there is one
    StreamsegError line.

    `backend` and `device` may still be "auto" (flags checked before the backend is picked): auto then
    stays auto. With `export`, `backend` is the export format, `device` the one the graphs are for,
    and the message names --format (the INT8 copy is built on the CPU)."""
    precision = choice(Precision, precision, "precision")
    if export:
        return _export_precision(precision, str(backend), str(device))
    backend, device = str(backend), str(device)
    cuda, picked = device.startswith("cuda"), Backend.AUTO not in (backend, device)
    if precision == Precision.INT8:
        if not int8_runs(backend, "cpu"):
            raise StreamsegError(f"--precision int8 runs on the onnxruntime backend, not {backend}")
        if not int8_runs(backend, device):
            raise StreamsegError("--precision int8 runs on the CPU: use --compute cpu (or auto)")
    if precision == Precision.FP16:
        if device != Backend.AUTO and not cuda:
            raise StreamsegError("--precision fp16 runs on an NVIDIA GPU: use --compute cuda (the CPU runs fp32 or int8)")
    if precision == Precision.AUTO and picked:
        if int8_runs(backend, device):
            return Precision.INT8
        return Precision.FP16 if cuda and backend in FP16_BY_DEFAULT else Precision.FP32
    return precision


def _export_precision(precision: Precision, fmt: str, device: str) -> Precision:
    """`export --precision`: int8 is an INT8 copy of the onnx graphs (built on the CPU); fp16 builds
    FP16 artefacts (for a GPU: compiled ones on CUDA); auto is what `file` and `live` would run."""
    if precision == Precision.INT8 and fmt != ExportFormat.ONNX:
        raise StreamsegError("--precision int8 builds an ONNX graph for the CPU: use --format onnx")
    if precision == Precision.FP16 and fmt == ExportFormat.COMPILED and not device.startswith("cuda"):
        raise StreamsegError("a compiled FP16 artefact is built on the GPU it runs on: use --compute cuda")
    if precision == Precision.AUTO:
        backend = {ExportFormat.ONNX: Backend.ONNXRUNTIME, ExportFormat.ENGINE: Backend.TENSORRT}.get(fmt, fmt)
        return resolve_precision(precision, backend, device if device != Backend.AUTO else "cpu")
    return precision
