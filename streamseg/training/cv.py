"""Patient-wise K-fold cross-validation: every patient is held out exactly once, and every
nerve-free acquisition group too. Each fold trains the same recipe on the other folds (a fixed
epoch count: nothing is chosen on the held-out fold), then predicts its held-out scans and its
held-out nerve-free images. Folds are resumable one by one (a fold's training resumes from its
last epoch; a fold with `predictions.json` is done), and the report pools the predictions of all
folds, never their means.

Layout of a CV folder (`streamseg train --folds K --out DIR/model.pt`):
    DIR/folds.json                 patients and nerve-free images per fold (seeded)
    DIR/foldN/split.json           the fold's split (train = the other folds, test = fold N)
    DIR/foldN/model_last.pt        the fold's model after the last epoch (+ model.csv/.jsonl logs)
    DIR/foldN/predictions.json     held-out scans (boxes, scores, paper-rule result) and negatives
    DIR/foldN/claim                the host and process training fold N now (removed when it ends)
    DIR/cv.json, DIR/cv.md         the pooled report (rewritten after every fold)

Runs of the same command share the folds: a fold claimed by a live process on this host is left
to it, so two processes (one per core or GPU) train two folds at once. A claim whose process has
ended (a session that stopped) is taken over, and so is one from another host: processes are
checked on this host only, so the folders of one CV are not to be shared between machines.
"""
from __future__ import annotations

import json
import os
import random
import socket
from dataclasses import replace
from pathlib import Path


from ..model.checkpoint import load_checkpoint, read_checkpoint
from ..files import atomic_write
from ..types import StreamsegError
from .dataset import scan_folder, select
from .loop import TrainConfig, train
from .negatives import group_of, scan_negatives


def assign_folds(sizes: dict[str, int], k: int, seed: int) -> list[list[str]]:
    """Groups (patients, acquisition groups) -> k folds of about equal item counts: shuffled by
    `seed`, largest first, each to the fold with the fewest items so far."""
    names = sorted(sizes)
    random.Random(seed).shuffle(names)
    names.sort(key=lambda n: -sizes[n])  # stable: equal sizes keep the seeded order
    folds: list[list[str]] = [[] for _ in range(k)]
    load = [0] * k
    for n in names:
        i = load.index(min(load))
        folds[i].append(n)
        load[i] += sizes[n]
    return [sorted(f) for f in folds]


def make_folds(data: str, negatives: str | None, k: int, seed: int, nerve_label: int | None = None) -> dict:
    samples = scan_folder(data, nerve_label)
    patients: dict[str, int] = {}
    for s in samples:
        patients[s.patient] = patients.get(s.patient, 0) + 1
    if len(patients) < k:
        raise StreamsegError(f"{data}: {len(patients)} patients cannot fill {k} folds")
    doc = {"k": k, "seed": seed, "data": str(data), "negatives_root": negatives,
           "patients": assign_folds(patients, k, seed)}
    doc["images"] = [sorted(s.name for s in select(samples, f)) for f in doc["patients"]]
    doc["negatives"] = [[] for _ in range(k)]
    if negatives:
        paths = scan_negatives(negatives)
        groups: dict[str, list[str]] = {}
        for p in paths:
            groups.setdefault(group_of(p), []).append(str(Path(p).relative_to(negatives)))
        for i, fold in enumerate(assign_folds({g: len(v) for g, v in groups.items()}, k, seed)):
            doc["negatives"][i] = sorted(n for g in fold for n in groups[g])
    return doc


def fold_split(folds: dict, i: int) -> dict:
    """Fold i's split: train on every other fold, hold out fold i (no validation part)."""
    others = [j for j in range(folds["k"]) if j != i]
    return {"train": sorted(p for j in others for p in folds["patients"][j]), "val": [],
            "test": folds["patients"][i],
            "negatives": {"train": sorted(n for j in others for n in folds["negatives"][j]), "val": [],
                          "test": folds["negatives"][i]}}


def _write_json(path: Path, doc) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n"))


def load_or_make_folds(out: Path, recipe: TrainConfig, k: int, seed: int) -> dict:
    """The CV folder's folds.json; made when missing, refused when it belongs to other settings."""
    path = out / "folds.json"
    if not path.is_file():
        doc = make_folds(recipe.data, recipe.negatives, k, seed, recipe.nerve_label)
        out.mkdir(parents=True, exist_ok=True)
        _write_json(path, doc)
        return doc
    doc = json.loads(path.read_text())
    if (doc["k"], doc["seed"], doc["negatives_root"] is not None) != (k, seed, recipe.negatives is not None):
        raise StreamsegError(f"{path}: this CV folder has {doc['k']} folds (seed {doc['seed']}); "
                             f"use another --out for --folds {k} --seed {seed}")
    return doc


def run_cv(recipe: TrainConfig, out: Path, k: int, seed: int, progress=None, log=print) -> dict:
    """Train and predict every fold not done yet, then write the pooled report; returns it."""
    folds = load_or_make_folds(out, recipe, k, seed)
    for i in range(k):
        claim = claim_fold(out / f"fold{i}")
        if claim is None:
            log(f"fold {i + 1}/{k}: another run is training it ({out / f'fold{i}' / 'claim'}); left to it")
            continue
        try:
            run_fold(recipe, folds, out, i, progress, log)
        finally:
            claim.unlink(missing_ok=True)
        write_report(out, folds)
    return write_report(out, folds)


def claim_fold(fold_dir: Path) -> Path | None:
    """Claim a fold for this process: its claim file, or None when a live process on this host
    holds it. A claim left by a process that has ended, or by this one, is taken over."""
    fold_dir.mkdir(parents=True, exist_ok=True)
    path, me = fold_dir / "claim", f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _claim_alive(path, me):
                return None
            path.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me + "\n")
        return path
    return None


def _claim_alive(path: Path, me: str) -> bool:
    """Whether the claim at `path` belongs to another live process on this host."""
    try:
        host, pid = path.read_text().split()
        pid_n = int(pid)
    except (OSError, ValueError):
        return False  # unreadable or half-written: nobody's
    if f"{host} {pid}" == me or host != socket.gethostname():
        return False
    try:
        os.kill(pid_n, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    return True


def run_fold(recipe: TrainConfig, folds: dict, out: Path, i: int, progress=None, log=print) -> Path:
    fold_dir = out / f"fold{i}"
    pred_path = fold_dir / "predictions.json"
    if pred_path.is_file():
        log(f"fold {i + 1}/{folds['k']}: done before ({pred_path})")
        return pred_path
    fold_dir.mkdir(parents=True, exist_ok=True)
    split_path = fold_dir / "split.json"
    if not split_path.is_file():
        _write_json(split_path, fold_split(folds, i))
    log(f"fold {i + 1}/{folds['k']}: {len(folds['patients'][i])} patients / {len(folds['images'][i])} scans "
        f"and {len(folds['negatives'][i])} nerve-free images held out")
    cfg = replace(recipe, out=str(fold_dir / "model.pt"), split=str(split_path), resume=True, stop_after=None)
    last = train(cfg, progress, log).last
    meta = read_checkpoint(last)["meta"]
    if meta.get("epoch") != recipe.epochs:
        raise StreamsegError(f"{last}: ends at epoch {meta.get('epoch')} of {recipe.epochs}")
    preds = predict_fold(last, recipe, folds, i, recipe.device)
    preds["train_seconds"] = _train_seconds(fold_dir / "model.jsonl")
    _write_json(pred_path, preds)
    return pred_path


def _train_seconds(jsonl: Path) -> float | None:
    """Training time of the fold over all its sessions (each resumed session restarts its clock)."""
    if not jsonl.is_file():
        return None
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    total, prev = 0.0, 0.0
    for r in rows:
        s = float(r.get("seconds", 0.0))
        total += s - prev if s >= prev else s
        prev = s
    return round(total, 1)


def predict_fold(model_path: Path, recipe: TrainConfig, folds: dict, i: int, device: str = "cpu",
                 mirror: bool = False) -> dict:
    """Held-out predictions of fold i: per scan the detections (box, score, Dice with the expert's
    mask) and the expert's box and area; per nerve-free image its top score. `mirror`: each image's
    detections merged with its mirror's (`tta.mirror_merged`)."""
    from ..backends.device import select_device
    from .evaluate import predict_samples
    from .metrics import dice
    from .negatives import top_detections
    from ..letterbox import mask_box

    device = select_device(device)
    model, info = load_checkpoint(model_path, device=device)
    samples = select(scan_folder(recipe.data, recipe.nerve_label), folds["patients"][i])
    scans = []
    for s, _img, gt, dets in predict_samples(model, samples, device, config=info.config, mirror=mirror):
        scans.append({"name": s.name, "patient": s.patient, "gt_box": [float(v) for v in mask_box(gt)],
                      "area_gt_px": float(gt.sum()),
                      "detections": [{"box": [float(v) for v in d.box], "score": float(d.score),
                                      "mask_score": float(d.mask_score), "dice": dice(d.mask, gt),
                                      "area_px": float(d.mask.sum())} for d in dets]})
    neg_names = folds["negatives"][i]
    neg_paths = [Path(folds["negatives_root"]) / n for n in neg_names]
    tops = top_detections(model, neg_paths, device, config=info.config, mirror=mirror) if neg_paths else []
    negs = [{"image": n, "group": group_of(Path(n)), "top_score": float(s), "top_confidence": float(c)}
            for n, (s, c) in zip(neg_names, tops)]
    return {"fold": i, "model": str(model_path), "epochs": recipe.epochs, "mirror": mirror, "scans": scans,
            "negatives": negs}


def load_predictions(out: Path, k: int) -> list[dict]:
    return [json.loads(p.read_text()) for p in (out / f"fold{i}" / "predictions.json" for i in range(k)) if p.is_file()]


def write_report(out: Path, folds: dict) -> dict:
    """Pool the folds done so far into cv.json and cv.md."""
    from .cv_report import pooled_report, report_markdown

    preds = load_predictions(out, folds["k"])
    if not preds:
        return {}
    report = pooled_report(preds, folds["k"])
    _write_json(out / "cv.json", report)
    atomic_write(out / "cv.md", lambda tmp: Path(tmp).write_text(report_markdown(report)))
    return report

