"""One checkpoint file = weights + the full model config (+ training summary).

Loaded with `weights_only=True`; written to a temp file and renamed, so it is never half-written.
`load_checkpoint` -> (model, ModelInfo): the module and its identity (config, source, sha256, meta);
`load_model` when only the module is wanted.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..files import atomic_write, file_sha256, first_line
from ..types import StreamsegError
from .architecture import ModelConfig, ModelInfo, build_model, thresholds_from_meta

FORMAT = "streamseg-checkpoint"
VERSION = 1
DEFAULT_WEIGHTS = Path(__file__).parents[1] / "weights" / "default.pt"


def save_checkpoint(path, model: torch.nn.Module, meta: dict | None = None, half: bool = False, *,
                    config: ModelConfig) -> None:
    """Write `model`'s weights with the `config` it was built from (FP16 storage when `half`)."""
    sd = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
          for k, v in model.state_dict().items()}
    blob = {"format": FORMAT, "version": VERSION, "config": config.to_dict(), "meta": meta or {}, "state_dict": sd}
    atomic_write(path, lambda tmp: torch.save(blob, tmp))


def read_checkpoint(path) -> dict:
    path = Path(path)
    if not path.is_file():  # say what is there instead: nothing, a folder, a device, a FIFO, a socket
        what = ("checkpoint not found" if not path.exists() else "is a folder, not a checkpoint file" if path.is_dir()
                else "is not a regular file (a device, a FIFO or a socket), not a checkpoint")
        raise StreamsegError(f"{path}: {what}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt, truncated or foreign: one clear line
        raise StreamsegError(f"{path}: not a readable streamseg checkpoint ({type(e).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or "state_dict" not in blob:
        raise StreamsegError(f"{path}: not a streamseg checkpoint (no '{FORMAT}' header)")
    if not isinstance(blob.get("config"), dict) or not isinstance(blob["state_dict"], dict):
        raise StreamsegError(f"{path}: a broken streamseg checkpoint (its config or weights are not a mapping)")
    return blob


def load_checkpoint(path=None, device: str | torch.device = "cpu", **overrides) -> tuple[torch.nn.Module, ModelInfo]:
    """Build the model a checkpoint describes and load its weights (eval mode) -> (model, its ModelInfo).

    `path=None` loads the bundled default. `overrides` change test-time settings only
    (e.g. max_detections, rpn_post_nms_top_n_test).
    """
    path = Path(path) if path is not None else default_weights()
    blob = read_checkpoint(path)
    try:
        cfg = ModelConfig.from_dict({**blob["config"], **overrides})
    except StreamsegError as e:  # a config with values no model can have (image_size 0, anchor sizes of text)
        raise StreamsegError(f"{path}: {e}") from None
    try:
        model = build_model(cfg)
        sd = {k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
        model.load_state_dict(sd)
    except StreamsegError:
        raise
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise StreamsegError(f"{path}: weights do not fit the architecture it names ({first_line(e)})") from None
    info = ModelInfo(cfg, source=str(path), sha256=file_sha256(path), meta=blob.get("meta", {}))
    thresholds_from_meta(info.meta, info.source)  # a malformed operating point is refused here, at load
    return model.eval().to(device), info


def load_model(path=None, device: str | torch.device = "cpu", **overrides) -> torch.nn.Module:
    """The module alone of `load_checkpoint` (its config and source are in the ModelInfo that gives)."""
    return load_checkpoint(path, device, **overrides)[0]


def default_weights() -> Path:
    if not DEFAULT_WEIGHTS.is_file():
        raise StreamsegError(f"no bundled default model at {DEFAULT_WEIGHTS}; pass --model CKPT")
    return DEFAULT_WEIGHTS

