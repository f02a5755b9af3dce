"""Pure statistics for the bench: percentiles, Prometheus text parsing, histogram quantiles."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

__all__ = [
    "histogram_buckets",
    "histogram_delta",
    "histogram_quantile",
    "percentile",
    "summarize_ms",
]

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<v>\S+)")
_LE = re.compile(r'le="(?P<le>[^"]+)"')


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between order statistics; 0 when
    empty (callers report the count too, so an empty sample is never mistaken for a fast one)."""
    if not values:
        return 0.0
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize_ms(values: Sequence[float], prefix: str) -> dict[str, float]:
    """`{prefix}_p50_ms`, `_p99_ms`, `_max_ms` rounded to 0.01 ms (values already in ms)."""
    return {
        f"{prefix}_p50_ms": round(percentile(values, 50), 2),
        f"{prefix}_p99_ms": round(percentile(values, 99), 2),
        f"{prefix}_max_ms": round(max(values), 2) if values else 0.0,
    }


def histogram_buckets(metrics_text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts `{le: count}` of histogram `name` from Prometheus text format
    (unlabelled histogram, or the sum over label sets when labelled)."""
    out: dict[float, float] = {}
    wanted = f"{name}_bucket"
    for line in metrics_text.splitlines():
        m = _SAMPLE.match(line)
        if m is None or m.group("name") != wanted:
            continue
        le = _LE.search(m.group("labels") or "")
        if le is None:
            continue
        bound = math.inf if le.group("le") in ("+Inf", "Inf") else float(le.group("le"))
        out[bound] = out.get(bound, 0.0) + float(m.group("v"))
    return out


def histogram_delta(
    before: Mapping[float, float], after: Mapping[float, float]
) -> dict[float, float]:
    """Bucket counts observed between two scrapes (a counter reset counts as a fresh start)."""
    delta = {le: after[le] - before.get(le, 0.0) for le in after}
    if any(v < 0 for v in delta.values()):
        return dict(after)
    return delta


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> tuple[float, float]:
    """(interpolated, upper bound) of the q-quantile (0..1) of cumulative `buckets`.

    Interpolation is Prometheus' `histogram_quantile` (linear within the bucket); the upper bound
    is that bucket's `le`, which is what a target like "p99 <= 5 ms" can be checked against
    exactly. Both 0 when the histogram is empty; a quantile in the +Inf bucket reports the
    largest finite bound as the estimate and inf as the bound.
    """
    if not 0 <= q <= 1:
        raise ValueError(f"quantile must be within 0..1, got {q}")
    bounds = sorted(buckets)
    if not bounds:
        return 0.0, 0.0
    total = buckets[bounds[-1]]
    if total <= 0:
        return 0.0, 0.0
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                return prev_bound, math.inf
            width = count - prev_count
            frac = 0.0 if width <= 0 else (rank - prev_count) / width
            return prev_bound + (le - prev_bound) * frac, le
        prev_bound, prev_count = le, count
    return prev_bound, bounds[-1]
