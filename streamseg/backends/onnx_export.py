"""The dense part as an ONNX graph (static B×3×S×S): what onnxruntime runs and TensorRT builds from."""
from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn

from ..files import atomic_write, first_line
from ..model.architecture import ModelInfo
from ..types import StreamsegError
from .artefacts import DEFAULT_DIR, artefact_path, base_meta, ensure_artefact
from .split import DenseNet, output_names

OPSET = 17
# onnx and onnxruntime are dependencies of streamseg: missing, the install is broken or partial
MISSING_HINT = "pip install onnx onnxruntime, or reinstall streamseg, which depends on both"


def require_onnx(runtime: bool = False) -> None:
    """One StreamsegError line when `onnx` (and with `runtime`, `onnxruntime`) cannot be imported."""
    import importlib

    for name in ("onnx", "onnxruntime") if runtime else ("onnx",):
        try:
            importlib.import_module(name)
        except ImportError:
            raise StreamsegError(f"{name} is not installed ({MISSING_HINT})") from None


def onnx_meta(info: ModelInfo, batch: int, half: bool, size: int | None = None) -> dict:
    """`size`: the square input side (default the model's image_size; smaller for tracking windows)."""
    s = size or info.config.image_size
    return {"format": "streamseg-dense-onnx", "opset": OPSET, **base_meta(info, batch, half),
            "input_shape": [batch, 3, s, s]}


def _write_onnx(model: nn.Module, info: ModelInfo, path: Path, batch: int, half: bool, dynamo: bool,
                size: int | None = None) -> dict:
    """Export to `path` (atomically); returns the sidecar's format-specific fields."""
    require_onnx()
    import onnx

    net = copy.deepcopy(DenseNet(model)).eval().cpu()
    dtype = torch.float16 if half else torch.float32
    net = net.to(dtype)
    size = size or info.config.image_size
    x = torch.rand(batch, 3, size, size, dtype=dtype)
    names = output_names(net.feature_names)

    def write(tmp):
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            try:
                if dynamo:
                    prog = torch.onnx.export(net, (x,), None, input_names=["images"], output_names=names,
                                             opset_version=max(OPSET, 18), dynamo=True, external_data=False)
                    prog.save(tmp)
                else:
                    torch.onnx.export(net, (x,), tmp, input_names=["images"], output_names=names,
                                      opset_version=OPSET, do_constant_folding=True, dynamo=False)
            except ImportError as e:
                raise StreamsegError(f"ONNX export needs {e.name or 'a missing package'} (pip install onnxscript)") from None
        onnx.checker.check_model(tmp)

    atomic_write(path, write)
    return {"torch": torch.__version__, "outputs": names, "feature_names": net.feature_names,
            "exporter": "dynamo" if dynamo else "torchscript"}


def export_onnx(model: nn.Module, info: ModelInfo, path: str | Path, batch: int = 1, half: bool = False,
                dynamo: bool = False) -> Path:
    """Export the dense part (static B×3×S×S) to `path`, with its sidecar; FP16 weights and I/O when `half`.

    The legacy TorchScript exporter is the default (no extra dependency, clean Conv/Resize graph);
    `dynamo=True` uses torch.export (needs `onnxscript`).
    """
    return ensure_artefact(Path(path), onnx_meta(info, batch, half),
                           lambda p: _write_onnx(model, info, p, batch, half, dynamo), force=True)


def check_onnx(path: str | Path, inputs: dict[str, tuple[int, list]] | None = None) -> str | None:
    """None when `path` is a well-formed ONNX model (whose inputs are `inputs`, when given: name ->
    (element type, dims with None for a dynamic one), as `graph_inputs` reads them), else the reason
    in a few words. A sidecar says what was built, the graph what is there: a 384-px graph or a
    heads graph under the 512-px dense graph's name, beside that graph's valid sidecar, is refused."""
    require_onnx()
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001 - any broken file is one reason, not a traceback
        return f"not a valid ONNX model ({first_line(e, 120)})"
    got = graph_inputs(model.graph)
    if inputs is not None and got != inputs:
        return f"the graph's inputs {_shapes(got)} are not the {_shapes(inputs)} asked for"
    return None


def graph_inputs(graph) -> dict[str, tuple[int, list]]:
    """An ONNX graph's inputs (weights excluded): name -> (element type, dims; None where dynamic)."""
    weights = {t.name for t in graph.initializer}
    return {i.name: (i.type.tensor_type.elem_type,
                     [d.dim_value if d.HasField("dim_value") else None for d in i.type.tensor_type.shape.dim])
            for i in graph.input if i.name not in weights}


def _shapes(inputs: dict[str, tuple[int, list]]) -> str:
    return ", ".join(f"{k}[{'x'.join('?' if d is None else str(d) for d in dims)}]" for k, (_, dims) in inputs.items())


def dense_inputs(batch: int, size: int, half: bool) -> dict[str, tuple[int, list]]:
    """What the dense graph takes: `images`, B×3×S×S, FP16 or FP32 (`graph_inputs`'s form)."""
    import onnx

    return {"images": (onnx.TensorProto.FLOAT16 if half else onnx.TensorProto.FLOAT, [batch, 3, size, size])}


def ensure_onnx(model: nn.Module, info: ModelInfo, out_dir: str | Path = DEFAULT_DIR, batch: int = 1,
                half: bool = False, log=None, size: int | None = None) -> Path:
    """The dense ONNX for this model (input size×size, default image_size), exported now unless a
    matching, valid one is there."""
    inputs = dense_inputs(batch, size or info.config.image_size, half)
    return ensure_artefact(artefact_path(info, out_dir, "onnx", batch, half, size=size),
                           onnx_meta(info, batch, half, size),
                           lambda p: _write_onnx(model, info, p, batch, half, False, size),
                           check=lambda p: check_onnx(p, inputs), log=log)
