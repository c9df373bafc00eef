"""Spacing from a flag, from the imaged depth, or from a saved profile (written by `streamseg calibrate`)."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from streamseg.inputs.calibration import load_profile, parse_crop, resolve
from streamseg.app.cli import app
from streamseg.types import StreamsegError


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMSEG_CONFIG_DIR", str(tmp_path / "cfg"))
    return tmp_path / "cfg"


def test_flag_and_depth():
    assert resolve(mm_per_px=0.07).mm_per_px(480) == 0.07
    assert resolve(depth_mm=30).mm_per_px(300) == pytest.approx(0.1)
    assert resolve().mm_per_px(300) is None and not resolve().calibrated


@pytest.mark.parametrize("kw", [dict(mm_per_px=0.1, depth_mm=30), dict(mm_per_px=-1), dict(depth_mm=0), dict(profile="nope")])
def test_bad_spacing_is_one_clear_error(kw, cfg):
    with pytest.raises(StreamsegError):
        resolve(**kw)


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "0,0,0,10", "-1,0,10,10"])
def test_bad_crop(text):
    with pytest.raises(StreamsegError):
        parse_crop(text)


def test_calibrate_writes_a_profile_used_by_resolve(cfg, sample_dir):
    r = CliRunner().invoke(app, ["calibrate", "l12-wrist", "--depth-mm", "30", "--crop", "100,50,400,300",
                                 "--probe", "L12", "--preset", "wrist"])
    assert r.exit_code == 0, r.output
    data = json.loads((cfg / "profiles.json").read_text())
    assert data["l12-wrist"]["mm_per_px"] == pytest.approx(0.1) and data["l12-wrist"]["crop"] == [100, 50, 400, 300]
    cal = resolve(profile="l12-wrist")
    assert cal.mm_per_px(300) == pytest.approx(0.1) and cal.crop == (100, 50, 400, 300)
    # depth over the height of a real clip's frame (468 px)
    r = CliRunner().invoke(app, ["calibrate", "demo", "--depth-mm", "46.8", "--from", str(sample_dir / "demo.mp4")])
    assert r.exit_code == 0, r.output
    assert load_profile("demo")["mm_per_px"] == pytest.approx(0.1)
    r = CliRunner().invoke(app, ["calibrate", "ruler", "--known-mm", "10", "--known-px", "125"])
    assert r.exit_code == 0 and load_profile("ruler")["mm_per_px"] == pytest.approx(0.08)
    assert set(json.loads((cfg / "profiles.json").read_text())) == {"l12-wrist", "demo", "ruler"}


def test_calibrate_rejects_ambiguous_input(cfg):
    r = CliRunner().invoke(app, ["calibrate", "x", "--mm-per-px", "0.1", "--depth-mm", "30"])
    assert r.exit_code == 2 and "exactly one" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["calibrate", "x", "--depth-mm", "30"])
    assert r.exit_code == 2 and "--crop" in r.output
    assert not (cfg / "profiles.json").exists()
