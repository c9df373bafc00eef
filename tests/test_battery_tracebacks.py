"""A battery of hostile inputs over the classes that reached a traceback (issue 18), run as a user
runs them: the `streamseg` command in a subprocess. Each must end with a non-zero exit code, exactly
one line on stderr and no traceback anywhere. The focused regression tests are in
test_one_line_errors.py, test_checkpoint_config.py, test_engine_cache.py and test_faults_one_line.py."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "streamseg" / "data" / "sample"


@pytest.fixture(scope="module")
def bench(tmp_path_factory, tiny_checkpoint):
    """A folder holding the demo, a symlink loop, a FIFO and checkpoints with impossible configs."""
    d = tmp_path_factory.mktemp("battery")
    os.symlink(SAMPLE / "demo.mp4", d / "demo.mp4")
    os.symlink("loop", d / "loop")
    os.mkfifo(d / "fifo")
    (d / "cfg").mkdir()
    for name, key, value in [("size0.pt", "image_size", 0), ("size2e20.pt", "image_size", 2 ** 20),
                             ("anchors.pt", "anchor_sizes", ["a", "b", "c", "d", "e"])]:
        blob = torch.load(tiny_checkpoint, weights_only=True)
        blob["config"][key] = value
        torch.save(blob, d / name)
    return d


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (1_200_000 * 1024,) * 2)


CASES = {
    # user text that rich would read as markup
    "file name with [/x]": ["file", "x[/x].mp4"],
    "file name with [blink]": ["file", "scan[blink]1.mp4"],
    "--crop [/x]": ["file", "demo.mp4", "--crop", "[/x]"],
    "--profile [/x]": ["file", "demo.mp4", "--profile", "[/x]"],
    "--compute [/x]": ["file", "demo.mp4", "--compute", "[/x]"],
    "calibrate name [/x]": ["calibrate", "a[/x]", "--mm-per-px", "0.1"],
    # paths
    "input symlink loop": ["file", "loop"],
    "--csv symlink loop": ["file", "demo.mp4", "--csv", "loop"],
    "input name 300 bytes": ["file", "a" * 300 + ".mp4"],
    "input path 6000 bytes": ["file", "a/" * 3000 + "x.mp4"],
    "--out path 6000 bytes": ["file", "demo.mp4", "--out", "a/" * 3000 + "x.mp4"],
    # checkpoints
    "image_size 0": ["file", "demo.mp4", "--model", "size0.pt", "--backend", "torch"],
    "image_size 2**20": ["file", "demo.mp4", "--model", "size2e20.pt", "--backend", "torch"],
    "anchor sizes of text": ["file", "demo.mp4", "--model", "anchors.pt", "--backend", "torch"],
    "--model /dev/zero": ["file", "demo.mp4", "--model", "/dev/zero"],
    "--model a FIFO": ["file", "demo.mp4", "--model", "fifo"],
    "--model a folder": ["file", "demo.mp4", "--model", "."],
    # usage
    "missing argument": ["file"],
    "unknown option": ["file", "demo.mp4", "--bogus"],
    "unknown command": ["nope"],
    "not an integer": ["file", "demo.mp4", "--max-frames", "abc"],
    "live --device ''": ["live", "--device", "", "--no-show"],
    # memory
    "ulimit -v 1.2 GB": ["file", "demo.mp4", "--backend", "torch"],
}


@pytest.mark.parametrize("args", CASES.values(), ids=CASES.keys())
def test_hostile_input_is_one_line_never_a_traceback(bench, args, request):
    env = {**os.environ, "PYTHONPATH": str(REPO), "STREAMSEG_CONFIG_DIR": str(bench / "cfg"),
           "TMPDIR": str(bench)}
    memory = "ulimit" in request.node.callspec.id
    r = subprocess.run([sys.executable, "-m", "streamseg", *args], capture_output=True, text=True, cwd=bench,
                       env=env, timeout=600, preexec_fn=_limit_memory if memory else None)
    err = r.stderr.strip().splitlines()
    assert r.returncode != 0, (args, r.stdout, r.stderr)
    assert "Traceback" not in r.stdout + r.stderr, r.stderr[-3000:]
    assert len(err) == 1 and err[0].startswith("error: "), r.stderr[-3000:]
