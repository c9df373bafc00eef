"""Build the bundled sample (streamseg/data/sample: images/, masks/, manifest.csv, LICENSE) from
TEST patients only, so `streamseg eval` on the sample reads like new patients, not like training.

Rule (fixed, no look at any model output): take the "test" patients of train/split.json, sort
them, and keep EVERY scan of the LAST FOUR of them (today Pz065, Pz074, Pz089, Pz097: 1 + 2 + 2 + 2
= 7 scans). The last four rather than the first four because the first four (Pz028, Pz030, Pz033,
Pz047) hold no mask with two components, and the sample needs one (Pz074-001: tests check that a
two-component mask is one nerve with the union box). Files are copied byte for byte from the
source folder; manifest.csv keeps the source manifest's rows (provenance: original path and git
blob in the UNIVPM repository) for the kept files; LICENSE is the source's GPL-3.0 text.

    python train/make_sample.py ../shared/data/median-nerve-univpm train/split.json streamseg/data/sample

Afterwards rebuild the demo clip and the demo DICOM from the new scans:

    python train/make_demo.py streamseg/data/sample streamseg/data/sample/demo.mp4
    python train/make_demo_dicom.py streamseg/data/sample streamseg/data/sample/demo.dcm
"""
from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

N_PATIENTS = 4


def chosen_patients(split_json: Path) -> list[str]:
    test = sorted(json.loads(split_json.read_text())["test"])
    return test[-N_PATIENTS:]


def chosen_rows(source: Path, patients: list[str]) -> tuple[list[str], list[dict]]:
    with (source / "manifest.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if r["patient"] in patients]
        return list(reader.fieldnames or []), sorted(rows, key=lambda r: r["file"])


def main(source: str, split_json: str, out: str) -> None:
    src, dst = Path(source), Path(out)
    patients = chosen_patients(Path(split_json))
    fields, rows = chosen_rows(src, patients)
    for sub in ("images", "masks"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
        for old in (dst / sub).glob("*.png"):
            old.unlink()
        for r in rows:
            shutil.copyfile(src / sub / r["file"], dst / sub / r["file"])
    with (dst / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    shutil.copyfile(src / "LICENSE", dst / "LICENSE")
    print(f"wrote {dst}: {len(rows)} scans of {len(patients)} test patients ({', '.join(patients)})")


if __name__ == "__main__":
    main(*sys.argv[1:4])
