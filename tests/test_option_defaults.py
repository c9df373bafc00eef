"""Each default of a `file`/`live` run is said once: the CLI's flags, runner.Options and the stages
read the named defaults of `streamseg.types`, and the CLI's parameters carry Options' names."""
import dataclasses

import pytest
import typer

from streamseg import types
from streamseg.app.cli import app
from streamseg.app.runner import Options

NAMED = {"cts_cutoff_mm2": types.CTS_CUTOFF_MM2, "stable_window": types.STABLE_WINDOW,
         "open_timeout_s": types.OPEN_TIMEOUT_S, "read_timeout_s": types.READ_TIMEOUT_S,
         "reconnect_attempts": types.RECONNECT_ATTEMPTS, "backoff_s": types.BACKOFF_S,
         "max_detections": types.SHOWN_DETECTIONS,
         "score_thresh": None, "confident": None}  # None: the model's own (`Thresholds`), see below
DEFAULTS = {f.name: f.default for f in dataclasses.fields(Options) if f.default is not dataclasses.MISSING}


def test_options_take_the_named_defaults():
    assert {k: DEFAULTS[k] for k in NAMED} == NAMED
    # a checkpoint without its own operating point runs at the named defaults
    assert (types.Thresholds().display, types.Thresholds().csa) == (types.NERVE_SCORE, types.CONFIDENT_SCORE)


@pytest.mark.parametrize("command", ["file", "live"])
def test_every_flag_of_file_and_live_is_an_option_with_its_default(command):
    params = typer.main.get_command(app).commands[command].params
    names = {p.name for p in params}
    assert names <= {f.name for f in dataclasses.fields(Options)}, names - set(DEFAULTS)
    for p in params:
        if p.name in DEFAULTS and not (command == "live" and p.name == "show"):  # live: None = when a display exists
            assert p.default == DEFAULTS[p.name], (p.name, p.default, DEFAULTS[p.name])


def test_the_stages_take_the_same_defaults():
    import inspect

    from streamseg.analysis.measure import Analyser
    from streamseg.outputs.overlay import Style
    from streamseg.inputs.sources import AVSource, open_source

    assert Style(calibrated=True).cts_cutoff_mm2 == types.CTS_CUTOFF_MM2
    assert inspect.signature(Analyser).parameters["window"].default == types.STABLE_WINDOW
    src = inspect.signature(open_source).parameters
    assert (src["read_timeout_s"].default, src["open_timeout_s"].default) == (types.READ_TIMEOUT_S, types.OPEN_TIMEOUT_S)
    assert (src["reconnect_attempts"].default, src["backoff_s"].default) == (types.RECONNECT_ATTEMPTS, types.BACKOFF_S)
    assert inspect.signature(AVSource).parameters["read_timeout_s"].default == types.READ_TIMEOUT_S
