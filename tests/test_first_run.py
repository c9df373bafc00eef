"""What a new user's first runs meet (issue 18): onnx and onnxruntime come with `pip install -e .`,
the first run says that it prepares the engine instead of pausing silently, and an install that
lacks onnx or onnxruntime is one line with the right hint, never a traceback."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HINT = "(pip install onnx onnxruntime, or reinstall streamseg, which depends on both)"


def _cli(args, hide: str | None = None, env: dict | None = None, timeout: int = 600):
    """`streamseg ARGS` in a fresh interpreter; `hide` makes that module unimportable (as if not installed)."""
    code = (f"import sys; sys.modules[{hide!r}] = None; " if hide else "") + "from streamseg.app.cli import main; main()"
    env = {**{k: v for k, v in os.environ.items() if k != "STREAMSEG_ENGINES"}, "PYTHONPATH": str(REPO), **(env or {})}
    p = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def test_onnx_and_onnxruntime_are_core_dependencies():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = {d.split(">")[0].split("=")[0].split("<")[0].strip() for d in project["dependencies"]}
    assert {"onnx", "onnxruntime", "torch"} <= core
    assert project["optional-dependencies"]["onnx"] == []  # an old `.[onnx]` install line still works


def test_export_onnx_without_onnx_is_one_line_with_the_hint(tmp_path):
    """It was an 85-line ModuleNotFoundError traceback."""
    rc, out, err = _cli(["export", "--format", "onnx", "--out", tmp_path / "eng"], hide="onnx")
    assert rc == 2 and "Traceback" not in err, err
    assert err.strip() == f"error: onnx is not installed {HINT}"
    assert not (tmp_path / "eng").exists() or not any((tmp_path / "eng").iterdir())


@pytest.mark.parametrize("hide", ["onnxruntime", "onnx"])
def test_backend_onnxruntime_without_it_is_one_line_with_the_hint(sample_dir, tmp_path, hide):
    """It said `pip install 'streamseg'` (rich took the `[onnx]` of the hint for markup)."""
    rc, out, err = _cli(["file", sample_dir / "demo.mp4", "--backend", "onnxruntime", "--csv", tmp_path / "o.csv",
                         "--max-frames", "1"], hide=hide)
    assert rc == 2 and err.strip() == f"error: {hide} is not installed {HINT}", err
    assert not (tmp_path / "o.csv").exists()


def test_backend_auto_without_onnxruntime_falls_back_to_eager_torch(sample_dir, tmp_path):
    rc, out, err = _cli(["file", sample_dir / "demo.mp4", "--csv", tmp_path / "o.csv", "--max-frames", "1",
                         "--no-track", "--compute", "cpu"], hide="onnxruntime")
    assert rc == 0 and "model: torch" in out + err, err
    assert "preparing the inference engine" not in out + err  # eager torch builds nothing


@pytest.mark.slow
def test_the_first_run_says_once_that_it_prepares_the_engine_and_the_next_run_reuses_it(sample_dir, tmp_path):
    """The first run with onnxruntime exported and quantised its graphs for ~17 s without a word.
    Now one line says so (where, and that it happens once), however many graphs are built; the next
    run builds nothing and says nothing of it."""
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    args = ["file", sample_dir / "demo.mp4", "--csv", tmp_path / "o.csv", "--max-frames", "2", "--compute", "cpu"]
    rc, out, err = _cli(args, env=env)
    text = out + err
    assert rc == 0 and "model: onnxruntime" in text, text
    engines = tmp_path / "cache" / "streamseg" / "engines"
    notice = f"preparing the inference engine in {engines} (once, about 20 s on a 2-core CPU; later runs reuse it)..."
    assert text.count("preparing the inference engine") == 1 and notice in text, text
    assert text.index(notice) < text.index("model: onnxruntime")  # said before the pause, not after it
    assert "building" not in text and "quantising" not in text, text  # one line, not one per graph
    assert len(list(engines.glob("*-int8.onnx"))) == 2  # the full frame's and the tracking window's
    rc, out, err = _cli(args, env=env)
    assert rc == 0 and "preparing" not in out + err, out + err
