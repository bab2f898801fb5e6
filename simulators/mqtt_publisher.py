"""Publish simulated meters' readings to a broker as Shelly, Tasmota or meterguard JSON, QoS 1."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, Self

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from meterguard.model import Meter

#: Default topic per format; {meter} is the meter id.
TOPICS = {
    "shelly": "shellies/{meter}/status/em:0",
    "shelly-rpc": "shellies/{meter}/events/rpc",
    "tasmota": "tele/{meter}/SENSOR",
    "meterguard": "meterguard/{meter}/reading",
}


class MeterModel(Protocol):
    """A simulated meter front-end: SimulatedMeter or a fleet adapter."""

    @property
    def meter(self) -> Meter: ...

    def read(self, t: float) -> dict[str, float]: ...


def _phases(meter: Meter) -> int:
    return meter.phases


def shelly_em(values: dict[str, float], phases: int) -> dict[str, Any]:
    """Return a Shelly Pro 3EM `em:0` status object for a reading."""
    em: dict[str, Any] = {"id": 0}
    total = 0.0
    for k, prefix in zip(range(1, 4), ("a_", "b_", "c_"), strict=True):
        if k > phases or f"i{k}" not in values:  # a 3p3w meter has no second element
            continue
        v, i, p = values[f"v{k}"], values[f"i{k}"], values[f"p{k}"]
        em[prefix + "voltage"] = round(v, 1)
        em[prefix + "current"] = round(i, 3)
        em[prefix + "act_power"] = round(p, 1)
        em[prefix + "aprt_power"] = round(v * i, 1)
        em[prefix + "pf"] = round(p / (v * i), 2) if v * i else 1.0
        em[prefix + "freq"] = round(values["f"], 2)
        total += p
    em["n_current"] = round(values["in"], 3) if "in" in values else None
    em["total_act_power"] = round(total, 1)
    return em


def shelly_notify(values: dict[str, float], phases: int, ts: float, src: str) -> dict[str, Any]:
    """Return a NotifyStatus frame carrying em:0 and the energy counters (emdata:0, Wh)."""
    return {
        "src": src,
        "dst": "meterguard",
        "method": "NotifyStatus",
        "params": {
            "ts": round(ts, 2),
            "em:0": shelly_em(values, phases),
            "emdata:0": {
                "id": 0,
                "total_act": round(values["e_imp"] * 1000.0, 2),
                "total_act_ret": round(values["e_exp"] * 1000.0, 2),
            },
        },
    }


def tasmota_sensor(values: dict[str, float], phases: int, ts: float) -> dict[str, Any]:
    """Return a Tasmota tele/<topic>/SENSOR payload (arrays for three phases, Time in UTC)."""

    def per_phase(prefix: str, digits: int) -> float | list[float]:
        numbers = [round(values.get(f"{prefix}{k}", 0.0), digits) for k in range(1, phases + 1)]
        return numbers[0] if phases == 1 else numbers

    return {
        "Time": datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "ENERGY": {
            "Total": round(values["e_imp"], 3),
            "ExportActive": round(values["e_exp"], 3),
            "Power": per_phase("p", 0),
            "ReactivePower": per_phase("q", 0),
            "Voltage": per_phase("v", 0),
            "Current": per_phase("i", 3),
            "Frequency": round(values["f"], 1),
        },
    }


def meterguard_json(meter: str, values: dict[str, float], ts: float) -> dict[str, Any]:
    """Return a reading in meterguard's own JSON (docs/COLLECTORS.md)."""
    return {"meter": meter, "ts": round(ts, 3), **{k: round(v, 4) for k, v in values.items()}}


def payload_for(format_: str, sim: MeterModel, ts: float) -> bytes:
    """Read a simulated meter at ts and return the payload in a format."""
    values = sim.read(ts)
    phases = _phases(sim.meter)
    if format_ == "shelly":
        obj = shelly_em(values, phases)
    elif format_ == "shelly-rpc":
        obj = shelly_notify(values, phases, ts, f"shellypro3em-{sim.meter.id.lower()}")
    elif format_ == "tasmota":
        obj = tasmota_sensor(values, phases, ts)
    elif format_ == "meterguard":
        obj = meterguard_json(sim.meter.id, values, ts)
    else:
        raise ValueError(f"unknown format {format_!r}")
    return json.dumps(obj, separators=(",", ":")).encode()


class PublishTimeoutError(Exception):
    """The broker did not acknowledge a publish in time."""


class MqttPublisher:
    """Publishes readings of simulated meters at QoS 1 and waits for the broker's PUBACKs.

    A context manager: the connection closes when the block ends, also on errors.
    """

    def __init__(
        self,
        meters: Sequence[MeterModel],
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        format_: str = "meterguard",
        topic: str | None = None,
        qos: int = 1,
        client_id: str = "meterguard-simulator",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.meters = list(meters)
        self.format = format_
        self.topic = topic or TOPICS[format_]
        self.qos = qos
        self._clock = clock
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self._client.connect(host, port, keepalive=30)
        self._client.loop_start()
        self.published = 0
        #: Seconds to wait for each acknowledgement before PublishTimeoutError.
        self.ack_timeout_s = 10.0

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _confirm(self, info: paho.MQTTMessageInfo) -> None:
        """Wait for the broker's acknowledgement; paho's wait returns silently on timeout."""
        info.wait_for_publish(self.ack_timeout_s)
        if not info.is_published():
            raise PublishTimeoutError(
                f"message {info.mid} not acknowledged within {self.ack_timeout_s:g} s"
            )

    def publish_raw(self, topic: str, payload: bytes) -> None:
        """Publish any payload (tests use it for garbage) and wait until the broker has it."""
        info = self._client.publish(topic, payload, qos=self.qos)
        self._confirm(info)
        self.published += 1

    def publish_round(self, ts: float | None = None) -> int:
        """Publish one reading of every meter; return how many went out."""
        t = self._clock() if ts is None else ts
        infos = []
        for sim in self.meters:
            topic = self.topic.format(meter=sim.meter.id)
            infos.append(self._client.publish(topic, payload_for(self.format, sim, t), self.qos))
        for info in infos:
            self._confirm(info)
            self.published += 1
        return len(infos)

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()


def main(argv: Sequence[str] | None = None) -> None:
    """Publish a simulated fleet's readings every --interval seconds until killed."""
    from simulators.meter import SimulatedMeter

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--format", choices=sorted(TOPICS), default="meterguard")
    parser.add_argument("--topic", default=None, help="template with {meter}")
    parser.add_argument("--meters", type=int, default=10)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args(argv)
    sims = [
        SimulatedMeter(
            meter=Meter(id=f"M{k:04d}", service="1p2w" if k % 3 == 2 else "3p4w", nominal_v=230),
            seed=k,
        )
        for k in range(1, args.meters + 1)
    ]
    publisher = MqttPublisher(
        sims, host=args.host, port=args.port, format_=args.format, topic=args.topic
    )
    try:
        while True:
            publisher.publish_round()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        publisher.close()


if __name__ == "__main__":
    main()
