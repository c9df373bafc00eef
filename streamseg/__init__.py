"""streamseg: real-time median-nerve segmentation (Mask R-CNN, Di Cosmo et al.) for wrist ultrasound.

Importing the package is cheap and torch-free: `build_model` and `ModelConfig` (torch) are loaded on
first use, so the runtime stages (sources, measure, overlay, outputs, display, scan summary, pipeline) never pull in torch."""
from .app.interrupts import exit_at_once_on_interrupt, started_as_the_command
from .memory import one_line_when_out_of_memory

if started_as_the_command():  # first thing: Ctrl-C while the command starts is one line, exit 130,
    exit_at_once_on_interrupt()
    one_line_when_out_of_memory()  # and so is too little memory to import what it needs

from .types import Detection, Frame, Measurement, Result, StreamsegError, Timings  # noqa: E402

__version__ = "0.1.0"
__all__ = ["build_model", "ModelConfig", "Frame", "Detection", "Measurement", "Result", "Timings", "StreamsegError"]

_FROM_MODEL = ("ModelConfig", "build_model")


def __getattr__(name: str):
    if name in _FROM_MODEL:
        from .model import architecture

        return getattr(architecture, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
