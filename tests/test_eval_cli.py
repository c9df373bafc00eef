"""`streamseg eval` through the CLI: nerve-free folders with the bundled model, the negatives split,
and user errors (one line, exit 2)."""
import csv
import json
import shutil

import cv2
import pytest
from typer.testing import CliRunner

from streamseg.app.cli import app
from streamseg.training.evaluate import nerve_free_paths
from streamseg.training.negatives import group_of, scan_negatives, split_negatives
from streamseg.types import StreamsegError


def _few_negatives(negatives_dir, dst, n_per_folder=(("muscle", 2), ("fetal-head", 1))):
    """A copy of a few real negatives, with a manifest.csv as ../shared/data/negatives has."""
    rows = list(csv.DictReader(open(negatives_dir / "manifest.csv", newline="")))
    picked = []
    for folder, n in n_per_folder:
        picked += [r for r in rows if r["file"].startswith(folder + "/")][:n]
    for r in picked:
        (dst / r["file"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(negatives_dir / r["file"], dst / r["file"])
    with open(dst / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(picked)
    return [r["file"] for r in picked]


@pytest.mark.slow
def test_eval_on_nerve_free_images_reports_false_detections(negatives_dir, tmp_path):
    data = tmp_path / "negatives"
    data.mkdir()
    files = _few_negatives(negatives_dir, data)
    out, js = tmp_path / "out", tmp_path / "neg.json"
    r = CliRunner().invoke(app, ["eval", "--data", str(data), "--json", str(js), "--out-dir", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(js.read_text())
    fd = doc["summary"]["false_detections"]
    scores = [p["top_score"] for p in doc["per_image"]]
    assert [p["image"] for p in doc["per_image"]] == [str(data / f) for f in files]
    assert fd["images"] == 3 and all(0.0 <= s <= 1.0 for s in scores)
    assert fd["max_score"] == pytest.approx(max(scores))
    assert fd["over_conf"] == sum(s > 0.98 for s in scores) and fd["shown"] == sum(s >= 0.95 for s in scores)
    assert "False detections" in r.output and "top score > 0.98 (paper rule)" in r.output
    assert cv2.imread(str(out / "score_histogram.png")) is not None


def test_negatives_subset_is_the_training_split_by_acquisition_group(negatives_dir):
    every = scan_negatives(negatives_dir)
    test = nerve_free_paths(negatives_dir, subset="test")
    assert test == split_negatives(every, seed=0)["test"] and 0 < len(test) < len(every)
    train_groups = {group_of(p) for p in nerve_free_paths(negatives_dir, subset="train")}
    assert not train_groups & {group_of(p) for p in test}
    assert nerve_free_paths(negatives_dir) == every
    with pytest.raises(StreamsegError, match="--split covers the wrist scans"):
        nerve_free_paths(negatives_dir, split="train/split.json", subset="test")


def test_images_folder_without_masks_lists_its_images(tmp_path, sample_dir):
    (tmp_path / "images").mkdir()
    for p in sorted((sample_dir / "images").iterdir())[:2]:
        shutil.copy(p, tmp_path / "images" / p.name)
    assert [p.name for p in nerve_free_paths(tmp_path)] == sorted(p.name for p in (sample_dir / "images").iterdir())[:2]


@pytest.mark.parametrize("extra, message", [
    (["--out-dir", "FILE"], "is a file"),
    (["--score-thresh", "1.5"], "--score-thresh 1.5"),
    (["--subset", "test"], "--subset needs --split"),
])
def test_eval_user_errors_are_one_line_and_exit_2(sample_dir, tmp_path, extra, message):
    afile = tmp_path / "not_a_folder"
    afile.write_text("x")
    args = ["eval", "--data", str(sample_dir)] + [str(afile) if a == "FILE" else a for a in extra]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, r.output
    assert message in r.output and len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output


def test_eval_unknown_subset_is_refused_by_its_choices(sample_dir):
    r = CliRunner().invoke(app, ["eval", "--data", str(sample_dir), "--subset", "holdout"])
    assert r.exit_code == 2 and "'train', 'val', 'test'" in r.output and "Traceback" not in r.output
