"""The runtime stages are torch-free: importing them (and the package) pulls in neither torch nor
torchvision, so capture, measurement, overlay and sinks start without the model's weight; and the
live benchmark does not import the benchmark that calls it."""
from __future__ import annotations

import subprocess
import sys

TORCH_FREE = ["streamseg", "streamseg.types", "streamseg.files", "streamseg.app.stats", "streamseg.letterbox",
              "streamseg.inputs.sources", "streamseg.analysis.measure", "streamseg.inputs.calibration", "streamseg.outputs.overlay",
              "streamseg.outputs.video", "streamseg.outputs.rows", "streamseg.outputs.display", "streamseg.analysis.summary", "streamseg.app.pipeline", "streamseg.app.runner", "streamseg.app.bench_live", "streamseg.app.cli",
              "streamseg.outputs.progress"]
FORBIDDEN = ("torch", "torchvision", "streamseg.app.bench", "streamseg.model", "streamseg.backends")

# Imports the modules one by one in a fresh interpreter; prints the first one after which a forbidden
# module is loaded, with what it loaded.
PROBE = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
    bad = [m for m in {forbidden!r} if m in sys.modules]
    if bad:
        print(name, 'imports', ' '.join(bad))
        break
"""


def test_runtime_stages_import_no_torch():
    r = subprocess.run([sys.executable, "-c", PROBE.format(forbidden=FORBIDDEN), *TORCH_FREE],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""


def test_the_package_still_offers_the_model_on_first_use():
    code = "import streamseg; from streamseg import ModelConfig, build_model; print(build_model.__module__)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "streamseg.model.architecture"


def test_the_environment_is_read_in_settings_py_alone():
    """Issue 17: runtime knobs come from one settings object; no other module reads os.environ."""
    from pathlib import Path

    pkg = Path(__file__).resolve().parents[1] / "streamseg"
    readers = [str(p.relative_to(pkg)) for p in pkg.rglob("*.py")
               if p.name != "settings.py" and ("os.environ" in p.read_text() or "getenv(" in p.read_text())]
    assert readers == []
