"""benchmarks/gpu_check.sh, issue 21's one prepared GPU command, on a machine without a GPU: its
CPU smoke mode (GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1) runs every step's plumbing with tiny sizes
and writes the JSON and the table; the real mode refuses in one line (exit 3)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
NO_GPU = "gpu_check: no CUDA GPU visible (torch.cuda.is_available() is False); nothing to check"
STEPS = {"bundled torch fp32", "paper torch fp32", "train", "clip", "file first start", "file cached start",
         "live replay"}


def _env(tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPU_CHECK_")}
    return {**env, "PYTHON": sys.executable, "OUT": str(tmp_path / "out"), "OMP_NUM_THREADS": "2",
            "XDG_CACHE_HOME": str(tmp_path / "cache"), **extra}


def _nulls(x, path: str = "") -> list[str]:
    """Where `x` (a JSON value) holds null."""
    if x is None:
        return [path]
    if isinstance(x, dict):
        return [p for k, v in x.items() for p in _nulls(v, f"{path}.{k}")]
    if isinstance(x, list):
        return [p for i, v in enumerate(x) for p in _nulls(v, f"{path}[{i}]")]
    return []


@pytest.mark.slow
def test_quick_cpu_mode_runs_every_step_and_reports_numbers(tmp_path):
    r = subprocess.run(["bash", str(SCRIPT)], cwd=REPO, capture_output=True, text=True, timeout=300,
                       env=_env(tmp_path, GPU_CHECK_DEVICE="cpu", GPU_CHECK_QUICK="1"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rep = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    steps = {s["name"]: s for s in rep["steps"]}
    assert set(steps) == STEPS and all(s["status"] == "done" for s in steps.values()), steps
    sections = {k: rep[k] for k in ("bundled", "paper", "clip", "file", "live", "train")}
    assert _nulls(sections) == [] and rep["parity_ok"] is True and rep["quick"] is True
    for label in ("bundled", "paper"):
        (row,) = rep[label]["rows"]
        assert (row["backend"], row["precision"]) == ("torch", "fp32")
        for stage in ("preprocess", "dense", "proposals", "heads", "paste", "model"):
            assert 0 < row["stages"][stage]["p50"] <= row["stages"][stage]["p99"], stage
    parity = rep["bundled"]["rows"][0]["parity"]
    assert parity["scans"] == 2 and parity["same_counts"] and parity["min_dice"] >= 0.99 and parity["ok"]
    dense = rep["paper"]["rows"][0]["dense_parity"]
    assert set(dense["max_rel_error"]) == {"features", "objectness", "deltas"} and dense["ok"]
    assert all(0 <= v <= dense["tolerance"] for v in dense["max_rel_error"].values())
    assert rep["clip"]["frames"] == 12 and rep["clip"]["writer"].startswith("PyAV")
    for key in ("first_start", "cached_start"):
        f = rep["file"][key]
        assert f["frames_seen"] == 12 and f["processed_fps"] > 0 and f["warmup_s"] > 0
        assert f["command_wall_s"] > f["wall_s"] > 0 and "--compute cpu" in f["command"]
        assert any(ln.startswith("model: torch (cpu, fp32") for ln in f["log_head"]), f["log_head"]
    live = rep["live"]
    assert live["frames_released"] > 0 and 0 <= live["dropped_fraction"] <= 1 and live["warmup_s"] > 0
    assert 0 < live["capture_to_overlay_ms"]["p50"] <= live["capture_to_overlay_ms"]["p99"]
    train = rep["train"]
    assert len(train["epoch_s"]) == 2 and min(train["epoch_s"]) > 0 and "--backbone mobilenet_v2" in train["command"]
    out = r.stdout
    assert "stage table" in out and "bundled  torch" in out and "paper    torch" in out
    assert all(name in out for name in STEPS) and "parity: True" in out


def test_real_mode_without_cuda_exits_3_in_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the real mode would run for minutes")
    for cmd in (["bash", str(SCRIPT)], [sys.executable, str(REPO / "benchmarks" / "gpu_check.py")]):
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, env=_env(tmp_path))
        assert r.returncode == 3, r.stdout + r.stderr
        assert (r.stdout + r.stderr).strip().splitlines() == [NO_GPU], cmd
    assert not (tmp_path / "out" / "gpu_check.json").exists()
