"""Nerve-free training images: scans of other anatomy (a folder such as ../shared/data/negatives)
and crop-outs of the wrist scans that leave the nerve out. torchvision's Mask R-CNN takes an image
with an empty target and learns from its proposals as background only.

Negatives are split into train / val / test by acquisition group (a muscle subject, one fetal-head
image), never by image, so that validation and test negatives come from unseen subjects."""
from __future__ import annotations

import csv
import random
import re
from pathlib import Path

import numpy as np
import torch

from ..letterbox import Letterbox
from .dataset import IMAGE_EXTS, NerveDataset, read_image

GROUP_RE = re.compile(r"^(dataset\d+_S\d+)", re.IGNORECASE)
SEQUENCE_RE = re.compile(r"_\d+$")


def scan_negatives(root: str | Path) -> list[Path]:
    """Every image listed in `root/manifest.csv` (column `file`), else every image under `root`."""
    root = Path(root)
    manifest = root / "manifest.csv"
    if manifest.is_file():
        with open(manifest, newline="") as f:
            return [root / row["file"] for row in csv.DictReader(f) if row.get("file")]
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS)


def group_of(path: Path) -> str:
    """The acquisition group: a dataset1 subject (both legs), else the sequence (name less its frame
    number), so frames of one sequence never land in two parts."""
    m = GROUP_RE.match(path.name)
    return f"{path.parent.name}/{m.group(1) if m else SEQUENCE_RE.sub('', path.stem)}"


def split_negatives(paths: list[Path], seed: int = 0, fractions=(0.7, 0.15, 0.15)) -> dict[str, list[Path]]:
    """Deterministic split by acquisition group into train / val / test."""
    groups = sorted({group_of(p) for p in paths})
    random.Random(seed).shuffle(groups)
    n_test, n_val = round(fractions[2] * len(groups)), round(fractions[1] * len(groups))
    part = {g: "test" for g in groups[:n_test]}
    part.update({g: "val" for g in groups[n_test:n_test + n_val]})
    out: dict[str, list[Path]] = {"train": [], "val": [], "test": []}
    for p in paths:
        out[part.get(group_of(p), "train")].append(p)
    return out


def crop_out(image: np.ndarray, mask: np.ndarray, rng: random.Random, min_frac: float = 0.35,
             margin: int = 12, tries: int = 30) -> np.ndarray | None:
    """A random crop of at least `min_frac` of each side that does not touch the nerve (+ margin)."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = xs.min() - margin, ys.min() - margin, xs.max() + margin, ys.max() + margin
    for _ in range(tries):
        cw, ch = rng.randint(int(min_frac * w), w), rng.randint(int(min_frac * h), h)
        cx, cy = rng.randint(0, w - cw), rng.randint(0, h - ch)
        if cx + cw <= x0 or cx >= x1 or cy + ch <= y0 or cy >= y1:
            return image[cy:cy + ch, cx:cx + cw]
    return None


def empty_target(size: int) -> dict:
    return {"boxes": torch.zeros((0, 4), dtype=torch.float32), "labels": torch.zeros(0, dtype=torch.int64),
            "masks": torch.zeros((0, size, size), dtype=torch.uint8)}


class MixedDataset(torch.utils.data.Dataset):
    """The wrist scans, then `per_epoch` nerve-free draws: a share `crop_share` are crop-outs of a
    random wrist scan (same scanner, no nerve), the rest scans of other anatomy."""

    def __init__(self, positives: NerveDataset, negatives: list[Path], per_epoch: int, crop_share: float = 0.4):
        self.pos, self.negatives, self.per_epoch, self.crop_share = positives, negatives, per_epoch, crop_share
        self._cache: dict[Path, np.ndarray] = {}

    def __len__(self):
        return len(self.pos) + self.per_epoch

    def _other_anatomy(self) -> np.ndarray:
        path = random.choice(self.negatives)
        if path not in self._cache:
            img = read_image(path)
            self._cache[path] = Letterbox(img.shape[0], img.shape[1], self.pos.size).image(img)
        return self._cache[path]

    def _wrist_crop(self) -> np.ndarray | None:
        from .dataset import load_pair

        img, mask = load_pair(random.choice(self.pos.samples))
        crop = crop_out(img, mask, random)
        return None if crop is None else Letterbox(crop.shape[0], crop.shape[1], self.pos.size).image(crop)

    def __getitem__(self, i: int):
        if i < len(self.pos):
            return self.pos[i]
        image = self._wrist_crop() if (random.random() < self.crop_share or not self.negatives) else None
        if image is None:
            image = self._other_anatomy()
        from ..backends.base import to_tensor

        img_t = to_tensor(image)
        if self.pos.augment is not None:
            img_t, _ = self.pos.augment(img_t, torch.zeros((1, *img_t.shape[1:]), dtype=torch.uint8))
        return img_t, empty_target(self.pos.size)


@torch.no_grad()
def top_detections(model: torch.nn.Module, paths: list[Path], device="cpu", *, config,
                   mirror: bool = False) -> list[tuple[float, float]]:
    """Each nerve-free image's top detection (the one the runtime would show): (its score, its
    confidence = score × mask score); (0, 0) when nothing is detected. `mirror`: of the image's and
    its mirror's detections merged (`tta.mirror_merged`)."""
    from ..backends.torch_eager import TorchBackend
    from ..model.architecture import ModelInfo
    from .tta import mirror_merged

    backend = TorchBackend(model, ModelInfo(config), device=str(device))

    def found(image):
        return mirror_merged(backend.infer, image) if mirror else backend.infer(image).detections

    tops = []
    for p in paths:
        dets = found(read_image(p))  # best first
        tops.append((dets[0].score, dets[0].confidence) if dets else (0.0, 0.0))
    return tops
