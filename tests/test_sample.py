"""The bundled sample is honest: its scans come from test patients of train/split.json only (never
trained or selected on), it is exactly what train/make_sample.py builds from ../shared/data, and the
demo clip and demo DICOM are built from these scans, not from an older selection."""
import csv
import importlib.util
import json
from pathlib import Path

import av
import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _rows(folder: Path) -> list[dict]:
    with (folder / "manifest.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_every_sample_scan_is_from_a_test_patient(sample_dir):
    split = json.loads((REPO / "train" / "split.json").read_text())
    rows = _rows(sample_dir)
    assert sorted(r["file"] for r in rows) == sorted(p.name for p in (sample_dir / "images").glob("*.png"))
    assert sorted(r["file"] for r in rows) == sorted(p.name for p in (sample_dir / "masks").glob("*.png"))
    assert all(r["file"].startswith(r["patient"] + "-") for r in rows)
    patients = {r["patient"] for r in rows}
    assert len(rows) == 7 and len(patients) == 4
    assert patients <= set(split["test"]), patients - set(split["test"])


def test_sample_is_what_make_sample_builds(sample_dir, univpm_dir, tmp_path):
    spec = importlib.util.spec_from_file_location("make_sample", REPO / "train" / "make_sample.py")
    make_sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_sample)
    make_sample.main(str(univpm_dir), str(REPO / "train" / "split.json"), str(tmp_path))
    for rel in ["manifest.csv", "LICENSE"] + [f"{sub}/{r['file']}" for r in _rows(tmp_path) for sub in ("images", "masks")]:
        assert (tmp_path / rel).read_bytes() == (sample_dir / rel).read_bytes(), rel
    assert len(list((tmp_path / "images").glob("*.png"))) == len(list((sample_dir / "images").glob("*.png")))


def test_demo_clip_is_built_from_the_current_sample(sample_dir):
    """Frame 0 of demo.mp4 is the first scan unmoved (make_demo's motion is zero at t=0 for scan 0)."""
    clip = sample_dir / "demo.mp4"
    assert clip.stat().st_size < 2**20
    with av.open(str(clip)) as c:
        first = next(c.decode(video=0)).to_ndarray(format="bgr24")
    scans = sorted((sample_dir / "images").glob("*.png"))
    diffs = [np.abs(first.astype(int) - cv2.imread(str(p)).astype(int)).mean() for p in scans]
    # H.264 at crf 23: 3.1 grey levels from scan 0, 28-34 from every other scan (measured)
    assert int(np.argmin(diffs)) == 0 and diffs[0] < 8 and min(diffs[1:]) > 15, diffs
