"""Build the compiled artefacts into `engines/` and check the ones already there.

Every artefact is named after what it was built from and carries a sidecar JSON (`<file>.json`):
    <backbone>-mask<M>-<sha12>-dense-b<B>-<S>-<fp32|fp16>.<onnx|engine|pt2>
The sidecar records the checkpoint's (or, for a model built from a config, the weights') sha256,
the model config, input shape, precision and the versions that matter; an artefact whose sidecar
does not match what is asked for, or that does not load, is rebuilt rather than trusted.
Files are written to a temp name and renamed, so a half-written artefact never exists.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from ..files import atomic_write, file_sha256
from ..model import RUNTIME_KEYS
from ..types import StreamsegError
from .device import select_device
from .split import DenseNet, output_names

DEFAULT_DIR = Path(os.environ.get("STREAMSEG_ENGINES", "engines"))
OPSET = 17
FORMATS = ("onnx", "engine", "compiled")


def weights_sha256(model: nn.Module) -> str:
    """sha256 of the checkpoint file the model came from, else of its weights (config-built models)."""
    src = getattr(model, "streamseg_source", None)
    if src and Path(src).is_file():
        return file_sha256(src)
    if getattr(model, "_streamseg_sha", None):
        return model._streamseg_sha
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    model._streamseg_sha = h.hexdigest()
    return model._streamseg_sha


def artefact_path(model: nn.Module, out_dir: str | Path, suffix: str, batch: int = 1, half: bool = False) -> Path:
    cfg = model.streamseg_config
    prec = "fp16" if half else "fp32"
    stem = f"{cfg.backbone}-mask{cfg.mask_head}-{weights_sha256(model)[:12]}-dense-b{batch}-{cfg.image_size}-{prec}"
    return Path(out_dir) / f"{stem}.{suffix}"


def sidecar_path(path: str | Path) -> Path:
    return Path(str(path) + ".json")


def base_meta(model: nn.Module, batch: int, half: bool) -> dict:
    cfg = model.streamseg_config
    return {
        "checkpoint_sha256": weights_sha256(model),
        "config": {k: v for k, v in cfg.to_dict().items() if k not in RUNTIME_KEYS},  # what shapes the graph
        "input_shape": [batch, 3, cfg.image_size, cfg.image_size],
        "precision": "fp16" if half else "fp32",
    }


def read_sidecar(path: str | Path) -> dict | None:
    try:
        return json.loads(sidecar_path(path).read_text())
    except (OSError, ValueError):
        return None


def write_sidecar(path: str | Path, meta: dict) -> None:
    atomic_write(sidecar_path(path), lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2, sort_keys=True)))


def mismatch(path: str | Path, expected: dict) -> str | None:
    """Why the artefact at `path` cannot be reused for `expected` (None when it can)."""
    if not Path(path).is_file():
        return "missing"
    meta = read_sidecar(path)
    if meta is None:
        return "no readable sidecar"
    for k, v in expected.items():
        if meta.get(k) != v:
            return f"{k} differs ({meta.get(k)!r} != {v!r})"
    return None


def ensure_dir(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StreamsegError(f"{out}: cannot create the artefact folder ({e.strerror})") from None
    return out


# ---------------------------------------------------------------- ONNX (dense part)

def onnx_meta(model: nn.Module, batch: int, half: bool) -> dict:
    return {"format": "streamseg-dense-onnx", "opset": OPSET, **base_meta(model, batch, half)}


def export_onnx(model: nn.Module, path: str | Path, batch: int = 1, half: bool = False, dynamo: bool = False) -> Path:
    """Export the dense part (static B×3×S×S) to `path`; FP16 weights and I/O when `half`.

    The legacy TorchScript exporter is the default (no extra dependency, clean Conv/Resize graph);
    `dynamo=True` uses torch.export (needs `onnxscript`).
    """
    import onnx

    path = Path(path)
    ensure_dir(path.parent)
    net = copy.deepcopy(DenseNet(model)).eval().cpu()
    dtype = torch.float16 if half else torch.float32
    net = net.to(dtype)
    size = model.streamseg_config.image_size
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
    write_sidecar(path, {**onnx_meta(model, batch, half), "torch": torch.__version__, "outputs": names,
                         "feature_names": net.feature_names, "exporter": "dynamo" if dynamo else "torchscript"})
    return path


def check_onnx(path: str | Path) -> str | None:
    """None when `path` is a well-formed ONNX model, else the reason in a few words."""
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception as e:  # noqa: BLE001 - any broken file is one reason, not a traceback
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return f"not a valid ONNX model ({first[:120]})"
    return None


def ensure_onnx(model: nn.Module, out_dir: str | Path = DEFAULT_DIR, batch: int = 1, half: bool = False,
                log=None) -> Path:
    """The dense ONNX for this model, exported now unless a matching, valid one is there."""
    path = artefact_path(model, out_dir, "onnx", batch, half)
    why = mismatch(path, onnx_meta(model, batch, half)) or check_onnx(path)
    if why:
        if log and why != "missing":
            log(f"rebuilding {path.name}: {why}")
        export_onnx(model, path, batch, half)
    return path


# ---------------------------------------------------------------- all formats

def build(model: nn.Module, fmt: str, out_dir: str | Path = DEFAULT_DIR, half: bool = False, batch: int = 1,
          device: str | None = None, log=None) -> list[Path]:
    """Build one artefact format for `model`; returns the files written (sidecars included)."""
    if fmt not in FORMATS:
        raise StreamsegError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    out = ensure_dir(out_dir)
    if fmt == "onnx":
        path = artefact_path(model, out, "onnx", batch, half)
        export_onnx(model, path, batch, half)
        return [path, sidecar_path(path)]
    if fmt == "engine":
        from .tensorrt import ensure_engine

        onnx_path = ensure_onnx(model, out, batch, False, log)  # TensorRT sets FP16 itself
        path = ensure_engine(model, onnx_path, out, batch, half, force=True, log=log)
        return [onnx_path, path, sidecar_path(path)]
    from .compiled import ensure_compiled

    path = ensure_compiled(model, out, select_device(device or "auto"), batch, half, force=True, log=log)
    return [path, sidecar_path(path)]
