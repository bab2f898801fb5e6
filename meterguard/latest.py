"""The latest reading of every meter, kept in arrays and updated from each batch."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from meterguard.model import QUANTITIES, ReadingBatch


class LatestReadings:
    """Last measured value of each quantity per meter slot, with its time."""

    def __init__(self, n_meters: int) -> None:
        self.values = np.full((len(QUANTITIES), n_meters), np.nan)
        self.ts = np.full(n_meters, np.nan)

    def update(self, batch: ReadingBatch) -> None:
        """Take the newest row per meter from a batch (rows are in time order)."""
        if len(batch) == 0:
            return
        # The last occurrence of each slot wins: reverse, take the first occurrence.
        reversed_slots = batch.slot[::-1]
        _, first = np.unique(reversed_slots, return_index=True)
        rows = len(batch) - 1 - first
        slots = batch.slot[rows]
        newer = ~(self.ts[slots] > batch.ts[rows])
        rows, slots = rows[newer], slots[newer]
        fresh = batch.values[:, rows]
        measured = ~np.isnan(fresh)
        current = self.values[:, slots]
        self.values[:, slots] = np.where(measured, fresh, current)
        self.ts[slots] = batch.ts[rows]

    def of(self, slot: int) -> dict[str, Any] | None:
        """Return a meter's latest values, or None before its first reading."""
        ts = float(self.ts[slot])
        if math.isnan(ts):
            return None
        column = self.values[:, slot]
        return {"ts": ts} | {
            q: float(v) for q, v in zip(QUANTITIES, column, strict=True) if not math.isnan(v)
        }
