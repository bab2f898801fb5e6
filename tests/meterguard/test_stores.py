"""The embedded series store; the alert database is tested in tests/stores/."""

import contextlib
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from meterguard.model import MeterRegistry
from meterguard.stores.sqlite_series import SqliteSeriesStore
from tests.conftest import make_batch


async def test_series_round_trip_keeps_gaps_and_rewrites_do_not_double(
    tmp_path: Path, registry: MeterRegistry
) -> None:
    store = SqliteSeriesStore(tmp_path / "s.sqlite", registry)
    try:
        batch = make_batch(
            [
                (100.0, 0, {"v1": 230.5, "p1": 1000.0}),
                (100.0, 1, {"v1": 229.0}),
                (160.0, 0, {"v1": 231.0, "p1": -5.0}),
            ]
        )
        await store.write(batch)
        await store.write(batch)  # a replayed batch must not double the rows
        assert await store.count() == 3
        series = await store.query("HONEST", 0, 1000, ["v1", "p1", "i2"])
        assert series.ts.tolist() == [100.0, 160.0]
        assert series.values["v1"].tolist() == [230.5, 231.0]
        assert series.values["p1"].tolist() == [1000.0, -5.0]
        assert np.isnan(series.values["i2"]).all()
        empty = await store.query("HONEST", 200, 300, ["v1"])
        assert len(empty.ts) == 0
        assert len(empty.values["v1"]) == 0
        with pytest.raises(ValueError, match="unknown quantities"):
            await store.query("HONEST", 0, 1, ["v1; DROP TABLE readings"])
    finally:
        await store.close()


async def test_series_later_row_with_fewer_quantities_merges_instead_of_erasing(
    tmp_path: Path, registry: MeterRegistry
) -> None:
    store = SqliteSeriesStore(tmp_path / "s.sqlite", registry)
    try:
        first = make_batch([(100.0, 0, {"v1": 230.5, "p1": 1000.0})])
        first.events[0] = 0b01
        await store.write(first)
        await store.commit()
        # The same (meter, ts) again, carrying only i1 and another event bit.
        second = make_batch([(100.0, 0, {"i1": 4.5, "v1": 231.0})])
        second.events[0] = 0b10
        await store.write(second)
        assert await store.count() == 1
        series = await store.query("HONEST", 0, 1000, ["v1", "p1", "i1"])
        assert series.values["v1"].tolist() == [231.0]  # a value sent again wins
        assert series.values["p1"].tolist() == [1000.0]  # not sent again: kept
        assert series.values["i1"].tolist() == [4.5]
        await store.commit()
        # The event bits are in the file, not in what query() answers: read them there.
        with contextlib.closing(sqlite3.connect(tmp_path / "s.sqlite")) as conn:
            [(events,)] = conn.execute("SELECT events FROM readings").fetchall()
        assert events == 0b11
    finally:
        await store.close()


async def test_series_downsampled_query_averages_buckets_aligned_to_the_start(
    tmp_path: Path, registry: MeterRegistry
) -> None:
    store = SqliteSeriesStore(tmp_path / "s.sqlite", registry)
    try:
        rows = [(1000.0 + k, 0, {"p1": float(k)}) for k in range(100)]
        rows += [(1000.0 + k, 1, {"p1": -1.0}) for k in range(100)]  # another meter
        rows[10] = (1010.0, 0, {"v1": 230.0})  # p1 not measured at 1010
        await store.write(make_batch(rows))
        series = await store.query("HONEST", 1000.0, 1099.999, ["p1", "v1"], points=10)
        assert series.ts.tolist() == [1000.0 + 10 * k for k in range(10)]
        expected = [np.mean([p for p in range(10 * k, 10 * k + 10) if p != 10]) for k in range(10)]
        assert np.allclose(series.values["p1"], expected)
        assert series.values["v1"][1] == 230.0
        assert np.isnan(series.values["v1"][0])
        # A window that does not divide evenly still gives at most `points` buckets.
        assert len((await store.query("HONEST", 1000.0, 1099.0, ["p1"], points=7)).ts) <= 7
        with pytest.raises(ValueError, match="points"):
            await store.query("HONEST", 0, 1, ["p1"], points=0)
    finally:
        await store.close()


async def test_series_retention_drops_only_readings_older_than_the_period(
    tmp_path: Path, registry: MeterRegistry
) -> None:
    store = SqliteSeriesStore(tmp_path / "s.sqlite", registry, retention_days=7)
    now = time.time()
    day = 86_400.0
    try:
        await store.write(
            make_batch(
                [
                    (now - 8 * day, 0, {"v1": 1.0}),
                    (now - 7 * day - 60, 1, {"v1": 2.0}),
                    (now - 7 * day + 60, 0, {"v1": 3.0}),
                    (now - 1, 2, {"v1": 4.0}),
                ]
            )
        )
        # The first write prunes against the wall clock.
        assert store.pruned == 2
        assert await store.count() == 2
        # Later runs (asked for here with a clock one hour on) drop what has aged since.
        assert await store.prune(now=now + 3600) == 1
        assert store.pruned == 3
        assert await store.count() == 1
        kept = await store.query("SINGLE", 0, now, ["v1"])
        assert kept.values["v1"].tolist() == [4.0]
    finally:
        await store.close()
