"""Faults of the machine, not of the input (issue 18): read-only folders (as a user without root's
override), too little memory (`ulimit -v`), and what a run leaves in $TMPDIR. Each ends in one line
and a non-zero exit, or runs on with one warning line; never a traceback."""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streamseg.app.cli import app

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "streamseg" / "data" / "sample" / "demo.mp4"


def _nobody_command() -> list[str] | None:
    """How to run Python as an ordinary user: nothing to add when not root; as root, setpriv to nobody
    with an interpreter nobody can run (this one, or the system's of the same version reading this
    environment's packages). None where neither works."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    drop = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    for exe in (sys.executable, shutil.which(f"python{sys.version_info[0]}.{sys.version_info[1]}")):
        if exe and subprocess.run([*drop, exe, "-c", "import torch, typer"], capture_output=True,
                                  env=_env(Path("/tmp")), timeout=300).returncode == 0:
            return [*drop, exe]
    return None


def _env(home: Path, **extra) -> dict:
    path = os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"]])
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "PYTHONPATH": path,
            "TMPDIR": str(home / "tmp"), "XDG_CACHE_HOME": str(home / "cache"), **extra}


@pytest.fixture(scope="module")
def as_user():
    cmd = _nobody_command()
    if cmd is None:
        pytest.skip("cannot run as a user without root's override here (no setpriv, or no Python nobody can run)")
    return cmd


@pytest.fixture
def home():
    """A folder every user may use (pytest's own tmp folders are root's alone)."""
    d = Path(tempfile.mkdtemp(prefix="streamseg-faults-"))
    (d / "tmp").mkdir()
    for p in (d, d / "tmp"):
        p.chmod(0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _run(prefix, args, env, cwd, limit_kb=None) -> subprocess.CompletedProcess:
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (limit_kb * 1024, limit_kb * 1024))

    return subprocess.run([*prefix, "-m", "streamseg", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=900, preexec_fn=limit if limit_kb else None)


def test_a_read_only_engine_cache_builds_into_a_temporary_folder_with_one_warning(as_user, home, tiny_checkpoint):
    shutil.copy(tiny_checkpoint, home / "tiny.pt")
    engines = home / "cache" / "streamseg" / "engines"
    engines.mkdir(parents=True)
    for p in (home / "cache", home / "cache" / "streamseg"):
        p.chmod(0o777)
    engines.chmod(0o555)
    r = _run(as_user, ["file", str(DEMO), "--model", "tiny.pt", "--backend", "onnxruntime", "--precision", "fp32",
                       "--no-track", "--max-frames", "2"], _env(home, STREAMSEG_ORT_HEADS="0"), home)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    warnings = [x for x in r.stderr.splitlines() if x.startswith("warning: engines folder")]
    assert len(warnings) == 1 and "not writable" in warnings[0] and "temporary folder" in warnings[0], r.stderr
    assert not list(engines.iterdir()), "nothing is written into the read-only folder"
    assert not list((home / "tmp").glob("streamseg-engines-*")), "the temporary folder goes at exit"


def test_a_read_only_config_folder_for_calibrate_is_one_line(as_user, home):
    cfg = home / "cfg"
    cfg.mkdir(mode=0o555)
    cfg.chmod(0o555)
    r = _run(as_user, ["calibrate", "--probe", "ml6-15", "--preset", "wrist", "--mm-per-px", "0.06"],
             _env(home, STREAMSEG_CONFIG_DIR=str(cfg)), home)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1, r.stderr[-3000:]
    assert err[0] == f"error: {cfg / 'profiles.json'}: not writable (Permission denied)", err


# Address-space limits (KiB) at which this machine fails in different places: importing the command's
# own modules (typer, pydantic), numpy, FFmpeg, torch's libraries (a convolution that cannot allocate
# is the in-process test below: where it fails depends on the machine). Below ~30 MiB Python itself
# cannot start, and a few libraries end the process on their own (OpenCV's import segfaults near
# 500 MiB, OpenBLAS near 100 MiB prints its own line): those are not ours to catch.
LIMITS_KB = [35_000, 50_000, 250_000, 1_200_000, 3_000_000]


@pytest.mark.parametrize("limit_kb", LIMITS_KB)
def test_too_little_memory_is_one_line(home, limit_kb, tiny_checkpoint):
    r = _run([sys.executable], ["file", str(DEMO), "--backend", "torch", "--max-frames", "2"],
             _env(home), home, limit_kb=limit_kb)
    err = r.stderr.strip().splitlines()
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert len(err) == 1 and err[0].startswith("error: not enough memory"), r.stderr[-3000:]


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError(
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
    "allocate 2147483648 bytes. Error code 12 (Cannot allocate memory)"),
    RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    OSError("libtorch_cpu.so: failed to map segment from shared object")], ids=["MemoryError", "cpu", "cuda", "map"])
def test_an_allocation_that_fails_in_a_command_is_one_line(monkeypatch, tmp_path, error):
    import streamseg.app.runner

    def run(*a, **k):
        raise error

    monkeypatch.setattr(streamseg.app.runner, "run", run)
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["file", str(DEMO)])
    err = r.stderr.strip().splitlines()
    assert r.exit_code == 1 and len(err) == 1 and err[0].startswith("error: not enough memory"), r.output


def test_a_run_leaves_nothing_in_tmpdir(home, tiny_checkpoint):
    """onnxruntime's telemetry file ($TMPDIR/.ses) and torch's empty $TMPDIR/torchinductor_<user>."""
    r = _run([sys.executable], ["file", str(DEMO), "--model", str(tiny_checkpoint), "--no-track", "--max-frames", "2",
                                "--engines", str(home / "engines")], _env(home), home)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in (home / "tmp").iterdir()) == []
