"""Training on real scans: the loss goes down, checkpoints round-trip, resume, eval outputs, DDP."""
import csv
import json
import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from streamseg import build_model
from streamseg.model.checkpoint import load_checkpoint, load_model, save_checkpoint
from streamseg.types import StreamsegError
from streamseg.model.architecture import ModelConfig
from streamseg.app.cli import app
from streamseg.training.dataset import NerveDataset, collate, scan_folder

SMALL = ["--backbone", "mobilenet_v3_large", "--fpn-channels", "32", "--box-head-width", "64", "--mask-head-width", "32"]


def test_a_few_steps_lower_the_loss_on_real_scans(sample_dir):
    torch.manual_seed(0)
    model = build_model(backbone="mobilenet_v3_large", mask_head="112", box_head_width=64, mask_head_width=32,
                        fpn_channels=32, image_size=256).train()  # the tiny checkpoint's widths (conftest)
    images, targets = collate([NerveDataset(scan_folder(sample_dir)[:2], size=256)[i] for i in range(2)])
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def loss_now():
        torch.manual_seed(123)  # same RPN/RoI sampling for the before/after comparison
        with torch.no_grad():
            return float(sum(model(list(images), list(targets)).values()))

    before = loss_now()
    for _ in range(8):
        loss = sum(model(list(images), list(targets)).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = loss_now()
    assert after < 0.8 * before, (before, after)


def test_checkpoint_round_trip_and_bad_files(tmp_path):
    from streamseg import StreamsegError

    torch.manual_seed(0)
    cfg = ModelConfig(backbone="resnet18", mask_head="56", box_head_width=128)
    model = build_model(cfg)
    save_checkpoint(tmp_path / "m.pt", model, meta={"k": 1}, half=True, config=cfg)
    loaded, info = load_checkpoint(tmp_path / "m.pt", max_detections=1)
    assert info.config.mask_head == "56" and info.config.max_detections == 1
    w0, w1 = model.backbone.body.conv1.weight, loaded.backbone.body.conv1.weight
    assert torch.allclose(w0, w1, atol=1e-3) and w1.dtype == torch.float32
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    for bad, msg in [(tmp_path / "none.pt", "not found"), (tmp_path / "junk.pt", "not a readable")]:
        with pytest.raises(StreamsegError, match=msg):
            load_model(bad)
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(StreamsegError, match="not a streamseg checkpoint"):
        load_model(tmp_path / "foreign.pt")
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    blob["config"]["backbone"] = "resnet50"  # weights of another architecture
    torch.save(blob, tmp_path / "other.pt")
    with pytest.raises(StreamsegError, match="do not fit"):
        load_model(tmp_path / "other.pt")


def test_train_resume_and_eval_cli(sample_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "m.pt"
    args = ["train", "--data", str(sample_dir), "--out", str(out), "--epochs", "1", "--batch-size", "2",
            "--split", str(tmp_path / "split.json"), "--max-iters-per-epoch", "1", *SMALL]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert out.exists() and (tmp_path / "m_last.pt").exists() and (tmp_path / "split.json").exists()
    rows = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert rows[0]["epoch"] == 1 and "val_dice_median" in rows[0] and rows[0]["loss"] > 0
    r = runner.invoke(app, [*args[:6], "2", *args[7:], "--resume"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in rows] == [1, 2]
    assert (tmp_path / "m.csv").read_text().count("\n") == 3

    r = runner.invoke(app, ["eval", "--data", str(sample_dir), "--model", str(out), "--json", str(tmp_path / "e.json"),
                            "--out-dir", str(tmp_path / "ev"), "--mm-per-px", "0.05"])
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "e.json").read_text())
    s, per_image = doc["summary"], doc["per_image"]
    assert s["images"] == len(per_image) == 7 and "dice_median" in s and "map" in s
    for r in per_image:  # paper rule: each nerve is a TP, an FN (no confident box), or neither behind confident FPs
        assert r["tp"] + r["fn"] == (0 if r["fp"] and not r["tp"] else 1), r
    only_fp = sum(1 for r in per_image if r["fp"] and not r["tp"])
    assert s["tp"] + s["fn"] == s["images"] - only_fp
    with open(tmp_path / "ev" / "per_image.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 7
    for k in ("tp", "fp", "fn"):
        assert s[k] == sum(r[k] for r in per_image) == sum(int(r[k]) for r in table), k
    for f in ("per_image.csv", "dice_boxplot.png", "worst_cases.png"):
        assert (tmp_path / "ev" / f).stat().st_size > 100


def test_cli_bad_input_is_one_line(sample_dir, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["eval", "--data", str(tmp_path / "missing"), "--model", str(tmp_path / "x.pt")])
    assert r.exit_code == 2 and "not found" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["train", "--data", str(sample_dir), "--backbone", "vgg", "--out", str(tmp_path / "m.pt")])
    assert r.exit_code == 2 and "is not one of 'resnet101'" in r.output  # refused by the option's choices
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.slow
def test_ddp_two_processes_gloo(sample_dir, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "streamseg",
           "train", "--data", str(sample_dir), "--out", str(tmp_path / "ddp.pt"), "--epochs", "1", "--batch-size", "1",
           "--max-iters-per-epoch", "1", "--split", str(tmp_path / "split.json"), "--compute", "cpu", *SMALL]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (tmp_path / "ddp.pt").exists()
    assert len((tmp_path / "ddp.jsonl").read_text().splitlines()) == 1  # only rank 0 logs


@pytest.mark.slow
def test_ablation_one_command_prints_table_ii(sample_dir, tmp_path):
    r = CliRunner().invoke(app, ["ablation", "--data", str(sample_dir), "--out-dir", str(tmp_path), "--epochs", "1",
                                 "--batch-size", "1", "--max-iters-per-epoch", "1", "--backbone", "mobilenet_v3_large"])
    assert r.exit_code == 0, r.output
    for head in ("mask28", "mask56", "mask112"):
        assert head in r.output and (tmp_path / f"{head}.pt").exists()
    assert load_checkpoint(tmp_path / "mask56.pt")[1].config.mask_size == 56
    assert "0.903" in r.output  # the paper's column beside ours


def test_stop_after_ends_early_on_the_long_schedule_and_resume_goes_on(sample_dir, tmp_path):
    """--stop-after N trains N epochs of an --epochs schedule (the lr has not decayed as a short
    schedule's would); --resume then continues that schedule to its end."""
    from streamseg.training.loop import TrainConfig, train

    common = dict(data=str(sample_dir), out=str(tmp_path / "m.pt"), epochs=4, lr=0.01, schedule="cosine",
                  warmup_iters=1, batch_size=2, max_iters_per_epoch=1, split=str(tmp_path / "split.json"),
                  model=ModelConfig(backbone="mobilenet_v3_large", fpn_channels=32, box_head_width=64, mask_head_width=32,
                                    image_size=256))
    first = train(TrainConfig(**common, stop_after=1), log=lambda s: None)
    assert [r["epoch"] for r in first.history] == [1]
    assert first.history[0]["lr"] > 0.5 * 0.01  # 1 of 4 epochs of the cosine: lr still high
    state = load_checkpoint(first.last)[1].meta["train_state"]
    assert {"optimizer", "scheduler", "scaler"} <= set(state)  # --resume restores the lr schedule and AMP scale
    rest = train(TrainConfig(**common, resume=True), log=lambda s: None)
    assert [r["epoch"] for r in rest.history] == [2, 3, 4]
    assert rest.history[-1]["lr"] < 0.2 * 0.01


def test_cosine_schedule_is_warm_up_times_cosine_from_torchs_schedulers():
    import math

    from streamseg.training.loop import TrainConfig, make_scheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    sched = make_scheduler(opt, TrainConfig(data="x", schedule="cosine", warmup_iters=10), total_iters=50)
    for it in range(50):
        want = 0.01 * min(1.0, (it + 1) / 10) * 0.5 * (1 + math.cos(math.pi * it / 50))
        assert opt.param_groups[0]["lr"] == pytest.approx(want, abs=1e-12), it
        opt.step()
        sched.step()
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.003)
    sched = make_scheduler(opt, TrainConfig(data="x"), total_iters=50)  # the paper's constant lr
    for _ in range(5):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == 0.003


@pytest.mark.parametrize("asked, device, cores, want", [
    (None, "cpu", 16, 0),  # the training process has the cores: no worker takes them from the model
    (None, "cuda", 16, 4),  # augmentation beside the GPU's steps
    (None, "cuda", 2, 1),
    (None, "cuda", 1, 0),
    (3, "cuda", 16, 3), (2, "cpu", 16, 2),  # --workers as given
])
def test_data_loading_workers_are_sized_for_the_device(asked, device, cores, want):
    from streamseg.training.loop import loader_workers

    assert loader_workers(asked, torch.device(device), cores) == want


def test_a_loss_that_is_not_finite_stops_the_run_in_one_line():
    from streamseg.training.loop import _check_finite

    _check_finite(0.5, 0, "step 1")
    for bad in (float("nan"), float("inf")):
        with pytest.raises(StreamsegError, match="loss became .* at epoch 3, in its summed losses: lower --lr"):
            _check_finite(bad, 2, "in its summed losses")
