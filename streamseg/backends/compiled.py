"""The dense part compiled ahead of time with AOTInductor (torch.export -> a .pt2 package in
the engines folder, `artefacts.DEFAULT_DIR`), FP16 weights on CUDA. Rebuilt when the sidecar (torch version, device, GPU, weights
hash, shape, precision) does not match or the package does not load."""
from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from ..files import first_line, replace_onto
from ..model.architecture import ModelInfo
from ..settings import Settings
from ..types import Precision, StreamsegError
from .artefacts import DEFAULT_DIR, artefact_path, base_meta, ensure_artefact, load_or_rebuild
from .split import DenseNet, SplitBackend


def _expected(info: ModelInfo, dev: torch.device, batch: int, half: bool) -> dict:
    meta = {"format": "streamseg-dense-aoti", **base_meta(info, batch, half), "torch": torch.__version__,
            "device": dev.type}
    if dev.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(dev)
        meta["compute_capability"] = "%d.%d" % torch.cuda.get_device_capability(dev)
    return meta


def _compile(model: nn.Module, info: ModelInfo, path: Path, dev: torch.device, batch: int, half: bool) -> None:
    net = copy.deepcopy(DenseNet(model)).eval().to(dev)
    dtype = torch.float16 if half else torch.float32
    net = net.to(dtype)
    size = info.config.image_size
    x = torch.rand(batch, 3, size, size, dtype=dtype, device=dev)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.building.pt2")  # AOTInductor wants a .pt2 name
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.export.export(net, (x,))
            torch._inductor.aoti_compile_and_package(program, package_path=str(tmp))
        replace_onto(tmp, path)
    except StreamsegError:
        raise
    except Exception as e:  # noqa: BLE001 - compiler failures (no C++ toolchain, ...) are one line
        why = first_line(e, 200)
        raise StreamsegError(f"AOTInductor could not compile the dense part on {dev.type}: {why}") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def ensure_compiled(model: nn.Module, info: ModelInfo, out_dir=DEFAULT_DIR, device: str = "cpu", batch: int = 1,
                    half: bool = False, force: bool = False, log=None) -> Path:
    dev = torch.device(device)
    half = half and dev.type == "cuda"
    path = artefact_path(info, out_dir, f"{dev.type}.pt2", batch, half)
    return ensure_artefact(path, _expected(info, dev, batch, half), lambda p: _compile(model, info, p, dev, batch, half),
                           force=force, log=log)


class CompiledDense:
    kind = "compiled"

    def __init__(self, path: Path, half: bool):
        self.path = path
        self.half = half
        self.runner = torch._inductor.aoti_load_package(str(path))

    def __call__(self, x: torch.Tensor):
        return self.runner(x.half() if self.half else x)


def open_compiled(model: nn.Module, info: ModelInfo, device: str = "cpu", precision: Precision = "fp32",
                  out_dir=DEFAULT_DIR, log=None, settings: Settings | None = None) -> SplitBackend:
    half = precision == "fp16"
    dense = load_or_rebuild(lambda force: ensure_compiled(model, info, out_dir, device, 1, half, force, log),
                            lambda path: CompiledDense(path, half), log)
    return SplitBackend(model, info, dense, device, precision, name="compiled")
