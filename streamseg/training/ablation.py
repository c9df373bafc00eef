"""The paper's ablation (Table II): the same training for mask28, mask56 and mask112, each
evaluated on the test patients, printed side by side with the paper's numbers."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .dataset import load_split, scan_folder, select
from .evaluate import evaluate_model
from .loop import TrainConfig, train
from .results import EvalScores

HEADS = ("28", "56", "112")


def run_ablation(base: TrainConfig, out_dir: str, progress=None, log=print) -> dict[str, EvalScores]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    split_path = base.split or str(out / "split.json")
    results = {}
    for head in HEADS:
        cfg = replace(base, out=str(out / f"mask{head}.pt"), split=split_path, model=replace(base.model, mask_head=head))
        train(cfg, progress=progress, log=log)
        from ..model.checkpoint import load_checkpoint

        model, info = load_checkpoint(cfg.out)
        test = select(scan_folder(base.data), load_split(split_path)["test"])
        scores, _ = evaluate_model(model, test, device="cpu", progress=progress, config=info.config)
        results[f"mask{head}"] = scores
    return results
