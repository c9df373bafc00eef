import json
import shutil

import cv2
import numpy as np
import pytest

from streamseg import StreamsegError
from streamseg.training.augment import PaperAugment
from streamseg.training.dataset import NerveDataset, load_split, patient_split, save_split, scan_folder


def test_scan_bundled_sample_reads_patients_from_manifest(sample_dir):
    samples = scan_folder(sample_dir)
    assert len(samples) == 7
    assert {s.patient for s in samples} == {"Pz065", "Pz074", "Pz089", "Pz097"}


def test_patient_from_prefix_without_manifest(sample_dir, tmp_path):
    samples = scan_folder(_copy(sample_dir, tmp_path))
    assert {s.name: s.patient for s in samples}["Pz074-001"] == "Pz074"


def test_split_is_by_patient_deterministic_and_saved(univpm_dir, tmp_path):
    samples = scan_folder(univpm_dir)
    assert len(samples) == 196 and len({s.patient for s in samples}) == 83
    a, b = patient_split(samples, seed=0), patient_split(samples, seed=0)
    assert a == b
    assert not (set(a["train"]) & set(a["test"])) and not (set(a["train"]) & set(a["val"]))
    assert sorted(a["train"] + a["val"] + a["test"]) == sorted({s.patient for s in samples})
    save_split(tmp_path / "split.json", a, samples, 0, "x")
    assert load_split(tmp_path / "split.json") == a
    doc = json.loads((tmp_path / "split.json").read_text())
    assert sum(len(v) for v in doc["images"].values()) == 196


def test_repo_split_file_matches_the_data(univpm_dir):
    from pathlib import Path

    split = load_split(Path(__file__).parents[1] / "train" / "split.json")
    patients = {s.patient for s in scan_folder(univpm_dir)}
    assert set(split["train"]) | set(split["val"]) | set(split["test"]) == patients


def test_augmentation_moves_image_mask_and_box_together(sample_dir):
    import torch

    torch.manual_seed(0)
    ds = NerveDataset(scan_folder(sample_dir)[:1], 512, PaperAugment(intensity=True))
    plain = NerveDataset(scan_folder(sample_dir)[:1], 512)[0][1]["masks"].sum()
    for _ in range(3):
        img, t = ds[0]
        m = t["masks"][0].numpy().astype(bool)
        x1, y1, x2, y2 = t["boxes"][0].tolist()
        ys, xs = np.nonzero(m)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)
        assert 0.5 * plain <= m.sum() <= 1.6 * plain  # scale 80-120 % (area 64-144 %)
        assert img.shape == (3, 512, 512) and 0 <= img.min() and img.max() <= 1


def _copy(sample_dir, tmp_path):
    shutil.copytree(sample_dir / "images", tmp_path / "images")
    shutil.copytree(sample_dir / "masks", tmp_path / "masks")
    return tmp_path


def test_bad_inputs_are_one_line_errors(sample_dir, tmp_path):
    with pytest.raises(StreamsegError, match="not found"):
        scan_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StreamsegError, match="images/ and masks/"):
        scan_folder(tmp_path / "empty")
    d = _copy(sample_dir, tmp_path / "d1")
    (d / "masks" / "Pz089-001.png").unlink()
    with pytest.raises(StreamsegError, match="Pz089-001.png: no mask"):
        scan_folder(d)
    d = _copy(sample_dir, tmp_path / "d2")
    cv2.imwrite(str(d / "masks" / "Pz089-001.png"), np.zeros((10, 10), np.uint8))
    s = [x for x in scan_folder(d) if x.name == "Pz089-001"]
    with pytest.raises(StreamsegError, match="mask is 10x10"):
        NerveDataset(s)[0]
    d = _copy(sample_dir, tmp_path / "d3")
    (d / "images" / "Pz089-001.png").write_text("this is not an image")
    s = [x for x in scan_folder(d) if x.name == "Pz089-001"]
    with pytest.raises(StreamsegError, match="not a readable image"):
        NerveDataset(s)[0]


def test_coco_json_reads_polygons(sample_dir, tmp_path):
    gt = cv2.imread(str(sample_dir / "masks" / "Pz089-001.png"), cv2.IMREAD_GRAYSCALE)
    contours, _ = cv2.findContours((gt > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    shutil.copy(sample_dir / "images" / "Pz089-001.png", tmp_path / "a.png")
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": 606, "height": 468, "patient": "P1"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                            "segmentation": [c.reshape(-1).tolist() for c in contours]}],
           "categories": [{"id": 1, "name": "median_nerve"}]}
    (tmp_path / "ann.json").write_text(json.dumps(doc))
    samples = scan_folder(tmp_path / "ann.json")
    assert samples[0].patient == "P1"
    _, t = NerveDataset(samples)[0]
    ref = NerveDataset([s for s in scan_folder(sample_dir) if s.name == "Pz089-001"])[0][1]
    inter = (t["masks"] & ref["masks"]).sum().item()
    assert inter / ref["masks"].sum().item() > 0.97


def test_nerve_label_reads_usgra_seg_palette_masks_as_label_indices():
    """usgra-seg's masks are palette PNGs labelling nerve (1) and vessel (2): --nerve-label 1 keeps
    the nerve pixels the dataset's manifest counts, and only those."""
    import csv

    from conftest import shared_data
    from streamseg.training.dataset import load_pair

    root = shared_data("usgra-seg", needs="test/images") / "test"
    with open(root.parent / "manifest.csv", newline="") as f:
        counts = {r["file"]: (int(r["nerve_px(label1)"]), int(r["vessel_px(label2)"])) for r in csv.DictReader(f)}
    samples = {s.name + ".png": s for s in scan_folder(root, nerve_label=1)}
    for name in ("0004.png", "0009.png", "0017.png"):
        _img, mask = load_pair(samples[name])
        assert mask.sum() == counts[name][0], name
        _img, both = load_pair(scan_folder(root)[list(samples).index(name)])  # any value > 0: nerve and vessel
        assert both.sum() == sum(counts[name]), name


def test_components_make_one_nerve_per_connected_component():
    import numpy as np

    from streamseg.training.dataset import NerveDataset, instance_masks

    m = np.zeros((64, 64), bool)
    m[5:15, 5:15] = True
    m[30:50, 40:60] = True
    m[60:62, 0:2] = True  # 4 px: speckle in a mask, not a nerve
    assert len(instance_masks(m, "union")) == 1
    parts = instance_masks(m, "components")
    assert [int(p.sum()) for p in parts] == [100, 400]
    from conftest import shared_data

    root = shared_data("usgra-seg", needs="test/images") / "test"
    sample = next(s for s in scan_folder(root, nerve_label=1) if s.name == "0017")  # 3 nerve components
    _img, target = NerveDataset([sample], instances="components")[0]
    assert target["boxes"].shape == (3, 4) and target["masks"].shape[0] == 3 and target["labels"].tolist() == [1, 1, 1]
    _img, target = NerveDataset([sample])[0]
    assert target["boxes"].shape == (1, 4)
