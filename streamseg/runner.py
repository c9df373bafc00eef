"""The app file: connects source -> backend -> measure -> overlay -> sinks for `streamseg file` and
`streamseg live`, and closes everything so outputs are finalised (or never created).

Order matters for "nothing half-written": flags, output paths, model and source are all checked
before the first output file is created.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import pipeline
from .calibration import parse_crop, resolve
from .measure import Stabiliser, measure
from .overlay import Style, draw, lost_screen
from .files import check_writable, public_mode
from .sinks import RowSink, ScanSummary, VideoSink, WindowSink, require_display
from .sources import open_source
from .types import CONFIDENT_SCORE, NERVE_SCORE, SHOWN_DETECTIONS, StreamsegError


@dataclass
class Options:
    input: str
    live: bool
    out: Path | None = None
    csv: Path | None = None
    jsonl: Path | None = None
    model: Path | None = None
    backend: str = "auto"
    compute: str = "auto"  # torch device for inference: auto, cpu, cuda, cuda:N
    half: bool = False
    show: bool = False
    mm_per_px: float | None = None
    depth_mm: float | None = None
    profile: str | None = None
    crop: str | None = None
    max_frames: int | None = None
    duration_s: float | None = None
    cts_cutoff_mm2: float = 10.0
    score_thresh: float = NERVE_SCORE
    max_detections: int = SHOWN_DETECTIONS  # evaluation keeps the checkpoint's cap for the PR curve
    confident: float = CONFIDENT_SCORE
    stable_window: int = 9
    width: int | None = None  # capture request (V4L2)
    height: int | None = None
    fps: float | None = None
    reconnect_attempts: int = 5
    backoff_s: float = 0.5
    open_timeout_s: float = 5.0
    read_timeout_s: float = 3.0
    summary: bool = True


def _check(o: Options) -> None:
    for name, v in (("--score-thresh", o.score_thresh), ("--confident", o.confident)):
        if not 0.0 <= v <= 1.0:
            raise StreamsegError(f"{name} {v:g}: must be within [0, 1]")
    if o.max_frames is not None and o.max_frames < 1:
        raise StreamsegError(f"--max-frames {o.max_frames}: must be >= 1")
    if o.duration_s is not None and o.duration_s <= 0:
        raise StreamsegError(f"--duration {o.duration_s:g}: must be > 0")
    if o.cts_cutoff_mm2 <= 0:
        raise StreamsegError(f"--cts-cutoff {o.cts_cutoff_mm2:g}: must be > 0 mm²")
    outs = [p for p in (o.out, o.csv, o.jsonl) if p is not None]
    if len({Path(p).resolve() for p in outs}) < len(outs):
        raise StreamsegError("--out, --csv and --jsonl must be different files")
    if o.out is not None and Path(o.out).suffix.lower() not in (".mp4", ".m4v", ".mov", ".mkv"):
        raise StreamsegError(f"{o.out}: --out must end in .mp4, .mov, .m4v or .mkv")
    if not o.live and Path(o.input).resolve() in {Path(p).resolve() for p in outs}:
        raise StreamsegError(f"{o.input}: an output would overwrite the input")
    for p in outs + summary_paths(o):
        check_writable(p)
    if o.show:
        require_display()  # here, before the model loads and any output is opened


def summary_paths(o: Options) -> list[Path]:
    """`<stem>.summary.json` and `<stem>.csa.png` beside the first output given (none without outputs)."""
    base = next((Path(p) for p in (o.out, o.csv, o.jsonl) if p is not None), None)
    if base is None or not o.summary:
        return []
    return [base.with_name(base.stem + ".summary.json"), base.with_name(base.stem + ".csa.png")]


def _torch_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise StreamsegError(f"--compute {name}: no CUDA device available")
    return name


def run(o: Options, log: Callable[[str], None] = print, backend=None) -> dict:
    """Run one file or live session; returns the scan summary (also written beside the outputs).

    `backend`: an already loaded Backend to reuse (then `o.model`/`o.backend` are not read)."""
    _check(o)
    cal = resolve(o.mm_per_px, o.depth_mm, o.profile)
    crop = parse_crop(o.crop) if o.crop else cal.crop

    source = open_source(o.input, live=o.live, crop=crop, width=o.width, height=o.height, fps=o.fps,
                         open_timeout_s=o.open_timeout_s, read_timeout_s=o.read_timeout_s,
                         reconnect_attempts=o.reconnect_attempts, backoff_s=o.backoff_s,
                         on_event=lambda kind, msg: log(msg))
    try:  # the input is checked first (cheap), then the model is loaded
        from . import backends

        if backend is None:
            backend = backends.load(o.backend, o.model, device=_torch_device(o.compute), half=o.half,
                                    max_detections=o.max_detections)
    except BaseException:
        source.close()
        raise
    log(f"model: {backend.describe()}")
    mm = cal.mm_per_px(source.height)
    log(f"source: {source.describe()}; calibration: {cal.describe(source.height)}")

    stab = Stabiliser(o.stable_window, o.confident)
    style = Style(calibrated=mm is not None, score_thresh=o.score_thresh, cts_cutoff_mm2=o.cts_cutoff_mm2)
    summary = ScanSummary(mm, o.score_thresh, o.confident, o.cts_cutoff_mm2)
    sinks: list = []
    video = window = None
    stats = None
    try:
        if o.out is not None:
            video = VideoSink(o.out, source.width, source.height, source.rate, None if o.live else source.time_base,
                              use_capture_time=o.live)
            sinks.append(video)
        for path, kind in ((o.csv, "csv"), (o.jsonl, "jsonl")):
            if path is not None:
                sinks.append(RowSink(path, kind, mm, o.score_thresh))
        sinks.append(summary)
        if o.show:
            window = WindowSink(snapshot_dir=Path(o.out).parent if o.out else ".", on_event=lambda k, m: log(m))
            sinks.append(window)

        def analyse(frame, dets):
            det = dets[0] if dets else None  # backends return best first
            m = measure(det.mask, mm) if det is not None else None
            return det, stab.update(det.score if det is not None else None, m)

        def on_tick(lost: bool):
            if window is not None and lost:
                window.show(lost_screen(window.last, source.width, source.height))
            elif window is not None:
                window.poll()  # keys between frames too

        stats = pipeline.run(source, backend.predict_one, analyse, lambda r, hud: draw(r, style, hud), sinks,
                             live=o.live, max_frames=o.max_frames, duration_s=o.duration_s, on_tick=on_tick)
    finally:
        written = _close(sinks)
        source.close()

    for p in written:
        log(f"wrote {p}")
    st = source.stats
    if st.decode_errors or (st.expected_frames and not o.max_frames and stats.stopped_by is None
                            and st.frames_read < st.expected_frames):
        exp = f" of {st.expected_frames}" if st.expected_frames else ""
        log(f"warning: decoded {st.frames_read}{exp} frames; {st.decode_errors} packet(s) could not be decoded")
    result = summary.summary(
        input=str(o.input), frames_seen=st.frames_read, dropped=stats.dropped, stopped_by=stats.stopped_by,
        wall_s=round(stats.wall_s, 3), cpu_s=round(stats.cpu_s, 3), processed_fps=round(stats.processed_fps, 3),
        model_ms_median=_median(stats.model_ms), end_to_end_ms_median=_median(stats.end_to_end_ms),
        source_fps=source.fps, decode_errors=st.decode_errors, expected_frames=st.expected_frames,
        signal_lost=st.signal_lost, reconnect_attempts=st.reconnect_attempts, reconnects=st.reconnects,
        source_lost=bool(o.live and st.signal_lost and stats.stopped_by is None),
        video_frames=video.frames if video is not None else None)
    paths = summary_paths(o)
    if paths and stats.processed:
        from .files import atomic_write

        text = json.dumps(result, indent=2) + "\n"
        atomic_write(paths[0], lambda tmp: (Path(tmp).write_text(text), public_mode(tmp)))
        summary.plot(paths[1])
        result["summary_json"], result["csa_png"] = str(paths[0]), str(paths[1])
    return result


def _close(sinks) -> list:
    """Finalise every sink (a sink with nothing written leaves no file); return the files written."""
    written, first_error = [], None
    for s in sinks:
        try:
            if isinstance(s, RowSink) and s.rows == 0:
                s.abort()
                continue
            p = s.close() if hasattr(s, "close") else None
            if isinstance(p, Path):
                written.append(p)
        except Exception as e:  # noqa: BLE001 - close the others, then report the first
            first_error = first_error or e
    if first_error is not None:
        raise first_error
    return written


def _median(xs):
    if not xs:
        return None
    s = sorted(xs)
    return round(s[len(s) // 2], 2)
