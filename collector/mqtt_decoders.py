"""MQTT payload decoders: Shelly Pro 3EM, Tasmota SENSOR/ENERGY and meterguard's own JSON.

A decoder turns one payload into readings `(meter, ts, {quantity: value}, event mask)` or
raises DecodeError with the reason. Decoders are pure apart from Shelly's, which merges
partial updates per device and so keeps the last known values.

Missing is not zero: a quantity a payload does not carry (absent, null, an empty array)
is left out, so it stays "not measured" (NaN) downstream. Reactive power is taken only
where its sign is known: Shelly Pro 3EM sends none (apparent power and PF give only |Q|)
and Tasmota's ReactivePower carries no sign, so both leave q1-q3 unmeasured.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from math import isfinite
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from meterguard.errors import DecodeError
from meterguard.model import QUANTITY_INDEX, encode_events

#: One decoded reading: meter id, epoch seconds, quantities, event mask.
Reading = tuple[str, float, dict[str, float], int]

_TS_CACHE: dict[str, float] = {}


def parse_ts(value: Any, where: str, zone: tzinfo = UTC) -> float:
    """Return epoch seconds from a number or an RFC 3339 string; anything else is an error.

    A time without an offset is taken in `zone` (the device's own, when it sends local
    time; UTC by default).
    """
    if type(value) is str and zone is UTC:  # the common case: a time seen a moment ago
        cached = _TS_CACHE.get(value)
        if cached is not None:
            return cached
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            ts = float(value)
        except OverflowError as exc:  # an integer beyond any float
            raise DecodeError(where, "ts is not finite") from exc
        if math.isfinite(ts):
            return ts
        raise DecodeError(where, "ts is not finite")
    if isinstance(value, str):
        key = value if zone is UTC else f"{value}@{zone}"
        cached = _TS_CACHE.get(key)
        if cached is not None:
            return cached
        try:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=zone)
            # Years near 1 or 9999 with an offset fall outside what a timestamp can hold.
            ts = parsed.timestamp()
        except (ValueError, OverflowError, OSError) as exc:
            raise DecodeError(where, f"ts {value[:40]!r} is not RFC 3339") from exc
        if len(_TS_CACHE) > 4096:  # readings of one round share a ts: a small cache suffices
            _TS_CACHE.clear()
        _TS_CACHE[key] = ts
        return ts
    raise DecodeError(where, "ts missing or not a number/RFC 3339 string")


def _load(payload: bytes, where: str) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(where, f"not JSON: {exc}") from exc


def _number(value: Any, key: str, where: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            number = math.inf
        if math.isfinite(number):
            return number
        raise DecodeError(where, f"{key} is not a finite number")
    raise DecodeError(where, f"{key} is not a number: {str(value)[:40]!r}")


def _own_reading(
    obj: Any, topic_meter: str | None, now: float, where: str, zone: tzinfo = UTC
) -> Reading:
    if not isinstance(obj, dict):
        raise DecodeError(where, "a reading must be a JSON object")
    meter = obj.get("meter", topic_meter)
    if not isinstance(meter, str) or not meter:
        raise DecodeError(where, "no meter id in topic or payload")
    if topic_meter is not None and meter != topic_meter:
        raise DecodeError(where, f"payload meter {meter[:40]!r} differs from topic meter")
    ts = parse_ts(obj.get("ts"), where, zone)
    values: dict[str, float] = {}
    for key, value in obj.items():
        if key in QUANTITY_INDEX and value is not None:
            # A finite float is what nearly every value is: taken without a call.
            if type(value) is float and isfinite(value):
                values[key] = value
            else:
                values[key] = _number(value, key, where)
    if not values:
        raise DecodeError(where, "no measured quantity in the reading")
    events = obj.get("events")
    mask = 0
    if events:
        names = events.split(";") if isinstance(events, str) else events
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DecodeError(where, "events must be a list of names or a ;-separated string")
        mask, _unknown = encode_events(names)
    return meter, ts, values, mask


def decode_meterguard(
    payload: bytes, topic_meter: str | None, now: float, zone: tzinfo = UTC
) -> list[Reading]:
    """Decode meterguard's own JSON: one reading object or a list of them (docs/COLLECTORS.md)."""
    where = "meterguard json"
    obj = _load(payload, where)
    if isinstance(obj, list):
        return [_own_reading(o, topic_meter, now, where, zone) for o in obj]
    return [_own_reading(obj, topic_meter, now, where, zone)]


_SHELLY_PHASES = (("a_", "1"), ("b_", "2"), ("c_", "3"))
_SHELLY_FIELDS = (("voltage", "v"), ("current", "i"), ("act_power", "p"))


class ShellyDecoder:
    """Shelly Pro 3EM (Gen2): `em:0` status and NotifyStatus frames, partial updates merged."""

    #: Devices whose last values are kept; past this the memory starts afresh (a flood
    #: of made-up topic names must not grow it without end).
    MAX_DEVICES = 100_000

    def __init__(self) -> None:
        self._last: dict[str, dict[str, float]] = {}

    def __call__(self, payload: bytes, topic_meter: str | None, now: float) -> list[Reading]:
        """Decode one frame; fields a frame leaves out keep their last known value."""
        where = "shelly"
        if topic_meter is None:
            raise DecodeError(where, "no meter id in the topic")
        obj = _load(payload, where)
        if not isinstance(obj, dict):
            raise DecodeError(where, "payload is not a JSON object")
        ts = now
        if "method" in obj:  # an RPC notification on <prefix>/events/rpc
            params = obj.get("params")
            if not isinstance(params, dict):
                raise DecodeError(where, "notification without params")
            if "ts" in params:
                ts = parse_ts(params["ts"], where)
            em, emdata = params.get("em:0"), params.get("emdata:0")
            if em is None and emdata is None:
                return []  # a notification about another component: nothing to read
        else:
            em, emdata = obj, None
        update: dict[str, float] = {}
        if em is not None:
            self._em(em, update, where)
        if emdata is not None:
            self._emdata(emdata, update, where)
        merged = self._last.get(topic_meter)
        if merged is None:
            if len(self._last) >= self.MAX_DEVICES:
                self._last.clear()
            merged = self._last[topic_meter] = {}
        merged.update(update)
        if not merged:
            raise DecodeError(where, "no em:0 measurement in the frame")
        return [(topic_meter, ts, dict(merged), 0)]

    @staticmethod
    def _em(em: Any, out: dict[str, float], where: str) -> None:
        if not isinstance(em, dict):
            raise DecodeError(where, "em:0 is not an object")
        for prefix, phase in _SHELLY_PHASES:
            for field, quantity in _SHELLY_FIELDS:
                value = em.get(prefix + field)
                if value is not None:
                    out[quantity + phase] = _number(value, prefix + field, where)
            freq = em.get(prefix + "freq")
            if freq is not None and "f" not in out:
                out["f"] = _number(freq, prefix + "freq", where)
        neutral = em.get("n_current")
        if neutral is not None:
            out["in"] = _number(neutral, "n_current", where)

    @staticmethod
    def _emdata(emdata: Any, out: dict[str, float], where: str) -> None:
        if not isinstance(emdata, dict):
            raise DecodeError(where, "emdata:0 is not an object")
        for key, quantity in (("total_act", "e_imp"), ("total_act_ret", "e_exp")):
            value = emdata.get(key)
            if value is not None:
                out[quantity] = _number(value, key, where) / 1000.0  # Wh -> kWh


#: Per-phase Tasmota fields. ReactivePower is left out on purpose: Tasmota sends it
#: without a sign, and an unsigned Q would put a capacitive load on the wrong side.
_TASMOTA_FIELDS = (
    ("Voltage", "v"),
    ("Current", "i"),
    ("Power", "p"),
)


def _tasmota_phases(value: Any, key: str, where: str) -> list[float | None]:
    """Return one value per phase (None: not sent); a number is one phase."""
    phases = value if isinstance(value, list) else [value]
    if len(phases) > 3:
        raise DecodeError(where, f"{key} has {len(phases)} phases")
    return [None if v is None else _number(v, key, where) for v in phases]


def decode_tasmota(
    payload: bytes, topic_meter: str | None, now: float, zone: tzinfo = UTC
) -> list[Reading]:
    """Decode Tasmota `tele/<topic>/SENSOR` with an ENERGY object (single or three phase).

    `Time` carries no offset unless the device's Timezone is 0: it is taken in `zone`
    (the subscription's `timezone`, UTC by default).
    An empty array or a null is "not measured", never 0.
    """
    where = "tasmota"
    if topic_meter is None:
        raise DecodeError(where, "no meter id in the topic")
    obj = _load(payload, where)
    if not isinstance(obj, dict):
        raise DecodeError(where, "payload is not a JSON object")
    energy = obj.get("ENERGY")
    if not isinstance(energy, dict):
        raise DecodeError(where, "no ENERGY object")
    ts = parse_ts(obj["Time"], where, zone) if "Time" in obj else now
    values: dict[str, float] = {}
    for key, prefix in _TASMOTA_FIELDS:
        value = energy.get(key)
        if value is None:
            continue
        for k, v in enumerate(_tasmota_phases(value, key, where), start=1):
            if v is not None:
                values[f"{prefix}{k}"] = v
    for key, quantity in (("Total", "e_imp"), ("ExportActive", "e_exp"), ("Frequency", "f")):
        value = energy.get(key)
        if value is None:
            continue
        numbers = _tasmota_phases(value, key, where)
        known = [v for v in numbers if v is not None]
        if quantity == "f":
            if known:
                values["f"] = known[0]
        elif known and len(known) == len(numbers):
            # A register total needs every phase: a sum over some would be a fall.
            values[quantity] = math.fsum(known)
    if not values:
        raise DecodeError(where, "ENERGY has no measurement")
    return [(topic_meter, ts, values, 0)]


Decoder = Callable[[bytes, str | None, float], list[Reading]]


def make_decoder(format_: str, timezone: str | None = None) -> Decoder:
    """Return a fresh decoder for a payload format (shelly, tasmota, meterguard).

    `timezone` (IANA name): the devices' local time, for times sent without an offset.
    """
    if format_ == "shelly":
        return ShellyDecoder()
    decode = {"tasmota": decode_tasmota, "meterguard": decode_meterguard}.get(format_)
    if decode is not None:
        return decode if timezone is None else functools.partial(decode, zone=ZoneInfo(timezone))
    raise ValueError(f"unknown payload format {format_!r}")
