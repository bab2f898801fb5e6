"""The demo's story: one act of each kind, history before the live start, in time order."""

from __future__ import annotations

import numpy as np

from simulators.showcase import (
    HISTORY_STEP_S,
    SILENCE_AFTER_S,
    build_showcase,
    history,
    live_meters,
)

LIVE = 1_780_000_000.0


def test_the_story_has_one_act_of_each_kind_on_distinct_meters() -> None:
    show = build_showcase(LIVE, customers=48, seed=7, pace_s=10.0)
    kinds = [act.kind for act in show.acts]
    assert sorted(kinds) == sorted(
        ["consumption_drop", "energy_balance", "reversal", "bypass", "voltage_loss", "tamper",
         "comms_loss"]
    )  # fmt: skip
    assert len({act.meter for act in show.acts}) == len(show.acts)
    times = [act.at_s for act in show.acts]
    assert times == sorted(times)
    slow = {act.kind for act in show.acts if act.at_s < LIVE}
    assert slow == {"consumption_drop", "energy_balance"}
    live = [t - LIVE for t in times if t >= LIVE]
    assert np.allclose(np.diff(live[:-1]), 10.0)
    assert live[-1] == max(live[-2] + 10.0, SILENCE_AFTER_S)
    # The tamper meter's events reach the service only through the head-end.
    (tamper,) = [act.meter for act in show.acts if act.kind == "tamper"]
    assert show.head_end == [tamper]


def test_the_history_ends_before_the_live_start_and_shows_the_tap() -> None:
    show = build_showcase(LIVE, customers=30, seed=3)
    (drop,) = [act for act in show.acts if act.kind == "consumption_drop"]
    last = -np.inf
    before: list[float] = []
    after: list[float] = []
    for chunk in history(show):
        assert chunk.ts[0] > last
        assert np.all(np.diff(chunk.ts) == HISTORY_STEP_S)
        last = float(chunk.ts[-1])
        col = chunk.meter_ids.index(drop.meter)
        power = chunk.values[:, col, 7:10]  # p1..p3
        watts = np.nansum(power, axis=1)
        before.extend(watts[chunk.ts < drop.at_s - 86400.0].tolist())
        after.extend(watts[chunk.ts >= drop.at_s].tolist())
    assert show.history_start_s <= LIVE - 9 * 86400.0
    assert last < LIVE <= last + HISTORY_STEP_S
    # The meterless tap leaves 40 % of the load on the meter.
    assert np.mean(after) < 0.6 * np.mean(before)
    # Live, the same meter reads on from the model.
    assert live_meters(show)[drop.meter].read(LIVE + 1.0)["p1"] >= 0.0
