"""The README's set-up commands stay true: CI runs the README's test command verbatim, and the
main command names files and flags that exist."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    main_cmd, test_cmd = (b.strip() for b in _bash_blocks(setup)[:2])
    assert "pytest" in test_cmd and "pytest" not in main_cmd
    ci_lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_cmd in ci_lines


def test_readme_main_command_uses_the_bundled_demo_and_real_flags():
    from typer.testing import CliRunner

    from streamseg.app.cli import app

    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set-up: two commands", 1)[1]
    main_cmd = _bash_blocks(setup)[0].strip()
    job = main_cmd.split("&& streamseg ", 1)[1].split()
    assert job[0] == "file" and (ROOT / job[1]).is_file()
    help_text = CliRunner().invoke(app, ["file", "--help"], env={"COLUMNS": "200"}).output
    for flag in (t for t in job if t.startswith("--")):
        assert flag in help_text


def _calibration_examples(readme: str) -> list[list[str]]:
    """The `streamseg calibrate ...` lines of the README's calibration section, as argv lists."""
    import shlex

    section = readme.split("### Calibration:", 1)[1].split("\n### ", 1)[0]
    lines = [ln.split("#", 1)[0].strip() for b in _bash_blocks(section) for ln in b.splitlines()]
    return [shlex.split(ln) for ln in lines if ln.startswith("streamseg calibrate")]


def test_readme_calibration_examples_save_profiles_that_file_uses(tmp_path, monkeypatch, small_checkpoint):
    """Every calibrate example runs verbatim (in a temp HOME/XDG_CONFIG_HOME, from the clone's root:
    `--from` names the bundled grab), saves the profile the README's `--profile` flags name, and
    `streamseg file --profile` uses it."""
    import json
    import os
    import subprocess
    import sys

    readme = (ROOT / "README.md").read_text()
    examples = _calibration_examples(readme)
    assert len(examples) >= 3 and any("--from" in e for e in examples) and any("--list" in e for e in examples)
    env = {k: v for k, v in os.environ.items() if k != "STREAMSEG_CONFIG_DIR"}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"),
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    cli = [sys.executable, "-c", "from streamseg.app.cli import main; main()"]
    outputs = []
    for argv in examples:
        r = subprocess.run(cli + argv[1:], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (argv, r.stderr)
        outputs.append(r.stdout + r.stderr)
    profiles = json.loads((tmp_path / "config/streamseg/profiles.json").read_text())
    assert profiles["ml6-15_wrist"]["mm_per_px"] == 30 / 480 and profiles["ml6-15_wrist"]["crop"] == [312, 96, 640, 480]
    assert profiles["l12_msk"]["mm_per_px"] == 10 / 182
    assert "ml6-15_wrist" in outputs[-1] and "l12_msk" in outputs[-1]  # --list shows both
    for name in set(re.findall(r"--profile ([\w.-]+)", readme)):
        assert name in profiles, f"README uses --profile {name}, which no calibration example saves"
    grab = next(a for e in examples if "--from" in e for a in e[e.index("--from") + 1:][:1])
    assert (ROOT / grab).is_file()  # a bundled file: the example runs as written in a fresh clone
    r = subprocess.run(cli + ["file", str(ROOT / grab), "--profile", "ml6-15_wrist", "--model", str(small_checkpoint),
                              "--backend", "torch", "--max-frames", "1", "--csv", "o.csv"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "0.0625 mm/px from profile 'ml6-15_wrist'" in r.stdout + r.stderr
    assert "(640x480" in r.stdout + r.stderr  # the profile's crop was applied to the 1280x720 grab


def test_calibrate_from_a_missing_grab_is_one_line_and_exit_2(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from streamseg.app.cli import app

    monkeypatch.setenv("STREAMSEG_CONFIG_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["calibrate", "--probe", "ml6-15", "--preset", "wrist", "--depth-mm", "30",
                                 "--crop", "312,96,640,480", "--from", "grab.png"])
    assert r.exit_code == 2 and "grab.png: no such file" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "profiles.json").exists()


def test_readme_eval_example_on_the_bundled_sample_runs_as_written(tmp_path):
    """Every `eval` example needed ../shared; the first one now runs on the bundled sample, verbatim
    (in tmp_path, where `streamseg/data/sample` links to the clone's, so its outputs land there)."""
    import json
    import os
    import shlex
    import subprocess
    import sys

    readme = (ROOT / "README.md").read_text()
    section = readme.split("### `streamseg eval`", 1)[1].split("\n### ", 1)[0]
    lines = [ln.strip() for b in _bash_blocks(section) for ln in b.splitlines()]
    argv = shlex.split(lines[0])
    assert argv[:4] == ["streamseg", "eval", "--data", "streamseg/data/sample"], lines[0]
    (tmp_path / "streamseg" / "data").mkdir(parents=True)
    (tmp_path / "streamseg" / "data" / "sample").symlink_to(ROOT / "streamseg" / "data" / "sample")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-c", "from streamseg.app.cli import main; main()", *argv[1:]], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / argv[argv.index("--json") + 1]).read_text())
    assert result["summary"]["images"] == 7 and len(result["per_image"]) == 7
    assert (tmp_path / argv[argv.index("--out-dir") + 1] / "per_image.csv").is_file()
