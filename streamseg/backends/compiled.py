"""The dense part compiled ahead of time with AOTInductor (torch.export -> a .pt2 package in
`engines/`), FP16 weights on CUDA. Rebuilt when the sidecar (torch version, device, GPU, weights
hash, shape, precision) does not match or the package does not load."""
from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from ..types import StreamsegError
from .export import DEFAULT_DIR, artefact_path, base_meta, ensure_dir, mismatch, write_sidecar
from .split import DenseNet, SplitBackend


def _expected(model: nn.Module, dev: torch.device, batch: int, half: bool) -> dict:
    meta = {"format": "streamseg-dense-aoti", **base_meta(model, batch, half), "torch": torch.__version__,
            "device": dev.type}
    if dev.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(dev)
        meta["compute_capability"] = "%d.%d" % torch.cuda.get_device_capability(dev)
    return meta


def ensure_compiled(model: nn.Module, out_dir=DEFAULT_DIR, device: str = "cpu", batch: int = 1, half: bool = False,
                    force: bool = False, log=None) -> Path:
    dev = torch.device(device)
    half = half and dev.type == "cuda"
    out = ensure_dir(out_dir)
    path = artefact_path(model, out, f"{dev.type}.pt2", batch, half)
    expected = _expected(model, dev, batch, half)
    why = "forced" if force else mismatch(path, expected)
    if not why:
        return path
    if log and why not in ("missing", "forced"):
        log(f"rebuilding {path.name}: {why}")
    net = copy.deepcopy(DenseNet(model)).eval().to(dev)
    dtype = torch.float16 if half else torch.float32
    net = net.to(dtype)
    size = model.streamseg_config.image_size
    x = torch.rand(batch, 3, size, size, dtype=dtype, device=dev)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.building.pt2")  # AOTInductor wants a .pt2 name
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.export.export(net, (x,))
            torch._inductor.aoti_compile_and_package(program, package_path=str(tmp))
        os.replace(tmp, path)
    except StreamsegError:
        raise
    except Exception as e:  # noqa: BLE001 - compiler failures (no C++ toolchain, ...) are one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise StreamsegError(f"AOTInductor could not compile the dense part on {dev.type}: {first[:200]}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    write_sidecar(path, expected)
    return path


class CompiledDense:
    kind = "compiled"

    def __init__(self, path: Path, half: bool):
        self.path = path
        self.half = half
        self.runner = torch._inductor.aoti_load_package(str(path))

    def __call__(self, x: torch.Tensor):
        return self.runner(x.half() if self.half else x)


def open_compiled(model: nn.Module, device: str = "cpu", half: bool = False, out_dir=DEFAULT_DIR,
                  log=None) -> SplitBackend:
    dev = torch.device(device)
    half = half and dev.type == "cuda"
    path = ensure_compiled(model, out_dir, device, 1, half, log=log)
    try:
        dense = CompiledDense(path, half)
    except Exception as e:  # noqa: BLE001 - a stale or corrupt package: rebuild once
        if log:
            log(f"rebuilding {path.name}: it does not load ({type(e).__name__})")
        path = ensure_compiled(model, out_dir, device, 1, half, force=True, log=log)
        dense = CompiledDense(path, half)
    return SplitBackend(model, dense, device, half, name="compiled")
