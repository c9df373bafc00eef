"""The runtime stages are torch-free: importing them (and the package) pulls in neither torch nor
torchvision, so capture, measurement, overlay and sinks start without the model's weight; the
live benchmark does not import the benchmark that calls it; and the runner names no concrete sink
or source (it opens them through `outputs.sinks.open_outputs` and `inputs.sources.open_source`)."""
from __future__ import annotations

import subprocess
import sys

TORCH_FREE = ["streamseg", "streamseg.types", "streamseg.files", "streamseg.app.stats", "streamseg.letterbox",
              "streamseg.inputs.sources", "streamseg.analysis.measure", "streamseg.inputs.calibration", "streamseg.outputs.overlay",
              "streamseg.outputs.video", "streamseg.outputs.rows", "streamseg.outputs.display", "streamseg.analysis.summary", "streamseg.app.pipeline", "streamseg.app.runner", "streamseg.app.bench_live", "streamseg.app.cli",
              "streamseg.outputs.progress", "streamseg.outputs.sinks"]
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


def _implementations() -> set[str]:
    """The classes of streamseg/outputs/*.py and streamseg/inputs/*.py that implement `types.Sink`
    (a `FileSink` too) or `types.Source`: those with every method of the protocol."""
    import importlib
    import inspect
    from pathlib import Path

    from streamseg.types import Sink, Source

    def methods(proto) -> set[str]:
        return {n for n, v in vars(proto).items() if not n.startswith("_") and inspect.isfunction(v)}

    protocols = [methods(Sink), methods(Source)]
    pkg = Path(__file__).resolve().parents[1] / "streamseg"
    found = set()
    for path in sorted([*(pkg / "outputs").glob("*.py"), *(pkg / "inputs").glob("*.py")]):
        module = importlib.import_module(f"streamseg.{path.parent.name}.{path.stem}")
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and obj.__module__ == module.__name__
                    and any(ms <= set(dir(obj)) for ms in protocols)):
                found.add(name)
    return found


def test_the_runner_names_no_concrete_sink_or_source():
    """Issue 17: which outputs a run opens is the outputs package's (`open_outputs`); the runner
    imports and names no sink or source class, only the contracts in `types`."""
    import ast
    from pathlib import Path

    concrete = _implementations()
    assert {"VideoSink", "RawVideoSink", "RowSink", "ProgressSink", "WindowSink", "DicomSource"} <= concrete, concrete
    tree = ast.parse((Path(__file__).resolve().parents[1] / "streamseg" / "app" / "runner.py").read_text())
    named = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            named |= {(a.asname or a.name).split(".")[-1] for a in node.names}
        elif isinstance(node, ast.Name):
            named.add(node.id)
        elif isinstance(node, ast.Attribute):
            named.add(node.attr)
    assert sorted(named & concrete) == []
