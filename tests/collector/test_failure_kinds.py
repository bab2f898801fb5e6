"""Failure kinds from what pymodbus really raises and answers, over TCP to the simulator."""

from __future__ import annotations

from pymodbus import ModbusException
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.pdu import ModbusPDU

from collector.modbus import (
    ModbusSource,
    ModbusSourceSettings,
    classify_error,
    classify_response,
)
from meterguard.model import Meter, MeterRegistry
from meterguard.status import FailureKind, ReadFailedError, StatusBoard
from simulators.meter import SimulatedMeter
from simulators.modbus_gateway import Fault, ModbusGateway
from tests.conftest import free_port

METER = Meter(id="M1", service="3p4w", nominal_v=230)
TIMEOUT_S = 0.3


def _client(port: int) -> AsyncModbusTcpClient:
    # As the source makes it: no reconnecting behind its back, no retries.
    return AsyncModbusTcpClient(
        "127.0.0.1", port=port, timeout=TIMEOUT_S, retries=0, reconnect_delay=0
    )


def _gateway(port: int) -> ModbusGateway:
    return ModbusGateway([(1, SimulatedMeter(meter=METER, seed=1, base_kw=2.0))], port=port)


async def _outcome(client: AsyncModbusTcpClient, unit: int) -> ReadFailedError | None:
    """Read one block as the source does; classify what pymodbus raised or answered."""
    try:
        response: ModbusPDU = await client.read_input_registers(0, count=2, device_id=unit)
    except ModbusException as exc:
        return classify_error(exc, client.connected, TIMEOUT_S, 1)
    return classify_response(response)


async def test_pymodbus_outcomes_map_to_their_kinds() -> None:
    port = free_port()
    async with _gateway(port) as gateway:
        client = _client(port)
        assert await client.connect()
        try:
            assert await _outcome(client, 1) is None  # a normal answer is no failure

            gateway.set_fault(1, Fault.EXCEPTION)
            device = await _outcome(client, 1)
            assert device is not None
            assert (device.kind, device.code) == (FailureKind.DEVICE_EXCEPTION, 4)
            assert "server device failure" in device.detail

            # Nobody on the bus at unit 9: the gateway answers exception 11 for it.
            gateway_failure = await _outcome(client, 9)
            assert gateway_failure is not None
            assert (gateway_failure.kind, gateway_failure.code) == (FailureKind.GATEWAY, 11)

            gateway.set_fault(1, Fault.SILENT)
            silent = await _outcome(client, 1)
            assert silent is not None
            assert silent.kind is FailureKind.TIMEOUT
            assert client.connected  # a silent meter is not a lost connection

            gateway.set_fault(1, Fault.RESET)  # the gateway hangs up on the request
            reset = await _outcome(client, 1)
            assert reset is not None
            assert reset.kind is FailureKind.UNREACHABLE
        finally:
            client.close()
    # No gateway at all: pymodbus raises ConnectionException.
    client = _client(port)
    try:
        assert not await client.connect()
        refused = await _outcome(client, 1)
        assert refused is not None
        assert refused.kind is FailureKind.UNREACHABLE
    finally:
        client.close()


async def test_a_meter_and_its_source_count_failures_in_the_same_words() -> None:
    port = free_port()
    status = StatusBoard()
    settings = ModbusSourceSettings.model_validate(
        {
            "name": "gw",
            "port": port,
            "timeout_s": TIMEOUT_S,
            "retries": 0,
            "devices": [{"meter": "M1", "unit": 1, "profile": "sdm630"}],
        }
    )
    source = ModbusSource(settings, MeterRegistry([METER]), status)
    async with _gateway(port) as gateway, source:
        for fault in (Fault.EXCEPTION, Fault.SHORT, Fault.SILENT, Fault.NONE):
            gateway.set_fault(1, fault)
            await source.poll_once()
    m1 = status.get("M1")
    assert m1 is not None
    assert m1.online
    assert m1.failures == {"device_exception": 1, "malformed": 1, "timeout": 1}
    assert {k: source.counters[k] for k in m1.failures} == m1.failures
    assert m1.last_failure == "timeout"
    detail = m1.as_dict()  # what GET /api/meters/{id} shows under `collector`
    assert detail["failures"] == m1.failures
    assert detail["errors"] == 3
    assert detail["readings"] == source.counters["readings"] == 1
    assert set(m1.failures) <= {kind.value for kind in FailureKind}
