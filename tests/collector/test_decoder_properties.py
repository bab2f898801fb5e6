"""Properties of the payload decoders: any bytes give readings or a DecodeError, nothing else;
and the MQTT source turns any message into rows or a dead letter, whatever its decoder does."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import collector.mqtt
from collector.mqtt import MqttSource, MqttSourceSettings, RawMessage
from collector.mqtt_decoders import (
    Decoder,
    Reading,
    ShellyDecoder,
    decode_meterguard,
    decode_tasmota,
    make_decoder,
)
from meterguard.errors import DecodeError
from meterguard.model import QUANTITY_INDEX, Meter, MeterRegistry
from meterguard.status import StatusBoard
from tests.tiers import examples

NOW = 1_767_225_600.0
SETTINGS = settings(
    max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

numbers = st.one_of(
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=False, allow_infinity=False),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=12))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)
#: Values in the places a decoder reads: numbers most of the time, anything else sometimes.
field_values = st.one_of(numbers, numbers, json_values)
times = st.one_of(
    numbers,
    st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T00:00:00+14:00", "yesterday", ""]),
    json_values,
)
SHELLY_KEYS = [
    f"{p}_{f}"
    for p in "abc"
    for f in ("voltage", "current", "act_power", "aprt_power", "pf", "freq")
] + ["n_current", "total_act_power", "id"]
TASMOTA_KEYS = [
    *("Voltage", "Current", "Power", "ReactivePower", "Factor", "ApparentPower"),
    *("Total", "ExportActive", "Frequency", "Yesterday"),
]


def _dumps(obj: Any) -> bytes:
    # Python's json writes integers of any size, which orjson then refuses or takes.
    return json.dumps(obj).encode()


def shelly_payloads() -> st.SearchStrategy[bytes]:
    em = st.dictionaries(st.sampled_from(SHELLY_KEYS), field_values, max_size=12)
    emdata = st.dictionaries(st.sampled_from(["total_act", "total_act_ret"]), field_values)
    params = st.fixed_dictionaries(
        {}, optional={"ts": times, "em:0": st.one_of(em, json_values), "emdata:0": emdata}
    )
    frame = st.fixed_dictionaries(
        {"method": st.just("NotifyStatus")}, optional={"params": st.one_of(params, json_values)}
    )
    return st.one_of(em.map(_dumps), frame.map(_dumps), json_values.map(_dumps), st.binary())


def tasmota_payloads() -> st.SearchStrategy[bytes]:
    per_phase = st.one_of(field_values, st.lists(st.one_of(numbers, st.none()), max_size=4))
    energy = st.dictionaries(st.sampled_from(TASMOTA_KEYS), per_phase, max_size=8)
    sensor = st.fixed_dictionaries(
        {}, optional={"Time": times, "ENERGY": st.one_of(energy, json_values)}
    )
    return st.one_of(sensor.map(_dumps), json_values.map(_dumps), st.binary())


def meterguard_payloads() -> st.SearchStrategy[bytes]:
    quantity = st.sampled_from([*QUANTITY_INDEX, "events", "meter", "ts", "other"])
    reading = st.dictionaries(quantity, st.one_of(field_values, times), max_size=8)
    return st.one_of(
        reading.map(_dumps),
        st.lists(reading, max_size=4).map(_dumps),
        json_values.map(_dumps),
        st.binary(),
    )


def _check(decode: Callable[[], list[Reading]]) -> None:
    """Hold a decode to its contract: a DecodeError with a reason, or well-formed readings."""
    reason = None
    readings: list[Reading] = []
    try:
        readings = decode()
    except DecodeError as exc:
        reason = exc.reason
    if reason is not None:
        assert reason
        return
    for meter, ts, values, mask in readings:
        assert isinstance(meter, str)
        assert meter
        assert isinstance(ts, float)
        assert math.isfinite(ts)
        assert 0 <= mask < 2**32
        for quantity, value in values.items():
            assert quantity in QUANTITY_INDEX
            assert isinstance(value, float)
            assert math.isfinite(value)


@SETTINGS
@given(payload=shelly_payloads())
def test_shelly_gives_readings_or_a_decode_error(payload: bytes) -> None:
    _check(lambda: ShellyDecoder()(payload, "dev", NOW))


@SETTINGS
@given(payload=tasmota_payloads())
def test_tasmota_gives_readings_or_a_decode_error(payload: bytes) -> None:
    _check(lambda: decode_tasmota(payload, "dev", NOW))


@SETTINGS
@given(payload=meterguard_payloads(), topic_meter=st.sampled_from([None, "M1"]))
def test_meterguard_json_gives_readings_or_a_decode_error(
    payload: bytes, topic_meter: str | None
) -> None:
    _check(lambda: decode_meterguard(payload, topic_meter, NOW))


FLEET = MeterRegistry(
    [Meter(id="M1", service="3p4w", nominal_v=230), Meter(id="dev", service="3p4w", nominal_v=230)]
)
TOPICS = {"shelly": "s/{meter}/em", "tasmota": "tele/{meter}/SENSOR", "meterguard": "mg/{meter}"}


def _source(dead_letters: int = 10_000) -> MqttSource:
    settings = MqttSourceSettings.model_validate(
        {
            "name": "mq",
            "dead_letters": dead_letters,
            "subscriptions": [{"topic": t, "format": f} for f, t in TOPICS.items()],
        }
    )
    return MqttSource(settings, FLEET, StatusBoard())


messages = st.one_of(
    st.tuples(st.sampled_from(["s/dev/em", "s/nobody/em"]), shelly_payloads()),
    st.tuples(st.sampled_from(["tele/dev/SENSOR", "tele/x/SENSOR"]), tasmota_payloads()),
    st.tuples(st.sampled_from(["mg/M1", "mg/dev", "mg/ghost"]), meterguard_payloads()),
    st.tuples(st.just("elsewhere/x"), st.binary(max_size=20)),
)


@SETTINGS
@given(batch=st.lists(messages, max_size=12))
def test_the_source_turns_any_message_into_rows_or_a_dead_letter(
    batch: list[tuple[str, bytes]],
) -> None:
    source = _source()
    items: list[RawMessage] = [(t, p, k + 1, 1, 0) for k, (t, p) in enumerate(batch)]
    decoded = source.decode(items)
    counts = source.counters
    assert counts["received"] == len(items)
    assert counts["readings"] == len(decoded)
    kept = counts["malformed"] + counts["decode_error"] + counts["unknown_meter"]
    assert len(source.dead_letters) == kept
    assert counts["decode_error"] == 0  # the decoders raise nothing but DecodeError
    assert set(decoded.slot.tolist()) <= {0, 1}


def _source_decoding_m1_with(decoder: Decoder, monkeypatch: pytest.MonkeyPatch) -> MqttSource:
    """A source whose meterguard subscription hands M1's payloads to `decoder`."""

    def make(format_: str, timezone: str | None = None) -> Decoder:
        plain = make_decoder(format_, timezone)

        def for_m1(payload: bytes, meter: str | None, now: float) -> list[Reading]:
            return (decoder if meter == "M1" else plain)(payload, meter, now)

        return for_m1 if format_ == "meterguard" else plain

    monkeypatch.setattr(collector.mqtt, "make_decoder", make)
    return _source()


class BoomError(Exception):
    """What a broken decoder might raise."""


@pytest.mark.parametrize(
    "error",
    [IndexError("out of range"), KeyError("x"), BoomError("no"), RecursionError()],
)
def test_a_decoder_that_raises_anything_loses_only_its_payload(
    error: Exception, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = b'{"ts": 1767225600, "v1": 230.0}'
    poison = b'{"ENERGY":{"Frequency":[]}}'

    def broken(payload: bytes, meter: str | None, now: float) -> list[Reading]:
        if payload == poison:
            raise error
        return decode_meterguard(payload, meter, now)

    source = _source_decoding_m1_with(broken, monkeypatch)
    items: list[RawMessage] = [
        ("mg/M1", p, k + 1, 1, 0) for k, p in enumerate([good, poison, good])
    ]
    batch = source.decode(items)
    batch = source.decode(items)  # the second time is only counted, not logged again
    assert len(batch) == 2
    assert source.counters["decode_error"] == 2
    assert source.counters["malformed"] == 0
    [letter, _] = source.dead_letters
    assert letter.reason.startswith(f"decoder failed: {type(error).__name__}")
    assert letter.payload == poison
    assert len([r for r in caplog.records if "broke its decoder" in r.getMessage()]) == 1


def test_rows_of_a_payload_that_fails_halfway_are_taken_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def half(payload: bytes, meter: str | None, now: float) -> list[Reading]:
        # A first good reading, then one whose quantity the batch has no row for.
        return [("M1", NOW, {"v1": 230.0}, 0), ("M1", NOW + 1, {"v9": 1.0}, 0)]

    source = _source_decoding_m1_with(half, monkeypatch)
    items: list[RawMessage] = [
        ("mg/M1", b"{}", 1, 1, 0),
        ("mg/dev", b'{"ts": 1, "p1": 5}', 2, 1, 0),
    ]
    batch = source.decode(items)
    assert len(batch) == 1
    assert batch.slot.tolist() == [1]
    assert math.isnan(batch.col("v1")[0])
    assert batch.col("p1")[0] == 5.0
    assert source.counters["decode_error"] == 1
