"""One name per flag: the compute device is `--compute` (same help) on every command that runs the
network, and `--device` is only `live`'s capture device."""
from __future__ import annotations

import inspect

from streamseg.app import cli
from streamseg.app.cli import COMPUTE_HELP

NETWORK_COMMANDS = {"file": cli.file, "live": cli.live, "train": cli.train, "eval": cli.eval_, "export": cli.export,
                    "bench": cli.bench}


def _visible_options(fn) -> dict:
    """flag -> typer OptionInfo, for the options --help shows."""
    out = {}
    for p in inspect.signature(inspect.unwrap(fn)).parameters.values():
        info = p.default
        if getattr(info, "hidden", False) or not hasattr(info, "param_decls"):
            continue
        decls = info.param_decls or (f"--{p.name.replace('_', '-')}",)
        out.update({d: info for d in decls})
    return out


def test_compute_is_one_flag_with_one_help_text():
    for name, fn in NETWORK_COMMANDS.items():
        assert _visible_options(fn)["--compute"].help == COMPUTE_HELP, name


def test_device_is_only_the_live_capture_device():
    assert "/dev/videoN" in _visible_options(cli.live)["--device"].help
    for name, fn in NETWORK_COMMANDS.items():
        if name != "live":
            assert "--device" not in _visible_options(fn), name


def _help(args: list[str], columns: int) -> str:
    """`streamseg ARGS --help` as a terminal of `columns` shows it (a subprocess: typer's CliRunner
    forces 80 columns)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "COLUMNS": str(columns), "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.run([sys.executable, "-m", "streamseg", *args, "--help"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_help_uses_the_terminals_width():
    """Subcommand help wrapped at 78 columns on a 100-column terminal (click's 80-column default)."""
    for command in NETWORK_COMMANDS:
        lines = _help([command], 100).splitlines()
        assert max(map(len, lines)) <= 100 and any(len(ln) > 80 for ln in lines), command


def test_the_command_list_shows_each_commands_whole_first_line():
    """`streamseg --help` cut every command's description with "..."; each has a short first line now."""
    text = _help([], 80)
    commands = text.split("Commands:", 1)[1].strip().splitlines()
    assert len(commands) == len(cli.app.registered_commands) and not any("..." in c for c in commands), text
    for fn in (c.callback for c in cli.app.registered_commands):
        first = inspect.getdoc(fn).split("\n\n", 1)[0]
        assert "\n" not in first and first.endswith(".") and len(first) <= 60, first


def test_every_visible_option_says_what_it_is():
    """train's --epochs, --lr, --batch-size, --seed and --workers had no description."""
    for fn in (c.callback for c in cli.app.registered_commands):
        for flag, info in _visible_options(fn).items():
            assert info.help, (fn.__name__, flag)


def test_compute_lists_its_choices_once_and_defaults_to_auto_everywhere():
    """--compute printed its choices twice (metavar and help); eval's defaulted to cpu."""
    for name, fn in NETWORK_COMMANDS.items():
        text = " ".join(_help([name], 200).split())
        entry = text.split("Options:", 1)[1].split("--compute ", 1)[1].split(" --", 1)[0]
        assert entry.count("cuda:N") == 1 and "[default: auto]" in entry, (name, entry)
        assert _visible_options(fn)["--compute"].default == "auto", name
