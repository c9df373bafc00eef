"""gpu_check's closing tables, plain text: the stage table (one line per model, backend and
precision timed, ms p50 per stage) and one line per step (done, skipped or failed, and why)."""
from __future__ import annotations

STAGE_COLS = (("preprocess", "pre"), ("dense", "dense"), ("proposals", "prop"), ("heads", "heads"),
              ("paste", "paste"), ("model", "model"))


def _f(x, spec: str = "7.2f") -> str:
    return "-".rjust(int(spec.split(".")[0])) if x is None else format(x, spec)


def stage_lines(report: dict) -> list[str]:
    head = (f"{'model':8} {'backend':11} {'prec':4} {'setup s':>7} " + " ".join(f"{s:>7}" for _, s in STAGE_COLS)
            + f" {'model99':>7} {'frame':>7} {'parity':>6}")
    lines = ["stage table: ms, p50 per stage (model99: model p99; frame: pre -> overlay/encode p50)", head]
    for label in ("bundled", "paper"):
        for r in report[label]["rows"]:
            st = r["stages"]
            ok = (r.get("parity") or r.get("dense_parity") or {}).get("ok")
            cells = " ".join(_f(st[k]["p50"] if k in st else None) for k, _ in STAGE_COLS)
            lines.append(f"{label:8} {r['backend']:11} {r['precision']:4} {_f(r['setup_s'], '7.1f')} {cells} "
                         f"{_f(st['model']['p99'])} {_f(r['frame_p50']['median'])} {str(ok):>6}")
    return lines


def step_lines(report: dict) -> list[str]:
    lines = [f"{'step':24} {'status':8} {'s':>6}  result"]
    for s in report["steps"]:
        lines.append(f"{s['name'][:24]:24} {s['status']:8} {s['seconds']:6.1f}  {s.get('summary') or s.get('reason', '')}")
    return lines


def print_tables(report: dict) -> None:
    print()
    print("\n".join(stage_lines(report)))
    print()
    print("\n".join(step_lines(report)))
    print(f"\nparity: {report['parity_ok']} (None: nothing compared); {report['wall_s']} s in all")
