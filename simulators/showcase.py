"""The demo's story: a fleet with a week of history and a timeline of thefts, one of each kind.

Kinds that need hours or days of data (a meterless tap that lowers a customer's
consumption, a tap past every meter that shows only in the transformer's balance) begin
in the history, which the demo plays through the service at once before going live; the
instantaneous kinds (reversal, bypass, voltage loss, a tamper event, a silent meter) are
injected live, a little apart, so that a visitor sees each reach the board.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from simulators.live import LiveFleet, LiveMeter
from simulators.output import frame_values
from simulators.physics import FleetModel
from simulators.population import INDUSTRIAL, FleetOptions, Population, build_population
from simulators.scenario import DAY_S, HOUR_S, Incident, Scenario

#: Days of history played before the demo goes live: a week, so that every day type has
#: been seen before the taps begin.
HISTORY_DAYS = 9.0
#: Step of the history's readings, s.
HISTORY_STEP_S = 300.0
#: Readings per history batch (an hour of the fleet at a time, about).
HISTORY_CHUNK_S = HOUR_S
#: The meter's silence begins this long after the live start at the earliest, s.
SILENCE_AFTER_S = 60.0
#: The live part of the run lasts this long in the model (the demo may run for days).
LIVE_DAYS = 30.0


@dataclass(frozen=True, slots=True)
class Act:
    """One theft of the story: when it begins, where, and what a visitor should expect."""

    at_s: float
    kind: str
    meter: str
    phase: int | None
    story: str
    #: Whether it reaches the meter through the Modbus gateway as a silenced unit (the
    #: demo switches the gateway's fault on), rather than through the fleet's physics.
    gateway_silence: bool = False


@dataclass(frozen=True, slots=True)
class Showcase:
    """The fleet, its story, and the meters read through the head-end (events included)."""

    fleet: LiveFleet
    acts: list[Act]
    head_end: list[str]
    history_start_s: float
    live_start_s: float


def _pick(pop: Population, taken: set[int], wanted: np.ndarray) -> int:
    """Return the first customer index matching `wanted` not used by an earlier act."""
    for i in np.flatnonzero(wanted):
        if int(i) not in taken:
            taken.add(int(i))
            return int(i)
    raise ValueError("the demo fleet is too small for its story")


def build_showcase(
    live_start_s: float, customers: int = 48, seed: int = 7, pace_s: float = 40.0
) -> Showcase:
    """Build the demo's fleet and story; live acts begin `pace_s` apart after the start."""
    history_start = math.floor((live_start_s - HISTORY_DAYS * DAY_S) / DAY_S) * DAY_S
    options = FleetOptions(customers=customers, seed=seed, solar_share=0.0, vacation_share=0.0)
    pop = build_population(options)
    # Industrial loads swing by tens of kW; the story's subtle kinds are shown elsewhere.
    honest = pop.cls != INDUSTRIAL
    single = honest & ~pop.three_phase
    three = honest & pop.three_phase
    taken: set[int] = set()
    # The tap past every meter goes on the transformer of the first residential customer.
    tapped_tx = int(pop.tx[np.flatnonzero(honest)[0]])
    acts: list[Act] = []
    incidents: list[Incident] = []

    def act(
        kind: str, i: int, at: float, story: str, phase: int | None = None, magnitude: float = 1.0
    ) -> None:
        meter = pop.customers[i].id
        acts.append(Act(at, _LABEL[kind], meter, phase, story))
        incidents.append(
            Incident(kind, at, math.inf, meter=meter, phase=phase, magnitude=magnitude)
        )

    drop = _pick(pop, taken, single & (pop.tx != tapped_tx))
    act("meterless_tap", drop, live_start_s - 2.5 * DAY_S,
        "a cable around the meter takes 60 % of the load (consumption drop, in the history)",
        magnitude=0.4)  # fmt: skip
    tx_id = pop.feeders[tapped_tx].transformer
    tap_at = live_start_s - 1.5 * DAY_S
    acts.append(
        Act(tap_at, "energy_balance", pop.feeders[tapped_tx].id, None,
            f"a 20 kW tap before every meter of {tx_id} (energy balance, in the history)")
    )  # fmt: skip
    incidents.append(
        Incident(kind="unmetered_tap", start_s=tap_at, end_s=math.inf, transformer=tx_id,
                 magnitude=20.0)
    )  # fmt: skip
    at = live_start_s
    at += pace_s / 2
    act("reversal", _pick(pop, taken, three), at, "a CT turned round on phase 2", phase=2)
    at += pace_s
    # A bypass shows where the meter measures its neutral current (an SDM630 does).
    bypassed = _pick(pop, taken, three & pop.neutral_measured)
    act("bypass", bypassed, at, "a jumper across element 2 carries 80 % of its current",
        phase=2, magnitude=0.2)  # fmt: skip
    at += pace_s
    act("voltage_loss", _pick(pop, taken, three & ~pop.neutral_measured), at,
        "the voltage link of phase 1 opened", phase=1, magnitude=0.0)  # fmt: skip
    at += pace_s
    tamper = _pick(pop, taken, three)
    act("cover_open", tamper, at, "the terminal cover opened, then 70 % of the load bypassed",
        magnitude=0.3)  # fmt: skip
    # A meter's usual interval is learned from its readings: the history's 5 minutes
    # give way to the live polls' seconds within a minute, and a silence is judged
    # against it, so the silence waits until then.
    at = max(at + pace_s, live_start_s + SILENCE_AFTER_S)
    silent = _pick(pop, taken, honest)
    acts.append(
        Act(at, "comms_loss", pop.customers[silent].id, None,
            "the meter's communication cut (its gateway gets no answer)", gateway_silence=True)
    )  # fmt: skip
    scenario = Scenario(
        options=options,
        start_s=history_start,
        days=(live_start_s - history_start) / DAY_S + LIVE_DAYS,
        step_s=HISTORY_STEP_S,
        incidents=incidents,
    )
    fleet = LiveFleet(FleetModel(scenario, population=pop))
    return Showcase(
        fleet=fleet,
        acts=sorted(acts, key=lambda a: a.at_s),
        head_end=[pop.customers[tamper].id],
        history_start_s=history_start,
        live_start_s=live_start_s,
    )


#: Theft method -> the alert kind a visitor should see.
_LABEL = {
    "meterless_tap": "consumption_drop",
    "reversal": "reversal",
    "bypass": "bypass",
    "voltage_loss": "voltage_loss",
    "cover_open": "tamper",
}


@dataclass(frozen=True, slots=True)
class HistoryChunk:
    """An hour or so of every meter's readings: times, values and events by meter id."""

    ts: np.ndarray
    #: (times, meters, 16) in the order of `meter_ids`, NaN where not measured.
    values: np.ndarray
    present: np.ndarray
    meter_ids: list[str]
    events: dict[tuple[int, str], list[str]]


def history(showcase: Showcase) -> Iterator[HistoryChunk]:
    """Yield the fleet's readings from the history's start to the live start, in order."""
    model = showcase.fleet.model
    pop = model.pop
    ids = [m.id for m in pop.customers] + [m.id for m in pop.feeders]
    grid = np.arange(showcase.history_start_s, showcase.live_start_s, HISTORY_STEP_S)
    per_chunk = max(1, int(HISTORY_CHUNK_S // HISTORY_STEP_S))
    for start in range(0, grid.size, per_chunk):
        ts = grid[start : start + per_chunk]
        frame = model.compute(ts)
        events: dict[tuple[int, str], list[str]] = {}
        for row, key, name in frame.events:
            meter = ids[pop.n + key.index] if key.feeder else ids[key.index]
            events.setdefault((row, meter), []).append(name)
        yield HistoryChunk(
            ts=ts,
            values=frame_values(frame),
            present=np.concatenate([frame.present, frame.f_present], axis=1),
            meter_ids=ids,
            events=events,
        )


def live_meters(showcase: Showcase) -> dict[str, LiveMeter]:
    """Return the fleet's meters by id."""
    return {m.meter.id: m for m in showcase.fleet.meters}
