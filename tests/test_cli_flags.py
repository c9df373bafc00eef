"""One name per flag: the compute device is `--compute` (same help) on every command that runs the
network, and `--device` is only `live`'s capture device."""
from __future__ import annotations

import inspect

from streamseg import cli
from streamseg.cli import COMPUTE_HELP

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
