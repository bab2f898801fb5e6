"""The batch codec: a batch comes back as it went; damaged or foreign bytes are refused."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from meterguard.batch_codec import BatchCodecError, decode_batch, encode_batch
from meterguard.model import ReadingBatch
from tests.conftest import make_batch

DIGEST = b"fleet-01"


def _batch() -> ReadingBatch:
    batch = make_batch(
        [
            (1000.0, 0, {"v1": 231.5, "i1": 4.25, "p1": 950.0}),
            (1000.5, 3, {"v1": 229.0, "v2": 230.1, "e_imp": 12345.678}),
            (1060.0, 1, {"f": 49.98}),
        ]
    )
    batch.events[1] = 5
    return ReadingBatch(
        ts=batch.ts,
        slot=batch.slot,
        values=batch.values,
        events=batch.events,
        unknown_events={2: ["ODD_CODE"]},
    )


def test_round_trip_keeps_every_value_and_nan() -> None:
    batch = _batch()
    back = decode_batch(encode_batch(batch, DIGEST), DIGEST, meters=4)
    assert np.array_equal(back.ts, batch.ts)
    assert np.array_equal(back.slot, batch.slot)
    assert np.array_equal(back.events, batch.events)
    assert np.array_equal(back.values, batch.values, equal_nan=True)
    assert back.unknown_events == {2: ["ODD_CODE"]}


def test_unmeasured_quantities_cost_nothing() -> None:
    batch = _batch()
    full = batch.values.copy()
    full[np.isnan(full)] = 1.0
    dense = ReadingBatch(ts=batch.ts, slot=batch.slot, values=full, events=batch.events)
    # 9 of 16 quantities are measured by no row here: 9 rows of 3 float64 fewer.
    assert len(encode_batch(dense, DIGEST)) - len(encode_batch(batch, DIGEST)) >= 9 * 3 * 8


def test_empty_batch_round_trips() -> None:
    back = decode_batch(encode_batch(ReadingBatch.empty(0), DIGEST), DIGEST, meters=1)
    assert len(back) == 0


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[:-1], "bytes"),
        (lambda b: b[:10], "at least"),
        (lambda b: b"XXXX" + b[4:], "magic"),
        (lambda b: b[:4] + b"other-01" + b[12:], "another fleet"),
        (lambda b: b + b"\0", "bytes"),
    ],
)
def test_damaged_messages_are_refused(damage: Callable[[bytes], bytes], message: str) -> None:
    data = encode_batch(_batch(), DIGEST)
    with pytest.raises(BatchCodecError, match=message):
        decode_batch(damage(data), DIGEST, meters=4)


def test_slots_outside_the_fleet_are_refused() -> None:
    data = encode_batch(_batch(), DIGEST)
    with pytest.raises(BatchCodecError, match="outside the fleet"):
        decode_batch(data, DIGEST, meters=3)  # slot 3 names no meter of 3
