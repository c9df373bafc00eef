"""Runtime settings: the one place streamseg reads the environment (no torch imported here).

`Settings.from_env()` reads the knobs below once; the CLI and the runner hand the object to
`backends.load(..., settings=...)` (None there: read now) and call `settings.apply()` once, which
sets the process-wide switches; no constructor flips a global flag.

    STREAMSEG_ORT_THREADS   onnxruntime intra-op threads (default: torch's, the physical cores)
    STREAMSEG_TORCH_THREADS torch's CPU threads (default: OMP_NUM_THREADS where set, else min(4,
                            physical cores) when inference runs on CUDA, else the physical cores)
    STREAMSEG_ENCODE_THREADS libx264's threads for the overlay video (default: 1 when inference runs
                            on the CPU, whose cores the model needs; min(4, cores) on CUDA)
    STREAMSEG_ORT_HEADS=0   the RoI box/mask heads in torch, not as ONNX graphs (onnxruntime on CPU)
    STREAMSEG_ORT_SPIN=1    onnxruntime's threads busy-wait after a run (default: they sleep)
    STREAMSEG_ENGINES       the compiled-artefacts folder (default: $XDG_CACHE_HOME/streamseg/engines)
    STREAMSEG_CONFIG_DIR    the calibration profiles' folder (default: $XDG_CONFIG_HOME/streamseg)
    XDG_CACHE_HOME, XDG_CONFIG_HOME (else ~/.cache, ~/.config)
    WORLD_SIZE, LOCAL_RANK (torchrun's, for distributed training)

    DISPLAY                 the X server the window opens on (`display_name`, as Qt looks it up)

The environment is also written here, for libraries that read their settings from it: onnxruntime's
ORT_DISABLE_TELEMETRY=1 before it is imported (`quiet_onnxruntime`, called by `backends`), and
OpenCV's V4L2 read timeouts (`bound_v4l2_reads`, called by the V4L2 source).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .types import StreamsegError

GPU_CPU_THREADS = 4  # torch's CPU threads when the GPU does the work (issue 21: preprocess 3 ms at 4, 12-20 ms at 16)
GPU_ENCODE_THREADS = 4  # libx264's when the GPU does the work (issue 21: one thread encoded at 6.3 ms a frame there)
THREAD_VARS = ("STREAMSEG_TORCH_THREADS", "OMP_NUM_THREADS")


def user_cache(*parts: str) -> Path:
    """A folder in the user's cache: $XDG_CACHE_HOME/streamseg/<parts> (else ~/.cache/streamseg/...)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "streamseg", *parts)


def engines_dir() -> Path:
    """The compiled artefacts' folder: $STREAMSEG_ENGINES, else the user cache (never the current folder)."""
    return Path(os.environ.get("STREAMSEG_ENGINES") or user_cache("engines"))


def config_dir() -> Path:
    """The calibration profiles' folder: $STREAMSEG_CONFIG_DIR, else $XDG_CONFIG_HOME/streamseg
    (else ~/.config/streamseg)."""
    env = os.environ.get("STREAMSEG_CONFIG_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")) / "streamseg"


def torchrun_ranks() -> tuple[int, int]:
    """(WORLD_SIZE, LOCAL_RANK) as torchrun sets them; (1, 0) for a single process."""
    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))


def quiet_onnxruntime() -> None:
    """onnxruntime (1.32) writes a telemetry session file, $TMPDIR/.ses, when imported, and left it
    behind every run (or warned "Failed to persist telemetry device ID" where it cannot): no telemetry."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def _threads_asked(env: Mapping[str, str], name: str) -> int | None:
    """The thread count the variable `name` asks for (None: unset or empty), or one StreamsegError line."""
    asked = env.get(name, "").strip()
    if not asked:
        return None
    if not asked.isdigit() or int(asked) < 1:
        raise StreamsegError(f"{name}={asked}: expected a whole number >= 1")
    return int(asked)


def cpu_threads(cores: int, device: str, env: Mapping[str, str]) -> int | None:
    """torch's CPU threads for inference on `device` ("cpu", "cuda", "cuda:N"), `cores` being torch's
    default (the physical cores): $STREAMSEG_TORCH_THREADS where set; None (torch's own count) where
    OMP_NUM_THREADS is set, torch having sized its pool from it, or on the CPU; on CUDA
    min(GPU_CPU_THREADS, cores): the CPU only prepares images and draws, and more threads than that
    cost more in handing work out than they save."""
    asked = _threads_asked(env, "STREAMSEG_TORCH_THREADS")
    if asked is not None:
        return asked
    if env.get("OMP_NUM_THREADS", "").strip() or not device.startswith("cuda"):
        return None
    return max(1, min(GPU_CPU_THREADS, cores))


def encode_threads(cores: int, device: str, env: Mapping[str, str]) -> int:
    """libx264's threads for the videos a run writes: $STREAMSEG_ENCODE_THREADS where set; 1 when
    inference runs on the CPU (its cores are the model's); on CUDA min(GPU_ENCODE_THREADS, cores),
    so that encoding keeps up with the GPU."""
    asked = _threads_asked(env, "STREAMSEG_ENCODE_THREADS")
    if asked is not None:
        return asked
    return max(1, min(GPU_ENCODE_THREADS, cores)) if device.startswith("cuda") else 1


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Settings:
    """How the backends run, beyond the flags (see the module doc for the variables)."""

    ort_threads: int | None = None  # None: torch's thread count
    ort_heads: bool = True  # onnxruntime on CPU runs the RoI heads as ONNX graphs too
    ort_spin: bool = False
    engines: Path = field(default_factory=engines_dir)
    cudnn_benchmark: bool = True  # cuDNN picks its fastest kernels for the (static) input shapes
    device: str = "cpu"  # where inference runs: sizes torch's CPU threads (`cpu_threads`)
    thread_env: dict[str, str] = field(default_factory=dict)  # the THREAD_VARS that are set
    encode_threads: int = 1  # libx264's threads for the overlay and input videos (`encode_threads`)

    @classmethod
    def from_env(cls, device: str = "cpu") -> Settings:
        """The knobs from the environment; `device`: the torch device inference runs on."""
        env = os.environ
        return cls(ort_threads=int(env.get("STREAMSEG_ORT_THREADS", 0)) or None,
                   ort_heads=env.get("STREAMSEG_ORT_HEADS", "1") != "0",
                   ort_spin=env.get("STREAMSEG_ORT_SPIN", "0") not in ("", "0"), engines=engines_dir(),
                   device=device, thread_env={k: env[k] for k in THREAD_VARS if k in env},
                   encode_threads=encode_threads(usable_cores(), device, env))

    def apply(self) -> None:
        """The process-wide switches, set once by the CLI or the runner before a backend runs."""
        import torch

        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        threads = cpu_threads(torch.get_num_threads(), self.device, self.thread_env)
        if threads is not None and threads != torch.get_num_threads():
            torch.set_num_threads(threads)


def display_name() -> str | None:
    """The X display a window would open on ($DISPLAY), or None."""
    return os.environ.get("DISPLAY") or None


def bound_v4l2_reads(timeout_s: float) -> None:
    """Bound every V4L2 read by `timeout_s` (whole seconds, at least 1). OpenCV's V4L2 backend waits in
    select() for each frame, 10 s by default, and takes no per-capture read timeout
    (CAP_PROP_READ_TIMEOUT_MSEC is the FFmpeg backend's); it reads OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT
    and OPENCV_VIDEOIO_V4L_READ_ATTEMPTS from the environment once, at the first read of the process.
    Values the user has set are kept. A read that times out returns no frame: the signal is lost
    and the source reconnects, and close() waits for it as for a network read."""
    os.environ.setdefault("OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT", str(max(1, math.ceil(timeout_s))))
    os.environ.setdefault("OPENCV_VIDEOIO_V4L_READ_ATTEMPTS", "1")
