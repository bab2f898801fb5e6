"""Write a simulated run as meters.csv, readings.csv and labels.csv (docs/FORMATS.md)."""

from __future__ import annotations

import csv
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meterguard.meters_csv import write_meters_csv
from meterguard.timefmt import rfc3339
from simulators.load import LoadModel, class_load_kw
from simulators.physics import FleetModel, Frame, MeterKey, bound_incidents
from simulators.population import BoolArray, FloatArray
from simulators.scenario import Scenario, ScenarioError

READING_COLUMNS = (
    "ts", "meter", "v1", "v2", "v3", "i1", "i2", "i3", "in",
    "p1", "p2", "p3", "q1", "q2", "q3", "e_imp", "e_exp", "f", "events",
)  # fmt: skip
LABEL_COLUMNS = ("meter", "kind", "start", "end", "phase", "magnitude")
CONFOUNDER_COLUMNS = ("kind", "meters", "transformer", "start", "end", "magnitude")
#: Printf formats of the value columns; NaN prints as "nan" and is blanked afterwards.
_ROW_FORMAT = (
    "%s,%s,"
    + ",".join(["%.2f"] * 3 + ["%.3f"] * 4 + ["%.1f"] * 6 + ["%.4f"] * 2 + ["%.3f"])
    + ",%s\n"
)
#: Readings per chunk: bounds memory whatever the fleet size.
CHUNK_READINGS = 60_000
#: Where the energy registers and the frequency sit among the value columns of frame_values.
_E = slice(13, 15)
_F = 15


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a run wrote."""

    meters: int
    readings: int
    incidents: int
    seconds: float


def _grid(scenario: Scenario) -> FloatArray:
    out: FloatArray = scenario.start_s + np.arange(
        0.0, scenario.days * 86400.0 - 1e-9, scenario.step_s
    )
    return out


def frame_values(frame: Frame) -> FloatArray:
    """Return (T, customers + feeders, 16) in the value-column order of readings.csv."""
    cust = np.concatenate(
        [frame.v, frame.i, frame.neutral[:, :, None], frame.p, frame.q,
         frame.e_imp[:, :, None], frame.e_exp[:, :, None], frame.f[:, :, None]],
        axis=2,
    )  # fmt: skip
    n_t, n_tx = frame.fv.shape[:2]
    feed = np.concatenate(
        [frame.fv, frame.fi, np.full((n_t, n_tx, 1), np.nan), frame.fp, frame.fq,
         frame.f_e_imp[:, :, None], frame.f_e_exp[:, :, None], frame.ff[:, :, None]],
        axis=2,
    )  # fmt: skip
    out: FloatArray = np.concatenate([cust, feed], axis=1)
    return out


#: Physics samples averaged into one interval-mean reading are at most this far apart, s.
MEAN_SAMPLE_S = 60.0


def _interval_frame(
    model: FleetModel, ts: FloatArray, step: float, parts: int
) -> tuple[FloatArray, BoolArray, list[tuple[int, MeterKey, str]]]:
    """Return values, presence and events of readings that are means over their interval.

    The reading at t covers (t - step, t], as a load profile stamps an interval at its end:
    V, I, P, Q, the neutral current and the frequency are the means of `parts` samples in
    it, the energy registers are read at t, and a meter reports when it would at t.
    """
    offsets = step * (np.arange(1, parts + 1) / parts - 1.0)
    frame = model.compute((ts[:, None] + offsets[None, :]).ravel())
    values = frame_values(frame).reshape(ts.size, parts, -1, len(READING_COLUMNS) - 3)
    with warnings.catch_warnings():
        # A meter dead for a whole interval has no frequency: its mean stays blank.
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = values.mean(axis=1)
        mean[:, :, _F] = np.nanmean(values[:, :, :, _F], axis=1)
    mean[:, :, _E] = values[:, -1, :, _E]
    present = np.concatenate([frame.present, frame.f_present], axis=1)
    present = present.reshape(ts.size, parts, -1)[:, -1, :]
    events = [(row // parts, key, name) for row, key, name in frame.events]
    return mean, present, events


def write_readings(
    model: FleetModel,
    path: Path,
    grid: FloatArray,
    progress: Callable[[float], None] | None = None,
) -> int:
    """Stream every reading of the run to `path`, time-ordered; return the row count."""
    pop = model.pop
    n_all = pop.n + pop.n_tx
    # Output position -> column in the (customers, feeders) value array; meters.csv order.
    order: list[int] = []
    for t in range(pop.n_tx):
        if pop.feeder_meters:
            order.append(pop.n + t)
        order.extend(int(i) for i in np.flatnonzero(pop.tx == t))
    order_arr = np.array(order)
    n_out = order_arr.size
    ids = [(pop.feeders[k - pop.n] if k >= pop.n else pop.customers[k]).id for k in order]
    where = np.full(n_all, -1, dtype=np.int64)
    where[order_arr] = np.arange(n_out)
    # Meters read less often than every step report on their own grid from the run's start.
    step = float(grid[1] - grid[0]) if grid.size > 1 else model.step_s
    samples = math.ceil(step / MEAN_SAMPLE_S - 1e-9) if model.scenario.interval_mean else 1
    every = np.r_[pop.report_every_s, np.zeros(pop.n_tx)][order_arr]
    every_steps = np.maximum(1, np.round(every / step)).astype(np.int64)
    # Each meter stamps its readings with its own (slightly wrong) clock.
    offsets = np.r_[pop.clock_offset_s, pop.feeder_clock_offset_s][order_arr]
    skewed = bool(np.any(offsets != 0.0))
    if skewed and 2.0 * float(np.abs(offsets).max()) >= step:
        raise ScenarioError("clock_skew_s must be less than half the step between readings")
    steps = max(1, CHUNK_READINGS // (n_all * samples))
    rows = 0
    # Events of a meter that did not report when they happened go out with its next reading.
    pending: dict[int, list[str]] = {}
    with path.open("w", newline="", encoding="utf-8") as handle:
        handle.write(",".join(READING_COLUMNS) + "\n")
        for start in range(0, grid.size, steps):
            ts = grid[start : start + steps]
            if samples > 1:
                all_values, all_present, all_events = _interval_frame(model, ts, step, samples)
            else:
                frame = model.compute(ts)
                all_values, all_events = frame_values(frame), frame.events
                all_present = np.concatenate([frame.present, frame.f_present], axis=1)
            values = all_values[:, order_arr, :]
            present = all_present[:, order_arr]
            index = np.arange(start, start + ts.size)[:, None]
            present &= index % every_steps[None, :] == 0
            events: dict[tuple[int, int], list[str]] = {}
            for row, key, name in all_events:
                col = pop.n + key.index if key.feeder else key.index
                if where[col] >= 0:
                    events.setdefault((row, int(where[col])), []).append(name)
            parts: list[str] = []
            stamped: list[tuple[float, str]] = []
            for r in range(ts.size):
                stamp = rfc3339(float(ts[r]))
                vals = values[r].tolist()
                keep = present[r]
                for pos in range(n_out):
                    ev = events.get((r, pos))
                    if not keep[pos]:
                        if ev:
                            pending.setdefault(pos, []).extend(ev)
                        continue
                    if pending and pos in pending:
                        ev = pending.pop(pos) + (ev or [])
                    text = ";".join(ev) if ev else ""
                    if skewed:
                        at = float(ts[r] + offsets[pos])
                        stamped.append(
                            (at, _ROW_FORMAT % (rfc3339(at), ids[pos], *vals[pos], text))
                        )
                    else:
                        parts.append(_ROW_FORMAT % (stamp, ids[pos], *vals[pos], text))
                rows += int(keep.sum())
            if skewed:
                # Offsets are under half a step, so sorting a chunk keeps the file in order.
                stamped.sort(key=lambda item: item[0])
                parts = [line for _, line in stamped]
            handle.write("".join(parts).replace("nan", ""))
            if progress is not None:
                progress(min(1.0, (start + ts.size) / grid.size))
    return rows


def _snap(grid: FloatArray, start: float, end: float) -> tuple[float, float] | None:
    """Return the first and last grid times inside [start, end], or None if there are none."""
    a = int(np.searchsorted(grid, start, side="left"))
    b = int(np.searchsorted(grid, end, side="right")) - 1
    if a >= grid.size or b < a:
        return None
    return float(grid[a]), float(grid[b])


def write_labels(model: FleetModel, path: Path, grid: FloatArray) -> int:
    """Write the ground truth: one row per injected incident, times on the reading grid."""
    count = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(LABEL_COLUMNS)
        pop = model.pop
        offset = {m.id: float(o) for m, o in zip(pop.customers, pop.clock_offset_s, strict=True)}
        offset.update(
            {m.id: float(o) for m, o in zip(pop.feeders, pop.feeder_clock_offset_s, strict=True)}
        )
        for inc, meter_id, phase in bound_incidents(model):
            span = _snap(grid, inc.start_s, inc.end_s)
            if span is None:
                continue
            # The label names the readings as the meter stamped them.
            span = (span[0] + offset[meter_id], span[1] + offset[meter_id])
            magnitude = "" if math.isnan(inc.magnitude) else f"{inc.magnitude:g}"
            writer.writerow(
                [meter_id, inc.label_kind, rfc3339(span[0]), rfc3339(span[1]),
                 "" if phase is None else phase, magnitude]
            )  # fmt: skip
            count += 1
    return count


def write_confounders(model: FleetModel, path: Path, grid: FloatArray) -> None:
    """Write the honest events of the run (not theft, never labelled), for analysis."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CONFOUNDER_COLUMNS)
        for c in [*model.scenario.confounders, *model.honest_events()]:
            span = _snap(grid, c.start_s, c.end_s) or (float(grid[0]), float(grid[-1]))
            writer.writerow(
                [c.kind, ";".join(c.meters), c.transformer or "", rfc3339(span[0]),
                 rfc3339(span[1]), "" if math.isnan(c.magnitude) else f"{c.magnitude:g}"]
            )  # fmt: skip
        for i in np.flatnonzero(model.pop.solar_kwp > 0):
            writer.writerow(
                ["solar", model.pop.customers[int(i)].id, "", rfc3339(float(grid[0])),
                 rfc3339(float(grid[-1])), f"{model.pop.solar_kwp[int(i)]:.1f}"]
            )  # fmt: skip


def _terminal_progress(fraction: float) -> None:
    sys.stderr.write(f"\rsimulating: {fraction * 100:5.1f} %")
    if fraction >= 1.0:
        sys.stderr.write("\n")
    sys.stderr.flush()


def write_run(
    scenario: Scenario,
    out_dir: Path,
    show_progress: bool | None = None,
    load_model: LoadModel = class_load_kw,
) -> RunSummary:
    """Simulate `scenario` and write meters.csv, readings.csv, labels.csv, confounders.csv.

    `load_model` gives the customers' consumption (the simulator's own by default).
    """
    began = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    model = FleetModel(scenario, load_model=load_model)
    grid = _grid(scenario)
    write_meters_csv(out_dir / "meters.csv", model.pop.all_meters())
    incidents = write_labels(model, out_dir / "labels.csv", grid)
    write_confounders(model, out_dir / "confounders.csv", grid)
    if show_progress is None:
        show_progress = sys.stderr.isatty()
    rows = write_readings(
        model, out_dir / "readings.csv", grid, _terminal_progress if show_progress else None
    )
    return RunSummary(
        meters=len(model.pop.all_meters()),
        readings=rows,
        incidents=incidents,
        seconds=time.perf_counter() - began,
    )
