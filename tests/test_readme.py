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

    from streamseg.cli import app

    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set-up: two commands", 1)[1]
    main_cmd = _bash_blocks(setup)[0].strip()
    job = main_cmd.split("&& streamseg ", 1)[1].split()
    assert job[0] == "file" and (ROOT / job[1]).is_file()
    help_text = CliRunner().invoke(app, ["file", "--help"], env={"COLUMNS": "200"}).output
    for flag in (t for t in job if t.startswith("--")):
        assert flag in help_text
