"""Summary statistics of timing samples, torch-free: one helper for the runner's scan report, the
live benchmark and `streamseg bench`."""
from __future__ import annotations

from typing import Iterable

import numpy as np


def percentiles(samples: Iterable[float], scale: float = 1.0) -> dict[str, float]:
    """p50, p95, p99, max, mean and n of `samples` × `scale` (scale=1000 turns seconds into ms);
    {} when there are none. Percentiles interpolate linearly between samples (numpy's default)."""
    a = np.asarray(list(samples), dtype=np.float64) * scale
    if a.size == 0:
        return {}
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(a.max()),
            "mean": float(a.mean()), "n": int(a.size)}
