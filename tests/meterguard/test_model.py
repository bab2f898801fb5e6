import numpy as np
import pytest

from meterguard.errors import BatchShapeError
from meterguard.model import (
    QUANTITIES,
    Meter,
    MeterEvent,
    MeterRegistry,
    ReadingBatch,
    decode_events,
    encode_events,
)
from tests.conftest import make_batch


def test_batch_rejects_mismatched_columns() -> None:
    with pytest.raises(BatchShapeError, match="values must have shape"):
        ReadingBatch(
            ts=np.zeros(3),
            slot=np.zeros(3, dtype=np.int32),
            values=np.zeros((len(QUANTITIES), 2)),
            events=np.zeros(3, dtype=np.uint32),
        )
    with pytest.raises(BatchShapeError, match="3 rows"):
        ReadingBatch(
            ts=np.zeros(3),
            slot=np.zeros(2, dtype=np.int32),
            values=np.zeros((len(QUANTITIES), 3)),
            events=np.zeros(3, dtype=np.uint32),
        )


def test_empty_batch_is_unmeasured_and_columns_are_views() -> None:
    batch = ReadingBatch.empty(4)
    assert np.isnan(batch.values).all()
    batch.col("p2")[:] = 5.0
    assert (batch.values[QUANTITIES.index("p2")] == 5.0).all()


def test_concat_and_take_keep_rows_and_unknown_events() -> None:
    a = make_batch([(1.0, 0, {"v1": 230.0}), (2.0, 1, {"v1": 231.0})])
    b = ReadingBatch(
        ts=np.array([3.0]),
        slot=np.array([2], dtype=np.int32),
        values=np.full((len(QUANTITIES), 1), np.nan),
        events=np.array([MeterEvent.COVER_OPEN], dtype=np.uint32),
        unknown_events={0: ["weird_code"]},
    )
    joined = ReadingBatch.concat([a, b])
    assert joined.ts.tolist() == [1.0, 2.0, 3.0]
    assert joined.unknown_events == {2: ["weird_code"]}
    picked = joined.take(np.array([False, True, True]))
    assert picked.slot.tolist() == [1, 2]
    assert picked.col("v1")[0] == 231.0
    assert picked.unknown_events == {1: ["weird_code"]}


def test_events_round_trip_and_unknown_codes_are_kept() -> None:
    mask, unknown = encode_events(["cover_open", " Magnetic_Field", "", "relay_glitch"])
    assert mask == MeterEvent.COVER_OPEN | MeterEvent.MAGNETIC_FIELD
    assert unknown == ["relay_glitch"]
    assert decode_events(mask) == ["cover_open", "magnetic_field"]


def test_registry_slots_and_duplicates() -> None:
    reg = MeterRegistry([Meter(id="A", service="1p2w", nominal_v=230)])
    assert reg.add(Meter(id="B", service="3p4w", nominal_v=230, generation=True)) == 1
    assert reg.slot("B") == 1
    assert reg.get("C") is None
    assert reg.flag_array(lambda m: m.generation).tolist() == [False, True]
    with pytest.raises(ValueError, match="listed twice"):
        reg.add(Meter(id="A", service="1p2w", nominal_v=230))
