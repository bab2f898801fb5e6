"""The MQTT source with TLS and a password, against a private Mosquitto."""

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.mqtt import MqttSource, MqttSourceSettings
from meterguard.model import Meter, MeterRegistry
from meterguard.status import StatusBoard
from simulators.meter import SimulatedMeter
from simulators.mqtt_publisher import MqttPublisher
from tests.collector.conftest import Broker
from tests.collector.test_mqtt import collect_readings
from tests.conftest import free_port

FLEET = [Meter(id="T1", service="3p4w", nominal_v=230)]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[tuple[Broker, int]]:
    """A broker with a plain anonymous listener and a TLS listener that wants a password."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "1", "-subj", "/CN=meterguard test CA", cwd=tmp_path)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
             "server.csr", "-subj", "/CN=127.0.0.1", cwd=tmp_path)  # fmt: skip
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "san.ext",
             cwd=tmp_path)  # fmt: skip
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "meter", "s3cret"], check=True)
    passwd.chmod(0o600)
    tls_port = free_port()
    broker = Broker(
        tmp_path,
        head="per_listener_settings true\n",
        tail=(
            f"listener {tls_port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n"
            f"cafile {tmp_path / 'ca.pem'}\ncertfile {tmp_path / 'server.pem'}\n"
            f"keyfile {tmp_path / 'server.key'}\n"
        ),
    )
    broker.start()
    try:
        yield broker, tls_port
    finally:
        broker.stop()


def _settings(port: int, tmp_path: Path, password: str, protocol: str) -> MqttSourceSettings:
    return MqttSourceSettings.model_validate(
        {
            "name": "secure",
            "protocol": protocol,
            "port": port,
            "tls": True,
            "ca_file": tmp_path / "ca.pem",
            "username": "meter",
            "password": password,
            "flush_s": 0.02,
            "backoff_max_s": 1,
            "subscriptions": [{"topic": "meterguard/{meter}/reading", "format": "meterguard"}],
        }
    )


# The brokers refuse a login with different CONNACK codes in the two protocols.
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_tls_with_password_receives_and_a_wrong_password_does_not(
    secure_broker: tuple[Broker, int], tmp_path: Path, protocol: str
) -> None:
    broker, tls_port = secure_broker
    registry = MeterRegistry(FLEET)
    refused = MqttSource(_settings(tls_port, tmp_path, "wrong", protocol), registry, StatusBoard())
    async with refused:
        with pytest.raises(TimeoutError):
            await refused.wait_connected(2)
    assert refused.counters["connects"] == 0
    # A refused login is a broker out of reach for readiness, with what the broker did.
    assert refused.health.state == "unreachable"
    assert refused.health.reason is not None
    assert refused.health.reason.startswith(f"broker 127.0.0.1:{tls_port} ")
    source = MqttSource(_settings(tls_port, tmp_path, "s3cret", protocol), registry, StatusBoard())
    async with source:
        await source.wait_connected(10)
        publisher = MqttPublisher(
            [SimulatedMeter(meter=FLEET[0], seed=1)], port=broker.port, format_="meterguard"
        )
        publisher.publish_round(1_767_225_600.0)
        publisher.close()
        batch = await collect_readings(source, 1)
    assert len(batch) == 1
    assert 200 < batch.col("v1")[0] < 250
