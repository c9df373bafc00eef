"""`streamseg bench` on CPU with a small calibrated checkpoint: every stage timed, detections
present, ratios to eager computed, JSON written; and gpu_check.sh is well-formed."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streamseg.bench import STAGES, pct
from streamseg.cli import app

REPO = Path(__file__).resolve().parents[1]


def test_percentiles_are_in_ms():
    p = pct([0.001 * i for i in range(1, 101)])
    assert p["p50"] == pytest.approx(50.5) and p["max"] == pytest.approx(100.0) and p["n"] == 100


def test_bench_cli_on_cpu(calibrated_checkpoint, engines_dir, tmp_path):
    res = CliRunner().invoke(app, ["bench", "--model", str(calibrated_checkpoint), "--frames", "2", "--warmup", "1",
                                   "--no-e2e", "--engines", str(engines_dir), "--out", str(tmp_path), "--compute", "cpu",
                                   "--max-detections", "2"])
    assert res.exit_code == 0, res.output
    [path] = tmp_path.glob("bench-*.json")
    report = json.loads(path.read_text())
    rows = {r["backend"]: r for r in report["results"]}
    assert set(rows) == {"torch", "onnxruntime"}
    for r in rows.values():
        assert r["detections_min"] == 2, "the bench must run with the asked-for detections"
        for s in set(STAGES) - {"encode"}:
            assert r["stages"][s]["n"] == 2 and r["stages"][s]["p50"] > 0
    assert rows["torch"]["speedup_frame_p50"] == pytest.approx(1.0)
    assert report["command"].startswith("streamseg bench") and "--frames 2" in report["command"]
    assert report["model"]["max_detections"] == 2


def test_bench_unknown_backend_is_one_line(tmp_path):
    res = CliRunner().invoke(app, ["bench", "--backend", "openvino", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "unknown backend 'openvino'" in res.output


def test_gpu_check_script_parses_and_refuses_without_gpu(tmp_path):
    script = REPO / "benchmarks" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the script would run for minutes")
    r = subprocess.run(["bash", str(script)], cwd=REPO, capture_output=True, text=True, timeout=120,
                       env={"PATH": f"{REPO / '.venv' / 'bin'}:/usr/bin:/bin", "OUT": str(tmp_path)})
    assert r.returncode != 0 and "no CUDA GPU" in (r.stdout + r.stderr)
