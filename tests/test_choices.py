"""Every fixed choice is defined once, in streamseg/choices.py: the CLI's --help lists exactly its
values, and the code that validates them refuses anything else with the same list."""
import re

import pytest
from typer.testing import CliRunner

from streamseg import choices
from streamseg.choices import (Backbone, Backend, BoxKind, ExportFormat, FnRule, Instances, MaskHead,
                               Norm, Precision, Schedule, Subset, Tracking, resolve_precision)
from streamseg.app.cli import app
from streamseg.types import StreamsegError

# (command, flag, choice): every choice flag of the CLI
FLAGS = [
    ("file", "--backend", Backend), ("file", "--precision", Precision),
    ("live", "--backend", Backend), ("live", "--precision", Precision),
    ("export", "--format", ExportFormat), ("export", "--precision", Precision),
    ("train", "--backbone", Backbone), ("train", "--mask-head", MaskHead), ("train", "--norm", Norm),
    ("train", "--schedule", Schedule), ("train", "--instances", Instances),
    ("eval", "--subset", Subset), ("eval", "--fn-rule", FnRule), ("eval", "--box", BoxKind),
    ("ablation", "--backbone", Backbone), ("ablation", "--schedule", Schedule),
    ("bench", "--backbone", Backbone), ("bench", "--mask-head", MaskHead),
]
# bench's comma lists name their choices in the help text
COMMA_LISTS = [("bench", "--backend", Backend), ("bench", "--precision", Precision), ("bench", "--tracking", Tracking)]


def _help(command: str) -> str:
    return CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "300"}).output


@pytest.mark.parametrize("command,flag,kind", FLAGS)
def test_help_lists_exactly_the_choices(command, flag, kind):
    m = re.search(rf"{flag} <([^>]*)>", _help(command))
    assert m is not None and tuple(m.group(1).split("|")) == tuple(kind), (flag, m and m.group(1))


@pytest.mark.parametrize("command,flag,kind", COMMA_LISTS)
def test_bench_comma_lists_name_their_choices(command, flag, kind):
    text = " ".join(_help(command).split())
    assert f"comma list of {','.join(kind)}" in text


def test_every_choice_of_the_module_is_on_the_command_line():
    kinds = {v for v in vars(choices).values() if isinstance(v, type) and issubclass(v, choices.StrEnum)
             and v is not choices.StrEnum}
    assert kinds == {k for *_, k in FLAGS + COMMA_LISTS}


def test_the_model_config_refuses_what_the_flag_refuses():
    from streamseg.model.architecture import ModelConfig

    with pytest.raises(StreamsegError, match="unknown backbone 'vgg'.*" + ", ".join(Backbone)):
        ModelConfig(backbone="vgg")
    cfg = ModelConfig(backbone=Backbone.RESNET18, mask_head=28, norm=Norm.GROUP)
    assert type(cfg.backbone) is str and cfg.mask_head == "28" and cfg.mask_size == 28


def test_int8_runs_on_onnxruntime_on_the_cpu_only():
    assert resolve_precision("auto", "onnxruntime", "cpu") == Precision.INT8
    assert resolve_precision("auto", "torch", "cpu") == Precision.FP32
    assert resolve_precision("auto", "onnxruntime", "cuda:0") == Precision.FP32
    assert resolve_precision("auto", "auto", "auto") == Precision.AUTO  # not picked yet
    assert resolve_precision("int8", "auto", "auto") == Precision.INT8
    assert resolve_precision("auto", "onnx", "cpu", export=True) == Precision.INT8
    assert resolve_precision("int8", "onnx", "cuda", export=True) == Precision.INT8  # built on the CPU
    for args, words in [(("int8", "torch", "cpu"), "onnxruntime backend"), (("int8", "auto", "cuda"), "CPU"),
                        (("int8", "onnxruntime", "cuda"), "CPU")]:
        with pytest.raises(StreamsegError, match=words):
            resolve_precision(*args)
    with pytest.raises(StreamsegError, match="--format onnx"):
        resolve_precision("int8", "engine", "cpu", export=True)


def test_fp16_is_a_precision_of_every_command_and_the_compiled_default_on_cuda():
    """Issue 21: auto picks FP16 for the compiled backends on CUDA (eager torch stays FP32, where
    FP16 was no faster); fp16 where no GPU runs it is one line, whichever command asks."""
    assert resolve_precision("auto", "compiled", "cuda") == Precision.FP16
    assert resolve_precision("auto", "tensorrt", "cuda:1") == Precision.FP16
    assert resolve_precision("auto", "torch", "cuda") == Precision.FP32
    assert resolve_precision("auto", "onnxruntime", "cuda") == Precision.FP32
    assert resolve_precision("fp16", "torch", "cuda") == Precision.FP16
    assert resolve_precision("fp16", "auto", "auto") == Precision.FP16  # checked again once the device is known
    for backend in ("torch", "compiled", "onnxruntime", "auto"):
        with pytest.raises(StreamsegError, match="fp16 runs on an NVIDIA GPU: use --compute cuda"):
            resolve_precision("fp16", backend, "cpu")
    assert resolve_precision("auto", "compiled", "cuda", export=True) == Precision.FP16
    assert resolve_precision("auto", "engine", "cuda", export=True) == Precision.FP16
    assert resolve_precision("auto", "onnx", "cuda", export=True) == Precision.FP32
    assert resolve_precision("fp16", "onnx", "cpu", export=True) == Precision.FP16  # an FP16 graph for a GPU
    with pytest.raises(StreamsegError, match="built on the GPU it runs on"):
        resolve_precision("fp16", "compiled", "cpu", export=True)
    for cmd in ("file", "live", "bench", "export"):
        assert "fp16" in _help(cmd), cmd
    for args in (["file", "x.mp4"], ["export", "--format", "compiled"]):
        r = CliRunner().invoke(app, [*args, "--precision", "fp16", "--compute", "cpu"])
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
