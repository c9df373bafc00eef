"""Store a trained checkpoint as the package's bundled default: FP16 weights (half the size), the
same config and training metadata, plus where it came from. Loading casts back to FP32.

    python train/bundle.py runs/ft/model.pt streamseg/weights/default.pt
"""
from __future__ import annotations

import sys
from pathlib import Path

from streamseg.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from streamseg.files import file_sha256


def main(src: str, dst: str) -> None:
    meta = dict(read_checkpoint(src).get("meta", {}))
    meta.pop("train_state", None)  # optimiser/scheduler state of a *_last.pt: only --resume needs it
    meta["bundled_from"] = {"file": str(src), "sha256": file_sha256(src), "storage": "fp16"}
    model, info = load_checkpoint(src)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(dst, model, meta=meta, half=True, config=info.config)
    print(f"{dst}: {Path(dst).stat().st_size / 2**20:.1f} MiB (fp16) from {src}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
