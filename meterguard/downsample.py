"""Reduce a series to at most N points for plotting: bucket means over equal time spans."""

from __future__ import annotations

import numpy as np

from meterguard.model import FloatArray


def bucket_means(
    ts: FloatArray, columns: dict[str, FloatArray], points: int
) -> tuple[FloatArray, dict[str, FloatArray]]:
    """Average each column over `points` equal time buckets; empty buckets are left out.

    NaN (not measured) is ignored inside a bucket; a bucket with no measured value of a
    column gives NaN for that column. The time of a bucket is the mean time of its rows.
    """
    if points < 1:
        raise ValueError("points must be at least 1")
    n = len(ts)
    if n <= points:
        return ts, columns
    span = ts[-1] - ts[0]
    width = span / points if span > 0 else 1.0
    bucket = np.minimum(((ts - ts[0]) / width).astype(np.int64), points - 1)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    counts = np.diff(np.r_[starts, n])
    out_ts = np.add.reduceat(ts, starts) / counts
    out: dict[str, FloatArray] = {}
    for name, values in columns.items():
        measured = ~np.isnan(values)
        sums = np.add.reduceat(np.where(measured, values, 0.0), starts)
        found = np.add.reduceat(measured.astype(np.int64), starts)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = np.where(found > 0, sums / np.maximum(found, 1), np.nan)
    return out_ts, out
