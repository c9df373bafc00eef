"""Labelled scans: image+mask folders or COCO JSON, patient ids, the patient-wise split, and a
torch Dataset that letterboxes (and augments) image, mask and box together."""
from __future__ import annotations

import csv
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..backends.base import to_tensor
from ..letterbox import Letterbox, ensure_bgr, mask_box
from ..types import StreamsegError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DICOM_EXTS = (".dcm",)  # images/ may hold DICOM files (issue 12); masks stay PNG etc. with the same stem
PATIENT_RE = re.compile(r"^(Pz\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Sample:
    name: str
    patient: str
    image: Path
    mask: Path | None = None  # binary mask file (folder layout)
    polygons: tuple = ()  # COCO polygons (flat xy lists), when no mask file
    label: int | None = None  # the mask value that is nerve (e.g. 1 of usgra-seg's nerve/vessel masks); None: any > 0


def read_image(path: Path) -> np.ndarray:
    if Path(path).suffix.lower() in DICOM_EXTS:  # first frame, uncropped: masks are in full-image pixels
        from ..inputs.dicom import read_dicom

        return next(read_dicom(path, use_regions=False)[1])
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise StreamsegError(f"{path}: not a readable image")
    return ensure_bgr(img)


def _mask_values(path: Path, labelled: bool) -> np.ndarray | None:
    """The mask's values: grey levels, or with `labelled` the label indices (a palette PNG's indices,
    which OpenCV would turn into colours)."""
    if not labelled:
        return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.array(im if im.mode in ("P", "L", "I", "I;16") else im.convert("L"))
    except (OSError, UnidentifiedImageError):
        return None


def read_mask(sample: Sample, shape: tuple[int, int]) -> np.ndarray:
    if sample.mask is not None:
        m = _mask_values(sample.mask, sample.label is not None)
        if m is None:
            raise StreamsegError(f"{sample.mask}: not a readable mask image")
        if m.shape != shape:
            raise StreamsegError(f"{sample.mask}: mask is {m.shape[1]}x{m.shape[0]}, image is {shape[1]}x{shape[0]}")
        mask = m == sample.label if sample.label is not None else m > 0
    else:
        canvas = np.zeros(shape, np.uint8)
        for poly in sample.polygons:
            pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
            cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 1)
        mask = canvas > 0
    if not mask.any():
        raise StreamsegError(f"{sample.mask or sample.image}: mask is empty (every scan needs its nerve)")
    return mask


def load_pair(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    img = read_image(sample.image)
    return img, read_mask(sample, img.shape[:2])


def scan_folder(root: str | Path, nerve_label: int | None = None) -> list[Sample]:
    """`images/X.png` + `masks/X.png` (+ optional manifest.csv with file,patient), or a COCO JSON file.
    `nerve_label`: the mask value that is nerve, for masks that label other structures too."""
    root = Path(root)
    if root.is_file() and root.suffix == ".json":
        return load_coco(root)
    if not root.is_dir():
        raise StreamsegError(f"{root}: data folder not found")
    jsons = sorted(root.glob("*.json"))
    if not (root / "images").is_dir() and len(jsons) == 1:
        return load_coco(jsons[0])
    images_dir, masks_dir = root / "images", root / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise StreamsegError(f"{root}: expected images/ and masks/ folders (or a COCO .json)")
    patients = {}
    manifest = root / "manifest.csv"
    if manifest.is_file():
        with open(manifest, newline="") as f:
            for row in csv.DictReader(f):
                if "file" in row and "patient" in row:
                    patients[row["file"]] = row["patient"]
    samples = []
    for img in sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS + DICOM_EXTS):
        mask = next((m for m in (masks_dir / (img.stem + e) for e in IMAGE_EXTS) if m.is_file()), None)
        if mask is None:
            raise StreamsegError(f"{img}: no mask with the same name in {masks_dir}")
        samples.append(Sample(img.stem, patient_of(img.name, patients), img, mask, label=nerve_label))
    if not samples:
        raise StreamsegError(f"{images_dir}: no images")
    return samples


def patient_of(filename: str, manifest: dict[str, str]) -> str:
    if filename in manifest:
        return manifest[filename]
    m = PATIENT_RE.match(filename)
    return m.group(1) if m else Path(filename).stem  # unknown: each image its own patient


def load_coco(path: Path) -> list[Sample]:
    """COCO instances JSON (polygon segmentations); patient from the image's `patient` field or name."""
    try:
        coco = json.loads(Path(path).read_text())
        images = {im["id"]: im for im in coco["images"]}
        anns = coco["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise StreamsegError(f"{path}: not a COCO instances JSON ({type(e).__name__})") from None
    polys: dict[int, list] = {}
    for i, a in enumerate(anns):
        seg = a.get("segmentation") if isinstance(a, dict) else None
        if not isinstance(seg, list):
            raise StreamsegError(f"{path}: annotation {i} has no polygon segmentation (RLE or missing)")
        try:
            rings = [tuple(float(v) for v in ring) for ring in seg]
            polys.setdefault(a["image_id"], []).extend(rings)
        except (KeyError, TypeError, ValueError):
            raise StreamsegError(f"{path}: annotation {i} is malformed (needs image_id and polygons of numbers)") from None
        if any(len(r) < 6 or len(r) % 2 for r in rings):
            raise StreamsegError(f"{path}: annotation {i}: a polygon needs x,y pairs, at least 3 points")
    samples = []
    if not all(isinstance(im, dict) and isinstance(im.get("file_name"), str) for im in images.values()):
        raise StreamsegError(f"{path}: every image needs a file_name")
    for iid, im in sorted(images.items()):
        if iid not in polys:
            raise StreamsegError(f"{path}: image {im['file_name']} has no annotation")
        name = Path(im["file_name"]).name
        patient = str(im.get("patient") or patient_of(name, {}))
        samples.append(Sample(Path(name).stem, patient, Path(path).parent / im["file_name"], None, tuple(polys[iid])))
    if not samples:
        raise StreamsegError(f"{path}: no images")
    return samples


def patient_split(samples: list[Sample], fractions=(0.7, 0.15, 0.15), seed: int = 0) -> dict[str, list[str]]:
    """Deterministic split of patients (never of images) into train/val/test."""
    patients = sorted({s.patient for s in samples})
    random.Random(seed).shuffle(patients)
    n = len(patients)
    n_val = max(1, round(fractions[1] * n)) if n >= 3 else 0
    n_test = max(1, round(fractions[2] * n)) if n >= 3 else 0
    split = {"test": patients[:n_test], "val": patients[n_test:n_test + n_val], "train": patients[n_test + n_val:]}
    return {k: sorted(v) for k, v in split.items()}


def save_split(path: str | Path, split: dict, samples: list[Sample], seed: int, source: str) -> None:
    from ..files import atomic_write

    by_patient = {}
    for s in samples:
        by_patient.setdefault(s.patient, []).append(s.name)
    doc = {"seed": seed, "source": source, **split,
           "images": {k: sorted(n for p in v for n in by_patient.get(p, [])) for k, v in split.items()}}
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=1) + "\n"))


def load_split(path: str | Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
        return {k: doc[k] for k in ("train", "val", "test")}
    except (OSError, ValueError, KeyError) as e:
        raise StreamsegError(f"{path}: not a split file ({type(e).__name__})") from None


def load_negative_split(path: str | Path, root: str | Path) -> dict[str, list[Path]] | None:
    """The nerve-free images a split file assigns to train / val / test (names relative to `root`,
    the negatives folder), or None when the split file does not list them."""
    try:
        doc = json.loads(Path(path).read_text()).get("negatives")
        if doc is None:
            return None
        return {k: [Path(root) / name for name in doc.get(k, [])] for k in ("train", "val", "test")}
    except (OSError, ValueError, AttributeError, TypeError) as e:
        raise StreamsegError(f"{path}: its 'negatives' part is not readable ({type(e).__name__})") from None


def select(samples: list[Sample], patients) -> list[Sample]:
    keep = set(patients)
    return [s for s in samples if s.patient in keep]


class NerveDataset(torch.utils.data.Dataset):
    """Sample -> (3×S×S float image, target with boxes, labels, masks) in letterbox space."""

    def __init__(self, samples: list[Sample], size: int = 512, augment=None, cache: bool = True,
                 instances: str = "union"):
        self.samples, self.size, self.augment = samples, size, augment
        self.instances = instances  # "union": one nerve per scan; "components": one per connected component
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.cache = cache

    def __len__(self):
        return len(self.samples)

    def letterboxed(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i in self._cache:
            return self._cache[i]
        img, mask = load_pair(self.samples[i])
        lb = Letterbox(img.shape[0], img.shape[1], self.size)
        item = (lb.image(img), lb.mask(mask))
        if self.cache:
            self._cache[i] = item
        return item

    def __getitem__(self, i: int):
        img, mask = self.letterboxed(i)
        img_t = to_tensor(img)
        mask_t = torch.from_numpy(mask.astype(np.uint8))[None]
        if self.augment is not None:
            img_t, mask_t = self.augment(img_t, mask_t)
        masks = instance_masks(mask_t[0].numpy().astype(bool), self.instances)
        return img_t, {
            "boxes": torch.as_tensor(np.stack([mask_box(m) for m in masks]), dtype=torch.float32).reshape(-1, 4),
            "labels": torch.ones(len(masks), dtype=torch.int64),
            "masks": torch.from_numpy(np.stack(masks).astype(np.uint8)),
        }


MIN_COMPONENT_PX = 16


def instance_masks(mask: np.ndarray, instances: str = "union") -> list[np.ndarray]:
    """The nerves in a mask: the whole mask as one ("union": the median nerve, where a second
    component is part of the same nerve), or each connected component of at least 16 px as its own
    ("components": several nerves in one scan, as the brachial plexus of usgra-seg)."""
    if instances == "union":
        return [mask]
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    parts = [labels == i for i in range(1, n)]
    return [p for p in parts if p.sum() >= MIN_COMPONENT_PX] or [mask]


def collate(batch):
    return tuple(zip(*batch))
