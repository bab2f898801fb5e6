"""Payload decoders: Shelly Pro 3EM, Tasmota, meterguard JSON; what they accept and refuse."""

import json
from datetime import UTC, datetime

import pytest

from collector.mqtt import TopicTemplate
from collector.mqtt_decoders import (
    ShellyDecoder,
    decode_meterguard,
    decode_tasmota,
    parse_ts,
)
from meterguard.errors import DecodeError
from meterguard.model import MeterEvent

NOW = 1_767_225_600.0


def _b(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_shelly_status_then_partial_notifications_are_merged() -> None:
    decode = ShellyDecoder()
    status = {
        "id": 0,
        "a_voltage": 231.2,
        "a_current": 2.1,
        "a_act_power": 460.0,
        "b_voltage": 229.0,
        "b_current": 1.0,
        "b_act_power": 220.0,
        "c_voltage": 230.5,
        "c_current": 0.5,
        "c_act_power": -110.0,
        "n_current": 1.4,
        "a_freq": 50.01,
        "total_act_power": 570.0,
    }
    [(meter, ts, values, mask)] = decode(_b(status), "shelly-1", NOW)
    assert (meter, ts, mask) == ("shelly-1", NOW, 0)
    assert values == {
        "v1": 231.2, "i1": 2.1, "p1": 460.0, "v2": 229.0, "i2": 1.0, "p2": 220.0,
        "v3": 230.5, "i3": 0.5, "p3": -110.0, "in": 1.4, "f": 50.01,
    }  # fmt: skip
    frame = {
        "src": "shellypro3em-abc",
        "method": "NotifyStatus",
        "params": {
            "ts": NOW + 5.5,
            "em:0": {"id": 0, "a_current": 3.0, "a_act_power": 690.0},
            "emdata:0": {"id": 0, "total_act": 12345.0, "total_act_ret": 10.0},
        },
    }
    [(_, ts, merged, _)] = decode(_b(frame), "shelly-1", NOW + 9)
    assert ts == NOW + 5.5  # the frame's own time, not the time of receipt
    assert merged["i1"] == 3.0
    assert merged["p1"] == 690.0
    assert merged["v2"] == 229.0  # kept from the status
    assert merged["e_imp"] == pytest.approx(12.345)
    assert merged["e_exp"] == pytest.approx(0.01)
    # Another device's state is its own.
    [(_, _, other, _)] = decode(_b({"a_voltage": 228.0}), "shelly-2", NOW)
    assert other == {"v1": 228.0}


def test_shelly_notification_about_another_component_yields_nothing() -> None:
    frame = {"method": "NotifyStatus", "params": {"ts": NOW, "switch:0": {"output": True}}}
    assert ShellyDecoder()(_b(frame), "s", NOW) == []


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (_b({"a_voltage": "high"}), "a_voltage is not a number"),
        (_b({"method": "NotifyStatus"}), "without params"),
        (_b({"id": 0}), "no em:0 measurement"),
    ],
)
def test_shelly_refuses_bad_payloads_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        ShellyDecoder()(payload, "s", NOW)


def test_tasmota_single_and_three_phase() -> None:
    single = {
        "Time": "2026-01-01T00:00:00",
        "ENERGY": {"Total": 12.5, "Power": 450, "Voltage": 231, "Current": 1.95, "Factor": 0.99},
    }
    [(meter, ts, values, _)] = decode_tasmota(_b(single), "plug", NOW + 99)
    assert meter == "plug"
    assert ts == NOW  # Time taken as UTC
    assert values == {"v1": 231.0, "i1": 1.95, "p1": 450.0, "e_imp": 12.5}
    three = {
        "Time": "2026-01-01T00:01:00+01:00",
        "ENERGY": {
            "Total": [1.0, 2.0, 3.5],
            "Power": [100, 200, -50],
            "Voltage": [230, 231, 229],
            "Current": [0.5, 0.9, 0.3],
            "ReactivePower": [10, 20, 5],
            "Frequency": 50,
        },
    }
    [(_, ts3, v3, _)] = decode_tasmota(_b(three), "pm", NOW)
    assert ts3 == NOW + 60 - 3600
    assert v3["p3"] == -50.0
    # Tasmota's reactive power has no sign: it is not taken as q (missing is not zero).
    assert not {"q1", "q2", "q3"} & v3.keys()
    assert v3["e_imp"] == 6.5
    assert v3["f"] == 50.0


def test_tasmota_empty_arrays_and_nulls_are_not_measured() -> None:
    # The payload that once killed the service: an empty array where a number belongs.
    [(_, _, values, _)] = decode_tasmota(
        _b({"ENERGY": {"Frequency": [], "Total": [], "Power": [120, None, 80], "Voltage": 230}}),
        "pm",
        NOW,
    )
    assert values == {"p1": 120.0, "p3": 80.0, "v1": 230.0}
    # A register total over some phases only would read as a fall: left out.
    [(_, _, partial, _)] = decode_tasmota(
        _b({"ENERGY": {"Total": [1.0, None, 2.0], "Power": 5}}), "pm", NOW
    )
    assert partial == {"p1": 5.0}
    with pytest.raises(DecodeError, match="no measurement"):
        decode_tasmota(_b({"ENERGY": {"Frequency": []}}), "pm", NOW)


def test_shelly_sends_no_reactive_power_and_none_is_made_up() -> None:
    em = {
        "a_voltage": 230.0, "a_current": 5.0, "a_act_power": 1035.0,
        "a_aprt_power": 1150.0, "a_pf": 0.9,
    }  # fmt: skip
    [(_, _, values, _)] = ShellyDecoder()(_b(em), "s", NOW)
    assert values == {"v1": 230.0, "i1": 5.0, "p1": 1035.0}


@pytest.mark.parametrize(
    "payload",
    [
        b'{"meter": "A", "ts": 1e999, "v1": 1}',
        b'{"meter": "A", "ts": 1' + b"0" * 400 + b', "v1": 1}',
        b'{"meter": "A", "ts": 1, "v1": 1' + b"0" * 400 + b"}",
    ],
)
def test_numbers_beyond_a_float_are_refused_with_a_reason(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_meterguard(payload, None, 0)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (_b({"Time": "2026-01-01T00:00:00"}), "no ENERGY"),
        (_b({"ENERGY": {"Power": [1, 2, 3, 4]}}), "4 phases"),
        (_b({"ENERGY": {"Yesterday": 1.0}}), "no measurement"),
        (_b({"Time": "yesterday", "ENERGY": {"Power": 1}}), "not RFC 3339"),
    ],
)
def test_tasmota_refuses_bad_payloads(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_tasmota(payload, "pm", NOW)


def test_meterguard_json_single_list_and_events() -> None:
    one = {"meter": "M1", "ts": "2026-01-01T00:00:00Z", "v1": 230.1, "p1": -12, "gen": True}
    [(meter, ts, values, mask)] = decode_meterguard(_b(one), None, 0)
    assert (meter, ts, values, mask) == ("M1", NOW, {"v1": 230.1, "p1": -12.0}, 0)
    many = [
        {"ts": NOW, "v1": 230.0, "events": ["cover_open", "odd_code"]},
        {"ts": NOW + 60, "v1": 229.0, "i1": None, "events": "magnetic_field"},
    ]
    readings = decode_meterguard(_b(many), "M2", 0)
    assert [r[0] for r in readings] == ["M2", "M2"]
    assert readings[0][3] == MeterEvent.COVER_OPEN
    assert readings[1][3] == MeterEvent.MAGNETIC_FIELD
    assert readings[1][2] == {"v1": 229.0}  # null means not measured


@pytest.mark.parametrize(
    ("payload", "topic_meter", "reason"),
    [
        (_b({"ts": NOW, "v1": 1}), None, "no meter id"),
        (_b({"meter": "A", "ts": NOW, "v1": 1}), "B", "differs from topic"),
        (_b({"meter": "A", "v1": 1}), None, "ts missing"),
        (_b({"meter": "A", "ts": NOW}), None, "no measured quantity"),
        (_b({"meter": "A", "ts": NOW, "v1": True}), None, "v1 is not a number"),
        (_b({"meter": "A", "ts": NOW, "v1": 1, "events": 5}), None, "events must be"),
        (_b("text"), None, "JSON object"),
    ],
)
def test_meterguard_json_refuses_bad_readings(
    payload: bytes, topic_meter: str | None, reason: str
) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_meterguard(payload, topic_meter, 0)


def test_parse_ts_forms() -> None:
    assert parse_ts(NOW, "x") == NOW
    assert parse_ts("2026-01-01T00:00:00.5Z", "x") == NOW + 0.5
    with pytest.raises(DecodeError):
        parse_ts(float("inf"), "x")
    with pytest.raises(DecodeError):
        parse_ts(None, "x")


def test_topic_templates_match_and_extract_the_meter() -> None:
    shelly = TopicTemplate("shellies/{meter}/status/em:0")
    assert shelly.filter == "shellies/+/status/em:0"
    assert shelly.match("shellies/house-7/status/em:0") == (True, "house-7")
    assert shelly.match("shellies/house-7/status/em:1") == (False, None)
    assert shelly.match("shellies/a/b/status/em:0") == (False, None)
    deep = TopicTemplate("site/+/{meter}/#")
    assert deep.match("site/north/M9/tele/SENSOR") == (True, "M9")
    assert deep.match("other/north/M9/x") == (False, None)


def test_a_subscriptions_timezone_places_local_device_times() -> None:
    from collector.mqtt_decoders import make_decoder

    payload = b'{"Time":"2026-05-04T10:00:00","ENERGY":{"Voltage":230,"Current":1.0,"Power":220}}'
    [(meter, ts, values, _)] = make_decoder("tasmota", "Asia/Kolkata")(payload, "plug", 0.0)
    assert (meter, values["p1"]) == ("plug", 220.0)
    # 10:00 in India is 04:30 UTC; without the zone it would be taken 5.5 h ahead.
    assert ts == datetime(2026, 5, 4, 4, 30, tzinfo=UTC).timestamp()
    [(_, ts_utc, _, _)] = make_decoder("tasmota")(payload, "plug", 0.0)
    assert ts_utc - ts == 5.5 * 3600
    # A time with an offset keeps it whatever the zone.
    offset = payload.replace(b'10:00:00"', b'10:00:00+00:00"')
    [(_, ts_offset, _, _)] = make_decoder("tasmota", "Asia/Kolkata")(offset, "plug", 0.0)
    assert ts_offset == ts_utc
