"""One checkpoint file = weights + the full model config (+ training summary).

Loaded with `weights_only=True`; written to a temp file and renamed, so it is never half-written.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import torch

from .model import ModelConfig, build_model
from .types import StreamsegError

FORMAT = "streamseg-checkpoint"
VERSION = 1
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "default.pt"


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call write(tmp_path) then rename onto `path`; the target never exists half-written."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise StreamsegError(f"{path}: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except PermissionError:
        raise StreamsegError(f"{path}: not writable") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(path, model: torch.nn.Module, meta: dict | None = None, half: bool = False) -> None:
    cfg: ModelConfig = model.streamseg_config
    sd = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
          for k, v in model.state_dict().items()}
    blob = {"format": FORMAT, "version": VERSION, "config": cfg.to_dict(), "meta": meta or {}, "state_dict": sd}
    atomic_write(path, lambda tmp: torch.save(blob, tmp))


def read_checkpoint(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise StreamsegError(f"{path}: checkpoint not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt, truncated or foreign: one clear line
        raise StreamsegError(f"{path}: not a readable streamseg checkpoint ({type(e).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or "state_dict" not in blob:
        raise StreamsegError(f"{path}: not a streamseg checkpoint (no '{FORMAT}' header)")
    return blob


def load_model(path=None, device: str | torch.device = "cpu", **overrides) -> torch.nn.Module:
    """Build the model a checkpoint describes and load its weights (eval mode).

    `path=None` loads the bundled default. `overrides` change test-time settings only
    (e.g. max_detections, rpn_post_nms_top_n_test).
    """
    path = Path(path) if path is not None else default_weights()
    blob = read_checkpoint(path)
    try:
        cfg = ModelConfig.from_dict({**blob["config"], **overrides})
        model = build_model(cfg)
        sd = {k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
        model.load_state_dict(sd)
    except StreamsegError:
        raise
    except (RuntimeError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StreamsegError(f"{path}: weights do not fit the architecture it names ({first[:160]})") from None
    model.streamseg_meta = blob.get("meta", {})
    model.streamseg_source = str(path)
    return model.eval().to(device)


def default_weights() -> Path:
    if not DEFAULT_WEIGHTS.is_file():
        raise StreamsegError(f"no bundled default model at {DEFAULT_WEIGHTS}; pass --model CKPT")
    return DEFAULT_WEIGHTS


def file_sha256(path, limit: int | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:limit] if limit else h.hexdigest()
