"""The app file: connects source -> backend -> analyse -> overlay -> sinks for `streamseg file` and
`streamseg live`, and closes everything so outputs are finalised (or never created).

Order matters for "nothing half-written": flags and output paths are checked when the `Options`
are built, then the calibration, the source and the model, all before the first output file is
created.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from . import pipeline
from ..inputs.calibration import Calibration, parse_crop, resolve
from ..files import StagedFile, json_text
from .interrupts import RunSignals
from .. import choices
from ..choices import Precision, resolve_precision
from .checks import check_compute, check_numbers, check_outputs, spacing_flag
from ..analysis.measure import Analyser
from ..outputs.overlay import Style, draw
from ..outputs.progress import files_written
from ..outputs.display import require_display
from ..outputs.sinks import Geometry, OutputSpec, abort, open_outputs
from ..settings import Settings
from ..analysis.summary import CsaSummary, ScanSummary
from ..inputs.sources import open_source
from .stats import percentiles
from ..analysis.tracking import track
from ..types import (BACKOFF_S, CTS_CUTOFF_MM2, OPEN_TIMEOUT_S, READ_TIMEOUT_S, RECONNECT_ATTEMPTS, SHOWN_DETECTIONS,
                     STABLE_WINDOW, Backend, Source, StagedOutput, StopReason, StreamsegError, Thresholds)

if TYPE_CHECKING:
    from rich.progress import Progress

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv")


@dataclass
class Options:
    """One `file` or `live` run. Checked once, when built: a bad value raises StreamsegError. The CLI
    builds it by these names (its flags' parameters are named so); each default is said once, here
    or as a named constant in `types`."""

    input: str
    live: bool
    out: Path | None = None
    save_input: Path | None = None  # the input's frames, without the overlay, as a video
    csv: Path | None = None
    jsonl: Path | None = None
    model: Path | None = None
    backend: choices.Backend = choices.Backend.AUTO
    compute: str = "auto"  # torch device for inference: cpu | cuda | cuda:N | auto
    precision: Precision = Precision.AUTO  # choices.resolve_precision
    show: bool = False
    mm_per_px: float | None = None
    depth_mm: float | None = None
    profile: str | None = None
    crop: str | None = None
    max_frames: int | None = None
    duration_s: float | None = None
    cts_cutoff_mm2: float = CTS_CUTOFF_MM2
    score_thresh: float | None = None  # shown as the nerve at or above it; None: the model's (`Thresholds`)
    max_detections: int = SHOWN_DETECTIONS  # evaluation keeps the checkpoint's cap for the PR curve
    confident: float | None = None  # enters the CSA summary at or above it; None: the model's
    stable_window: int = STABLE_WINDOW
    width: int | None = None  # capture request (V4L2)
    height: int | None = None
    fps: float | None = None
    reconnect_attempts: int = RECONNECT_ATTEMPTS
    backoff_s: float = BACKOFF_S
    open_timeout_s: float = OPEN_TIMEOUT_S
    read_timeout_s: float = READ_TIMEOUT_S
    summary: bool = True
    engines: Path | None = None  # --engines: compiled artefacts folder (None: the user cache)
    track: bool = True  # run windows around a confident nerve (tracking.py); False: full frames every time

    def __post_init__(self):
        check_compute(self.compute)
        resolve_precision(self.precision, self.backend, self.compute)
        check_numbers([
            ("--score-thresh", self.score_thresh, 0.0, 1.0), ("--confident", self.confident, 0.0, 1.0),
            ("--max-frames", self.max_frames, 1, None), ("--duration", self.duration_s, 0, None, dict(lo_open=True)),
            ("--cts-cutoff", self.cts_cutoff_mm2, 0, 1000, dict(lo_open=True)),
            spacing_flag(self.mm_per_px),
            ("--depth-mm", self.depth_mm, 0, 500, dict(lo_open=True)),
            ("--width", self.width, 1, 16384), ("--height", self.height, 1, 16384),
            ("--fps", self.fps, 0, 1000, dict(lo_open=True)), ("--reconnect", self.reconnect_attempts, 0, 1000),
            ("--backoff", self.backoff_s, 0, 3600), ("--timeout", self.read_timeout_s, 0, 3600, dict(lo_open=True)),
            ("open timeout", self.open_timeout_s, 0, 3600, dict(lo_open=True)),
        ])
        for flag, path in (("--out", self.out), ("--save-input", self.save_input)):
            if path is not None and Path(path).suffix.lower() not in VIDEO_SUFFIXES:
                raise StreamsegError(f"{path}: {flag} must end in .mp4, .mov, .m4v or .mkv")
        summary = dict(zip(("summary JSON", "CSA plot"), self.summary_paths()))
        check_outputs({"--out": self.out, "--save-input": self.save_input, "--csv": self.csv, "--jsonl": self.jsonl,
                       **summary},
                      inputs=() if self.live else (self.input,))
        if self.engines is not None and Path(self.engines).exists() and not Path(self.engines).is_dir():
            raise StreamsegError(f"--engines {self.engines}: is a file, expected a folder")
        if self.show:
            require_display()  # here, before the model loads and any output is opened

    def thresholds(self, model: Thresholds) -> Thresholds:
        """The operating point of this run: the flags where given, else the model's own."""
        if self.score_thresh is None and self.confident is None:
            return model
        return Thresholds(model.display if self.score_thresh is None else self.score_thresh,
                          model.csa if self.confident is None else self.confident, "--score-thresh/--confident")

    def outputs(self) -> list[Path]:
        return [Path(p) for p in (self.out, self.csv, self.jsonl, self.save_input) if p is not None]

    def summary_paths(self) -> list[Path]:
        """`<stem>.summary.json` and `<stem>.csa.png` beside the first output given (none without outputs)."""
        outs = self.outputs()
        if not outs or not self.summary:
            return []
        base = outs[0]
        return [base.with_name(base.stem + ".summary.json"), base.with_name(base.stem + ".csa.png")]


@dataclass
class ScanReport:
    """What one run reports: the CSA summary and the run's counts and speeds. `to_dict()` is the
    flat summary JSON written beside the outputs."""

    csa: CsaSummary
    input: str
    frames_seen: int
    dropped: int
    stopped_by: StopReason | None  # None: the input ended
    wall_s: float  # from the end of the warm-up
    cpu_s: float
    warmup_s: float  # the backend's first call in the inference thread, before capture started (pipeline.py)
    processed_fps: float
    model_ms_median: float | None
    end_to_end_ms_median: float | None
    source_fps: float | None
    decode_errors: int
    expected_frames: int | None
    signal_lost: int
    reconnect_attempts: int
    reconnects: int
    source_lost: bool  # live: the signal was lost and never came back
    video_frames: int | None  # frames in the overlay video (None without --out)
    spacing_assumed: bool = False  # the input says its pixel spacing is assumed, not measured (demo.dcm)
    summary_json: str | None = None  # the files written beside the outputs (not in the JSON)
    csa_png: str | None = None
    written: list[str] = field(default_factory=list)  # every file the run wrote (not in the JSON)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("summary_json", "csa_png", "written"):  # where the report went, not what it says
            del d[k]
        return {**d.pop("csa"), **d}


def run(o: Options, log: Callable[[str], None] = print, backend: Backend | None = None,
        progress: Progress | None = None, ignore_signals_after: bool = False) -> ScanReport:
    """Run one file or live session; returns its report (also written beside the outputs).

    `backend`: an already loaded Backend to reuse (then `o.model`/`o.backend` are not read);
    `progress`: a progress bar (`progress.progress_bar`) advanced once per frame written;
    `ignore_signals_after`: the command's, which ignores SIGINT and SIGTERM from the commit until it
    exits (else they are restored on return: `interrupts.RunSignals`)."""
    cal = resolve(o.mm_per_px, o.depth_mm, o.profile)
    source = _open_source(o, cal, log)
    settings = None  # the settings the backend is loaded with (a backend handed in: the CPU's)
    try:  # the input is checked first (cheap), then the model is loaded
        cal = source.calibration(cal, log)  # the input's own spacing (a DICOM's) when no flag gives one (issue 12)
        if backend is None:
            from .. import backends

            compute = "cpu" if o.precision == Precision.INT8 else o.compute  # INT8 runs on the CPU (choices.int8_runs)
            from ..backends.artefacts import engine_log

            device = backends.select_device(compute, "--compute")
            settings = Settings.from_env(device)  # torch's CPU threads are sized for the device (settings.cpu_threads)
            settings.apply()  # the process-wide switches, once, before the model runs
            backend = backends.load(o.backend, o.model, device=device,
                                    precision=o.precision, max_detections=o.max_detections,
                                    engines_dir=o.engines, log=engine_log(log), settings=settings)
        log(f"model: {backend.describe()}")
        th = o.thresholds(backend.thresholds)
        log(f"shown as the nerve at confidence >= {th.display:g}, in the CSA at >= {th.csa:g}: {th.chosen_on}")
        infer = _infer(o, th, backend)  # builds the tracking windows' engines (seconds, once): before any output opens
    except BaseException:
        source.close()
        raise
    mm = cal.mm_per_px(source.height)
    log(f"source: {source.describe()}; calibration: {cal.describe(source.height)}")
    summary = ScanSummary(mm, th.display, th.csa, o.cts_cutoff_mm2)
    # outputs open from here: Ctrl-C finalises or discards them, and none cuts their commit short
    with RunSignals(until_exit=ignore_signals_after) as signals:
        spec = _output_spec(o, th, source, mm, (settings or Settings.from_env()).encode_threads)
        stats, files, video_frames = _stream(o, th, source, backend, infer, spec, summary, log, progress, signals)
        if stats.stopped_by is None and signals.received:  # a signal between the pipeline's end and here
            stats.stopped_by = StopReason(signals.received[0])
        report = _finalise(o, source, stats, summary, files, video_frames, log,
                           spacing_assumed=cal.assumed and mm is not None)
    log(files_written([Path(p) for p in report.written]))
    return report


def _finalise(o: Options, source: Source, stats: pipeline.RunStats, summary: ScanSummary,
              files: list[StagedOutput], video_frames: int | None, log: Callable[[str], None], *,
              spacing_assumed: bool = False) -> ScanReport:
    """Warn about lost frames, write the summary JSON and plot, then rename every output onto its
    target at once; on any failure every temp file is discarded."""
    try:  # every output file is complete (as a temp file): the summary and plot too, then all are renamed at once
        st = source.stats
        if st.decode_errors or (st.expected_frames and not o.max_frames and stats.stopped_by is None
                                and st.frames_read + st.expected_slack < st.expected_frames):
            exp = f" of {st.expected_frames}" if st.expected_frames else ""
            bad = f"; {st.decode_errors} packet(s) could not be decoded" if st.decode_errors else ""
            log(f"warning: decoded {st.frames_read}{exp} frames{bad}")
        report = _report(o, source, stats, summary.summary(), video_frames)
        report.spacing_assumed = spacing_assumed
        paths = o.summary_paths()
        if paths and stats.processed:
            text = json_text(report.to_dict(), indent=2) + "\n"
            staged = [StagedFile(paths[0], lambda tmp: Path(tmp).write_text(text)), StagedFile(paths[1], summary.write_plot)]
            files += staged
            for f in staged:
                f.finish()
            report.summary_json, report.csa_png = str(paths[0]), str(paths[1])
        written = _commit(files)
    except BaseException:
        abort(files)
        raise
    report.written = [str(p) for p in written]
    return report


def _open_source(o: Options, cal: Calibration, log: Callable[[str], None]) -> Source:
    return open_source(o.input, live=o.live, crop=parse_crop(o.crop) if o.crop else cal.crop, width=o.width,
                       height=o.height, fps=o.fps, open_timeout_s=o.open_timeout_s, read_timeout_s=o.read_timeout_s,
                       reconnect_attempts=o.reconnect_attempts, backoff_s=o.backoff_s,
                       on_event=lambda kind, msg: log(msg))


def _infer(o: Options, th: Thresholds, backend: Backend) -> Callable:
    """What the pipeline runs per frame: the backend's `infer`, tracked unless `--no-track`."""
    return track(backend, th.display) if o.track else backend.infer


def _stream(o: Options, th: Thresholds, source: Source, backend: Backend, infer: Callable, spec: OutputSpec,
            summary: ScanSummary, log: Callable[[str], None], progress: Progress | None, signals: RunSignals
            ) -> tuple[pipeline.RunStats, list[StagedOutput], int | None]:
    """Open the outputs, run the pipeline, finish the output files (not yet renamed onto their targets)
    and close the source -> (stats, the outputs to commit, overlay video frames). On any failure
    every output file is discarded: the targets keep what they held before the run."""
    mm = spec.mm_per_px
    style = Style(calibrated=mm is not None, score_thresh=th.display, cts_cutoff_mm2=o.cts_cutoff_mm2, live=o.live)
    outputs = None
    try:
        outputs = open_outputs(spec, _geometry(o, source), others=[summary],
                               progress=progress, on_event=lambda kind, msg: log(msg))
        signals.hold()  # the pipeline's handler stops capture on the first signal; after it, signals are only noted
        stats = pipeline.run(source, infer, Analyser(mm, o.stable_window, th.csa),
                             lambda r, hud: draw(r, style, hud), outputs.all(), live=o.live, max_frames=o.max_frames,
                             duration_s=o.duration_s, on_tick=outputs.on_tick(), warm=backend.infer)
        files = outputs.finish()
    except BaseException:
        if outputs is not None:
            outputs.abort()
        raise
    finally:
        source.close()
    return stats, files, outputs.video_frames


def _output_spec(o: Options, th: Thresholds, source: Source, mm: float | None, encode_threads: int) -> OutputSpec:
    """What the options ask to write: the files, the window (snapshots beside --out), the progress
    bar's task (frames up to --max-frames or the input's expected count; live: unknown) and the
    encoder's threads (`settings.encode_threads`)."""
    total = [n for n in (o.max_frames, source.stats.expected_frames) if n]
    return OutputSpec(out=o.out, save_input=o.save_input, csv=o.csv, jsonl=o.jsonl, show=o.show,
                      snapshot_dir=Path(o.out).parent if o.out else Path("."), mm_per_px=mm, score_thresh=th.display,
                      progress_label="live" if o.live else "frames", progress_total=min(total) if total else None,
                      encode_threads=encode_threads)


def _geometry(o: Options, source: Source) -> Geometry:
    """The source's frame size and rate; live: the pts are the capture clock, so no time base."""
    return Geometry(source.width, source.height, source.rate, None if o.live else source.time_base)


def _commit(files: list[StagedOutput]) -> list[Path]:
    """Rename every finished temp file onto its target; the files written (an output given nothing writes none)."""
    return [p for p in (f.commit() for f in files) if p is not None]


def _report(o: Options, source: Source, stats: pipeline.RunStats, csa: CsaSummary,
            video_frames: int | None) -> ScanReport:
    st = source.stats
    return ScanReport(
        csa=csa, input=str(o.input), frames_seen=st.frames_read, dropped=stats.dropped, stopped_by=stats.stopped_by,
        wall_s=round(stats.wall_s, 3), cpu_s=round(stats.cpu_s, 3),
        warmup_s=round(stats.warmup_s, 3), processed_fps=round(stats.processed_fps, 3),
        model_ms_median=_median(stats.model_ms), end_to_end_ms_median=_median(stats.end_to_end_ms),
        source_fps=source.fps, decode_errors=st.decode_errors, expected_frames=st.expected_frames,
        signal_lost=st.signal_lost, reconnect_attempts=st.reconnect_attempts, reconnects=st.reconnects,
        source_lost=bool(o.live and st.signal_lost and stats.stopped_by is None), video_frames=video_frames)


def _median(ms: list[float]) -> float | None:
    p = percentiles(ms)
    return round(p["p50"], 2) if p else None
