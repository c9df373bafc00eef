"""TensorRT 10 engines for the dense part, built from the same ONNX graph (FP16 when asked).

`tensorrt` is an optional extra, imported lazily. Each engine has a sidecar JSON (TensorRT
version, GPU name, compute capability, input shape, precision, checkpoint sha256, ONNX sha256);
any mismatch, or an engine that does not deserialise, rebuilds it. Never run on this project's
CPU-only development machine: written against the TensorRT 10 Python API (named I/O tensors,
build_serialized_network, execute_async_v3).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..files import atomic_write, file_sha256
from ..model.architecture import ModelInfo
from ..settings import Settings
from ..types import Precision, StreamsegError
from .artefacts import DEFAULT_DIR, artefact_path, base_meta, ensure_artefact, load_or_rebuild, read_sidecar
from .device import select_device
from .onnx_export import ensure_onnx
from .split import SplitBackend

WORKSPACE_BYTES = 4 << 30


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise StreamsegError("TensorRT is not installed (pip install 'streamseg[tensorrt]' on a CUDA machine)") from None
    except Exception as e:  # noqa: BLE001 - a broken install (e.g. missing libnvinfer) is one line too
        raise StreamsegError(f"TensorRT cannot be imported here ({type(e).__name__}: {str(e)[:120]})") from None
    if int(trt.__version__.split(".")[0]) < 10:
        raise StreamsegError(f"TensorRT {trt.__version__} is too old: streamseg needs TensorRT 10 or newer")
    return trt


def available() -> bool:
    try:
        import_tensorrt()
    except StreamsegError:
        return False
    return torch.cuda.is_available()


def _expected(trt, info: ModelInfo, onnx_path: Path, batch: int, half: bool) -> dict:
    dev = torch.cuda.current_device()
    return {"format": "streamseg-dense-tensorrt", **base_meta(info, batch, half), "tensorrt": trt.__version__,
            "gpu": torch.cuda.get_device_name(dev), "compute_capability": "%d.%d" % torch.cuda.get_device_capability(dev),
            "onnx_sha256": file_sha256(onnx_path)}


def build_engine(trt, onnx_path: Path, engine_path: Path, half: bool, log=None) -> None:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise StreamsegError(f"{onnx_path}: TensorRT cannot parse it ({errs[:200]})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if half:
        if not builder.platform_has_fast_fp16:
            raise StreamsegError("this GPU has no fast FP16: use --precision fp32")
        config.set_flag(trt.BuilderFlag.FP16)
    if log:
        log(f"building TensorRT engine {engine_path.name} (a few minutes the first time)")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise StreamsegError(f"TensorRT failed to build an engine from {onnx_path}")
    atomic_write(engine_path, lambda tmp: Path(tmp).write_bytes(bytes(serialized)))


def ensure_engine(info: ModelInfo, onnx_path: Path, out_dir=DEFAULT_DIR, batch: int = 1, half: bool = False,
                  force: bool = False, log=None) -> Path:
    trt = import_tensorrt()
    select_device("cuda", "TensorRT engines need")
    onnx_path = Path(onnx_path)
    path = artefact_path(info, out_dir, "engine", batch, half)
    return ensure_artefact(path, _expected(trt, info, onnx_path, batch, half),
                           lambda p: build_engine(trt, onnx_path, p, half, log), force=force, log=log)


class TrtDense:
    """Deserialised engine + one execution context; outputs are preallocated torch tensors."""

    kind = "tensorrt"

    def __init__(self, trt, path: Path, device: torch.device, order: list[str] | None = None):
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise StreamsegError(f"{path}: TensorRT cannot deserialise this engine")
        self.context = self.engine.create_execution_context()
        self.device = device
        self.inputs, outputs = [], {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            dtype = torch.from_numpy(np.empty(0, trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
            shape = tuple(self.engine.get_tensor_shape(name))
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs.append((name, dtype))
            else:
                buf = torch.empty(shape, dtype=dtype, device=device)
                self.context.set_tensor_address(name, buf.data_ptr())
                outputs[name] = buf
        # the dense part's order (features, objectness, deltas), as the ONNX graph names it
        self.outputs = [outputs[n] for n in (order or list(outputs))]
        self._x = None  # keeps the bound input alive

    def __call__(self, x: torch.Tensor):
        name, dtype = self.inputs[0]
        self._x = x.to(dtype).contiguous()
        self.context.set_tensor_address(name, self._x.data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise StreamsegError("TensorRT execution failed")
        return self.outputs


def open_tensorrt(model: nn.Module, info: ModelInfo, device: str = "cuda", precision: Precision = "fp16",
                  out_dir=DEFAULT_DIR, log=None, settings: Settings | None = None) -> SplitBackend:
    trt = import_tensorrt()
    half = precision == "fp16"
    dev = torch.device(select_device(device, "device"))
    if dev.type != "cuda":
        raise StreamsegError("the tensorrt backend needs a CUDA device (--device cuda)")
    onnx_path = ensure_onnx(model, info, out_dir, 1, False, log)
    order = (read_sidecar(onnx_path) or {}).get("outputs")
    dense = load_or_rebuild(lambda force: ensure_engine(info, onnx_path, out_dir, 1, half, force, log),
                            lambda path: TrtDense(trt, path, dev, order), log)
    return SplitBackend(model, info, dense, device, precision, name="tensorrt")
