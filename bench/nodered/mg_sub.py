"""meterguard as a consumer of the Node-RED peer benchmark stream: MQTT source plus detectors.

Subscribes to bench/meters/{meter}/reading at QoS 1 through meterguard's MqttSource (the
readings are meterguard's own JSON), runs every enabled detector of the engine on each
batch and then acknowledges it (what the service does after its commit), publishes
opened alerts as {"meter","kind","ts"} on bench/alerts, and on the end marker (a payload
without ts: a dead letter to meterguard) publishes {"messages": N} on bench/done. The
fleet is the harness's (gen.py make_meters with the same seed), as an operator's
meters.csv would give it.

With --bare it is the reference instead: the same client library (paho-mqtt, on its own
network loop) and the same JSON decoder (orjson) that meterguard uses, in a bare loop
that only decodes and counts each reading, acknowledged on receipt (paho's default).

usage: mg_sub.py --harness DIR --port PORT [-m 1000] [--protocol 3.1.1|5]
       [--share GROUP --client-id ID] [--profile FILE] [--bare]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import json
import random
import sys
import time

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from collector.mqtt import MqttSource, MqttSourceSettings, MqttSubscription
from detectors.engine import Engine, build_detectors
from meterguard.model import AlertEventType, Meter, MeterRegistry
from meterguard.status import StatusBoard

END_TOPIC = "bench/meters/end/reading"


def fleet(harness: str, meters: int, seed: int) -> MeterRegistry:
    """Rebuild the harness's fleet (same generator, same seed) as a MeterRegistry."""
    sys.path.insert(0, harness)
    gen = importlib.import_module("gen")  # the harness's generator: same seed, same fleet

    made = gen.make_meters(meters, random.Random(seed))
    return MeterRegistry(
        Meter(
            id=mid,
            service="3p4w" if mt["three"] else "1p2w",
            nominal_v=230,
            generation=bool(mt["gen"]),
        )
        for mid, mt in made.items()
    )


async def consume(args: argparse.Namespace) -> None:
    """Consume the stream with the MQTT source and the engine until the end marker."""
    registry = fleet(args.harness, args.m, args.seed)
    settings = MqttSourceSettings(
        name="bench",
        port=args.port,
        client_id=args.client_id,
        share_group=args.share,
        protocol=args.protocol,
        subscriptions=[MqttSubscription(topic="bench/meters/{meter}/reading", format="meterguard")],
        dead_letters=100,
    )
    source = MqttSource(settings, registry, StatusBoard())
    engine = Engine(registry, build_detectors({}, registry))
    out = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{args.client_id}-out")
    out.connect("127.0.0.1", args.port)
    out.loop_start()
    alerts = 0
    decode_s = detect_s = 0.0
    async with source:
        # Every delivery, an empty one too: the end marker may come alone in its batch.
        deliveries = source.deliveries()
        while True:
            t0 = time.perf_counter()
            delivery = await anext(deliveries)
            t1 = time.perf_counter()
            for event in engine.process(delivery.batch) if len(delivery.batch) else ():
                if event.type is AlertEventType.OPEN:
                    alerts += 1
                    a = event.alert
                    body = {"meter": a.meter, "kind": str(a.kind), "ts": a.start}
                    out.publish("bench/alerts", json.dumps(body), qos=1)
            if delivery.on_committed is not None:
                delivery.on_committed()  # acknowledged once processed, as the service does
            detect_s += time.perf_counter() - t1
            decode_s += t1 - t0
            ended = bool(source.malformed[END_TOPIC])
            if args.share:
                # A worker sees only its share: the runner sums the workers' counts.
                report = {"readings": source.counters["readings"], "end": ended}
                out.publish(f"bench/workers/{args.client_id}", json.dumps(report), qos=1)
            elif ended:
                done = {"messages": source.counters["readings"]}
                out.publish("bench/done", json.dumps(done), qos=1).wait_for_publish(10)
                print(
                    f"readings {source.counters['readings']} alerts {alerts} "
                    f"detectors {detect_s:.2f}s waiting+decoding {decode_s:.2f}s",
                    flush=True,
                )
                break
    out.disconnect()
    out.loop_stop()


def bare(args: argparse.Namespace) -> None:
    """Receive, decode with orjson and count until the end marker, on paho's own loop."""
    count = 0
    v5 = args.protocol == "5"
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=args.client_id,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
    )

    def on_message(c: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        nonlocal count
        reading = orjson.loads(msg.payload)
        if msg.topic == END_TOPIC:
            c.publish("bench/done", json.dumps({"messages": count}), qos=1)
            return
        count += 1 if "ts" in reading else 0

    def on_connect(c: paho.Client, *rest: object) -> None:
        c.subscribe("bench/meters/+/reading", qos=1)

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect("127.0.0.1", args.port, keepalive=60)
    client.loop_forever()


def main() -> None:
    """Parse the arguments and run the consumer (optionally under cProfile)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--harness", required=True, help="the Node-RED peer harness folder")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-m", type=int, default=1000, help="meters in the stream")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--share", default=None, help="shared subscription group")
    ap.add_argument("--client-id", default="meterguard-bench")
    ap.add_argument("--profile", default=None, help="write a cProfile of the run here")
    ap.add_argument(
        "--protocol",
        choices=["3.1.1", "5"],
        default=MqttSourceSettings.model_fields["protocol"].default,
        help="MQTT protocol (default: the MQTT source's)",
    )
    ap.add_argument("--bare", action="store_true", help="paho + orjson only, no meterguard")
    args = ap.parse_args()
    if args.bare:
        bare(args)
    elif args.profile:
        cProfile.runctx("asyncio.run(consume(args))", globals(), locals(), args.profile)
    else:
        asyncio.run(consume(args))


if __name__ == "__main__":
    main()
