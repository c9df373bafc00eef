"""ONNX Runtime for the dense part (CPU, or the CUDA provider when present); the rest is `SplitBackend`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..files import first_line
from ..model.architecture import ModelInfo
from ..settings import Settings
from ..types import Precision, StreamsegError
from .artefacts import DEFAULT_DIR, read_sidecar
from .onnx_export import ensure_onnx, require_onnx
from ..letterbox import ROI_SIZES
from .split import SizedDense, SplitBackend

_NP = {np.dtype(np.float32): torch.float32, np.dtype(np.float16): torch.float16}
_ORT_TYPES = {"tensor(float)": torch.float32, "tensor(float16)": torch.float16}


def available() -> bool:
    """onnxruntime runs the graphs; onnx checks them (both are dependencies; `auto` falls back to torch)."""
    try:
        require_onnx(runtime=True)
    except StreamsegError:
        return False
    return True


def cuda_available() -> bool:
    if not available():
        return False
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available()


def session_options(settings: Settings):
    """CPU session settings: intra-op threads = `settings.ort_threads` (default torch's, the physical
    cores), one inter-op thread (the graphs are sequential), all graph optimisations, no spinning
    (unless `settings.ort_spin`)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = settings.ort_threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # no busy-waiting after a run: the proposals and heads run next in torch on the same cores
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.ort_spin else "0")
    return opts


def open_session(path: str | Path, device: torch.device, settings: Settings):
    """An InferenceSession for `path` on `device` (CUDA provider first there); a graph that does not
    load is one StreamsegError line."""
    import onnxruntime as ort

    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise StreamsegError("onnxruntime has no CUDA provider here (pip install onnxruntime-gpu)")
        providers = [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    try:
        return ort.InferenceSession(str(path), session_options(settings), providers=providers)
    except Exception as e:  # noqa: BLE001 - a corrupt graph is one clear line
        raise StreamsegError(f"{path}: onnxruntime cannot load it ({first_line(e, 160)})") from None


class OrtDense:
    """Runs the exported dense graph. On CUDA, I/O is bound to torch tensors (no host copies)."""

    kind = "onnxruntime"

    def __init__(self, path: str | Path, device: torch.device, settings: Settings):
        self.path = Path(path)
        self.cuda = device.type == "cuda"
        self.session = open_session(self.path, device, settings)
        self.device = device
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_dtype = _ORT_TYPES[inp.type]
        self.outputs = [(o.name, tuple(o.shape), _ORT_TYPES[o.type]) for o in self.session.get_outputs()]
        self._buffers: list[torch.Tensor] | None = None

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = x.to(self.input_dtype).contiguous()
        if not self.cuda:
            outs = self.session.run(None, {self.input_name: x.numpy()})
            return [torch.from_numpy(o) for o in outs]
        return self._run_bound(x)

    def _run_bound(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self._buffers is None:  # static shapes: allocate the outputs once
            self._buffers = [torch.empty(shape, dtype=dt, device=self.device) for _, shape, dt in self.outputs]
        binding = self.session.io_binding()
        idx = self.device.index or 0
        np_dt = np.float16 if self.input_dtype == torch.float16 else np.float32
        binding.bind_input(self.input_name, "cuda", idx, np_dt, tuple(x.shape), x.data_ptr())
        for (name, shape, dt), buf in zip(self.outputs, self._buffers):
            out_dt = np.float16 if dt == torch.float16 else np.float32
            binding.bind_output(name, "cuda", idx, out_dt, shape, buf.data_ptr())
        torch.cuda.current_stream(self.device).synchronize()  # x is ready before ORT's stream reads it
        self.session.run_with_iobinding(binding)
        return self._buffers


def open_onnxruntime(model: nn.Module, info: ModelInfo, device: str = "cpu", precision: Precision = "fp32",
                     out_dir=DEFAULT_DIR, log=None, settings: Settings | None = None,
                     onnx_path: str | Path | None = None, onnx_heads: bool | None = None) -> SplitBackend:
    """SplitBackend whose dense step is ONNX Runtime; exports the graph into `out_dir` if needed.
    `onnx_heads` (default: on CPU, `settings.ort_heads`: STREAMSEG_ORT_HEADS=0 turns it off) runs the RoI box and
    mask stacks as ONNX graphs too (`onnx_heads.OrtHeads`): heads stage 848 -> 405 ms side by side
    on a loaded 2-core CPU, same TP/FP/FN and Dice as eager on the test patients (tests/test_parity.py).
    `precision="int8"` (CPU only) runs an INT8 copy of the dense graph (`onnx_quant.ensure_int8`)."""
    require_onnx(runtime=True)
    settings = settings or Settings.from_env()
    dev = torch.device(device)
    half = precision == "fp16"
    if precision == "int8" and dev.type != "cpu":
        raise StreamsegError("INT8 runs on the CPU only: use --compute cpu")

    def graph(size: int | None = None, path: str | Path | None = None) -> Path:
        """The dense graph at `size` (None: the model's), exported on first use; its INT8 copy for int8."""
        path = path or ensure_onnx(model, info, out_dir, 1, half, log, size=size)
        if precision == "int8":
            from .onnx_quant import ensure_int8

            path = ensure_int8(path, log=log)
        return Path(path)

    onnx_path = graph(path=onnx_path)
    meta = read_sidecar(onnx_path) or {}
    dense = OrtDense(onnx_path, dev, settings)
    # tracking windows: one static graph per window size, exported (or found) on first use
    sized = SizedDense(dense, lambda s: OrtDense(graph(size=s), dev, settings), info.config.image_size)
    backbone = info.config.backbone
    if meta.get("config", {}).get("backbone", backbone) != backbone:
        raise StreamsegError(f"{onnx_path}: built for another architecture ({meta['config']['backbone']})")
    if onnx_heads is None:
        onnx_heads = dev.type == "cpu" and settings.ort_heads
    heads = None
    if onnx_heads:
        from .onnx_heads import open_heads

        heads = open_heads(model, info, out_dir, log, lambda p: open_session(p, dev, settings))
    return SplitBackend(model, info, sized, device, precision, name="onnxruntime", heads=heads, roi_sizes=ROI_SIZES)
