"""The JSON `streamseg eval --json` writes keeps its keys, in their order (users read it): the key
paths below were captured from the dict-built summary before it became typed (`EvalReport`,
`NerveFreeReport`). A path is a dotted chain of keys; `[]` stands for every item of a list and `*`
for each patient of `per_patient`."""
import json
import shutil

import pytest
from typer.testing import CliRunner

from streamseg.app.cli import app
from streamseg.training.metrics import RELIABILITY_BINS

PAPER = ["images", "tp", "fp", "fn", "precision", "recall", "dice_median", "dice_q1", "dice_q3", "dice_iqr",
         "dice_mean", "dice_sd", "hd95_median_px", "hd95_mean_px", "area_error_mean_px2", "area_abs_error_median_px2",
         "area_abs_rel_error_median"]
SCORES = ["map", "map_50", "map_75", "map_50_95", "mask_map_50", "mask_map_75", "mask_map_50_95", "top1_dice_mean",
          "conf_thresh", "iou_thresh", "fn_rule"]
MM = ["mm_per_px", "area_error_mean_mm2", "area_abs_error_median_mm2"]
OUTCOMES = ["correct", "wrong structure", "nothing shown"]
OPERATING_POINT = (["operating_point", "operating_point.score_thresh", "operating_point.iou_thresh",
                    "operating_point.images", "operating_point.counts"]
                   + [f"operating_point.counts.{k}" for k in OUTCOMES] + ["operating_point.shares"]
                   + [f"operating_point.shares.{k}" for k in OUTCOMES] + ["operating_point.wrong_on_nerve"])
RELIABILITY = ["reliability", "reliability[].bin", "reliability[].scans", "reliability[].on_nerve_share",
               "reliability[].nerve_free"]
PER_PATIENT = ["per_patient", "per_patient.*"] + [f"per_patient.*.{k}" for k in PAPER]
BLAND_ALTMAN = ["n", "bias", "sd", "loa_low", "loa_high", "mae", "rel_abs_error_median"]
PER_IMAGE = ["per_image"] + [f"per_image[].{k}" for k in ("name", "tp", "fp", "fn", "dice", "hd95", "area_gt_px",
                                                          "area_pred_px", "top_score", "top_confidence", "top_iou",
                                                          "top_area_px",
                                                          "top_dice", "patient")]


def labelled_keys(mm: bool) -> list[str]:
    agreement = ["csa_agreement", "csa_agreement.scans", "csa_agreement.px2"] + [f"csa_agreement.px2.{k}"
                                                                                 for k in BLAND_ALTMAN]
    if mm:
        agreement += ["csa_agreement.mm2"] + [f"csa_agreement.mm2.{k}" for k in BLAND_ALTMAN]
    summary = (PAPER + SCORES + (MM if mm else []) + OPERATING_POINT + RELIABILITY + PER_PATIENT + agreement
               + ["model", "data", "box", "subset"])
    return ["summary"] + [f"summary.{k}" for k in summary] + PER_IMAGE


NERVE_FREE_KEYS = (["summary", "summary.kind", "summary.model", "summary.data", "summary.subset",
                    "summary.false_detections"]
                   + [f"summary.false_detections.{k}" for k in ("images", "conf_thresh", "score_thresh", "over_conf",
                                                                "over_conf_share", "shown", "shown_share", "max_score",
                                                                "max_confidence")]
                   + ["per_image", "per_image[].image", "per_image[].top_score", "per_image[].top_confidence"])


def key_paths(doc, prefix: str = "") -> list[str]:
    """Every key path of a JSON document, in first-seen order."""
    out: list[str] = []

    def add(paths):
        out.extend(p for p in paths if p not in out)

    if isinstance(doc, dict):
        for k, v in doc.items():
            name = "*" if prefix.endswith("per_patient.") else k
            add([prefix + name] + key_paths(v, prefix + name + "."))
    elif isinstance(doc, list):
        for v in doc:
            add(key_paths(v, prefix[:-1] + "[]."))
    return out


def _eval_json(args, path) -> dict:
    r = CliRunner().invoke(app, ["eval", *args, "--json", str(path)])
    assert r.exit_code == 0, r.output
    return json.loads(path.read_text())


@pytest.mark.parametrize("mm", [False, True], ids=["px", "mm"])
def test_eval_json_of_the_sample_keeps_its_keys(sample_dir, tmp_path, mm):
    doc = _eval_json(["--data", str(sample_dir)] + (["--mm-per-px", "0.08"] if mm else []), tmp_path / "e.json")
    assert key_paths(doc) == labelled_keys(mm)
    assert sorted(doc["summary"]["per_patient"]) == ["Pz065", "Pz074", "Pz089", "Pz097"]
    assert len(doc["per_image"]) == 7 and len(doc["summary"]["reliability"]) == len(RELIABILITY_BINS) - 1


def test_eval_json_of_a_nerve_free_folder_keeps_its_keys(sample_dir, tmp_path):
    (tmp_path / "free" / "images").mkdir(parents=True)
    for name in ("Pz065-001.png", "Pz074-001.png"):  # images without masks/ beside them: nerve-free
        shutil.copy(sample_dir / "images" / name, tmp_path / "free" / "images" / name)
    doc = _eval_json(["--data", str(tmp_path / "free")], tmp_path / "e.json")
    assert key_paths(doc) == NERVE_FREE_KEYS and len(doc["per_image"]) == 2
