"""The compute device of every command (`--compute cpu | cuda | cuda:N | auto`), resolved in one place.
torch is imported only when a name is resolved."""
from __future__ import annotations

from .types import StreamsegError

COMPUTE_HELP = "cpu | cuda | cuda:N | auto"


def resolve_compute(name: str) -> str:
    """`--compute` -> a torch device name: auto is cuda when available, else cpu; cuda[:N] must exist."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise StreamsegError(f"--compute {name}: no CUDA device available")
    return name
