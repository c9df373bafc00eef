"""A checkpoint is a file from anywhere: its config values are checked when it is loaded (an
image_size of 0 or 2**20, anchor sizes of text failed deep in OpenCV/torchvision or tried to
allocate terabytes), and `train --resume` from another run's or another architecture's checkpoint
says in one line what does not match (it was a KeyError or a 415-line shape dump). Issue 18."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from streamseg.model.checkpoint import load_checkpoint, save_checkpoint
from streamseg.app.cli import app
from streamseg.model.architecture import ModelConfig, build_model
from streamseg.types import StreamsegError

BAD_CONFIGS = {
    "image_size 0": ("image_size", 0),
    "image_size negative": ("image_size", -512),
    "image_size 2**20": ("image_size", 2 ** 20),
    "image_size text": ("image_size", "512"),
    "anchor_sizes of text": ("anchor_sizes", ["a", "b", "c", "d", "e"]),
    "anchor_sizes of numbers as text": ("anchor_sizes", ["32", "64", "128", "256", "512"]),
    "anchor_sizes not a list": ("anchor_sizes", 32),
    "anchor_sizes negative": ("anchor_sizes", [-32, 64, 128, 256, 512]),
    "aspect_ratios zero": ("aspect_ratios", [0, 1, 2]),
    "fpn_channels 0": ("fpn_channels", 0),
    "max_detections 1e9": ("max_detections", 10 ** 9),
    "box_score_thresh nan": ("box_score_thresh", float("nan")),
    "box_iou 1": ("box_iou", 1.0),
    "box_from_mask text": ("box_from_mask", "yes"),
    "num_classes bool": ("num_classes", True),
}


def _with(tmp_path, checkpoint, key, value):
    blob = torch.load(checkpoint, weights_only=True)
    blob["config"][key] = value
    path = tmp_path / "bad.pt"
    torch.save(blob, path)
    return path


@pytest.mark.parametrize("key, value", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_a_checkpoint_config_out_of_range_is_refused_when_loaded(tmp_path, tiny_checkpoint, key, value):
    path = _with(tmp_path, tiny_checkpoint, key, value)
    with pytest.raises(StreamsegError, match=key) as e:
        load_checkpoint(path)
    assert str(e.value).startswith(str(path))


def test_a_checkpoint_config_out_of_range_is_one_line_on_the_command_line(tmp_path, tiny_checkpoint, sample_dir):
    path = _with(tmp_path, tiny_checkpoint, "image_size", 0)
    r = CliRunner().invoke(app, ["file", str(sample_dir / "demo.mp4"), "--model", str(path), "--backend", "torch",
                                 "--max-frames", "1"])
    err = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(err) == 1 and "image_size 0" in err[0], r.output


def test_a_checkpoint_with_a_config_that_is_not_a_mapping_is_one_line(tmp_path, tiny_checkpoint):
    path = _with(tmp_path, tiny_checkpoint, "image_size", 256)
    blob = torch.load(path, weights_only=True)
    blob["config"] = ["resnet101"]
    torch.save(blob, path)
    with pytest.raises(StreamsegError, match="config"):
        load_checkpoint(path)


SMALL = dict(backbone="mobilenet_v3_large", mask_head="28", box_head_width=64, mask_head_width=32, fpn_channels=32,
             image_size=128)


def _run(tmp_path, **arch):
    """What `resume` reads of a training run (a `loop.Run`): its config, model, optimizer, lr schedule,
    AMP scaler and last path."""
    cfg = ModelConfig(**{**SMALL, **arch})
    model = build_model(cfg)
    from streamseg.training.loop import TrainConfig, make_scheduler

    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    return SimpleNamespace(cfg=SimpleNamespace(resume=True), mcfg=cfg, model=model, opt=opt,
                           sched=make_scheduler(opt, TrainConfig(data="x"), 10), scaler=torch.amp.GradScaler("cuda", enabled=False),
                           iters_per_epoch=1, last_path=tmp_path / "m_last.pt")


def _save_last(run, train_state=True):
    meta = {"train_state": {"epoch": 0, "best": 0.1, "optimizer": run.opt.state_dict()}} if train_state else {}
    save_checkpoint(run.last_path, run.model, meta, config=run.mcfg)


def test_resume_from_another_architecture_says_what_differs(tmp_path):
    from streamseg.training.loop import resume

    _save_last(_run(tmp_path, mask_head="56"))
    with pytest.raises(StreamsegError, match=r"another model \(mask_head '56', this run '28'\)"):
        resume(_run(tmp_path))
    _save_last(_run(tmp_path, fpn_channels=64))
    with pytest.raises(StreamsegError, match="fpn_channels 64, this run 32"):
        resume(_run(tmp_path))


def test_resume_from_a_checkpoint_without_training_state_is_one_line(tmp_path):
    from streamseg.training.loop import resume

    _save_last(_run(tmp_path), train_state=False)  # e.g. a best checkpoint copied over *_last.pt
    with pytest.raises(StreamsegError, match="no training state"):
        resume(_run(tmp_path))


def test_resume_whose_weights_do_not_fit_is_one_line(tmp_path):
    from streamseg.training.loop import resume

    run = _run(tmp_path)
    _save_last(run)
    blob = torch.load(run.last_path, weights_only=True)
    blob["state_dict"].pop(next(iter(blob["state_dict"])))
    torch.save(blob, run.last_path)
    with pytest.raises(StreamsegError, match="does not fit this run") as e:
        resume(_run(tmp_path))
    assert "\n" not in str(e.value)


def test_resume_of_the_same_run_goes_on(tmp_path):
    from streamseg.training.loop import resume

    run = _run(tmp_path)
    _save_last(run)
    assert resume(_run(tmp_path), log=lambda s: None) == (1, 0.1)
