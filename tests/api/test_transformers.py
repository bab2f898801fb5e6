"""The transformer view: hourly balance from stored readings, the allowance, open alerts."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from meterguard.model import AlertKind, Meter
from meterguard.runtime import Runtime
from tests.api.control_room import control_room as signed_in
from tests.api.control_room import open_alert
from tests.conftest import make_batch

#: 2026-01-01T00:00:00Z, an hour's beginning.
H0 = 1_767_225_600.0
Room = tuple[httpx.AsyncClient, dict[str, str], Runtime]
METERS = [
    Meter(id="F1", service="3p4w", nominal_v=230, role="feeder", transformer="T1"),
    Meter(id="C1", service="3p4w", nominal_v=230, transformer="T1", customer_class="shop"),
    Meter(id="C2", service="1p2w", nominal_v=230, transformer="T1"),
    Meter(id="C9", service="1p2w", nominal_v=230, transformer="T2"),
]


def _minutes(
    slot: int, watts: dict[str, float], start: float, minutes: int
) -> list[tuple[float, int, dict[str, float]]]:
    return [(start + 60.0 * k, slot, watts) for k in range(minutes)]


async def store_readings(runtime: Runtime) -> None:
    """Three hours on T1: the check meter sends 3 kW, its customers 1.2 kW and 1.5 kW.

    In the third hour C2 falls silent after 20 minutes and the check meter drops to 2 kW;
    F1 has an energy-balance alert open, and C9 (on T2) a bypass.
    """
    phases = {"p1": 1000.0, "p2": 1000.0, "p3": 1000.0}
    rows = _minutes(0, phases, H0, 120)
    rows += _minutes(0, {"p1": 700.0, "p2": 700.0, "p3": 600.0}, H0 + 7200, 60)
    rows += _minutes(1, {"p1": 400.0, "p2": 400.0, "p3": 400.0}, H0, 180)
    rows += _minutes(2, {"p1": 1500.0}, H0, 140)
    rows += _minutes(3, {"p1": 9999.0}, H0, 180)  # another transformer's customer
    await runtime.series.write(make_batch(sorted(rows, key=lambda r: r[0])))
    await open_alert(runtime, "F1", AlertKind.ENERGY_BALANCE, H0)
    await open_alert(runtime, "C9", AlertKind.BYPASS, H0)


@pytest.fixture
async def room(tmp_path: Path) -> AsyncIterator[Room]:
    async with signed_in(tmp_path, METERS) as (client, tokens, runtime):
        await store_readings(runtime)
        yield client, tokens, runtime


async def _balance(client: httpx.AsyncClient, tokens: dict[str, str], query: str) -> httpx.Response:
    return await client.get(
        f"/api/transformers/T1/balance?{query}",
        headers={"Authorization": f"Bearer {tokens['vic']}"},
    )


async def test_the_check_meter_is_set_against_its_customers_by_hour(room: Room) -> None:
    client, tokens, _ = room
    reply = await _balance(client, tokens, f"hours=4&end={H0 + 3 * 3600 + 10:.0f}")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["start"], body["end"]) == ("2026-01-01T00:00:00Z", "2026-01-01T04:00:00Z")
    assert body["feeders"] == ["F1"]
    assert body["loss_allowance"] == pytest.approx(0.06)
    hours = body["items"]
    assert [h["start"][11:16] for h in hours] == ["00:00", "01:00", "02:00", "03:00"]
    first = hours[0]
    assert first["feeder_kwh"] == pytest.approx(3.0)
    assert first["customers_kwh"] == pytest.approx(2.7)
    assert first["gap_kwh"] == pytest.approx(0.3)
    assert first["allowance_kwh"] == pytest.approx(0.18)
    assert first["excess_kwh"] == pytest.approx(0.12)
    assert first["complete"] is True
    # C2 covered a third of the third hour: shown, but not complete.
    assert hours[2]["feeder_kwh"] == pytest.approx(2.0)
    assert hours[2]["complete"] is False
    # No readings at all in the fourth.
    assert hours[3]["feeder_kwh"] is None
    assert (hours[3]["customers_kwh"], hours[3]["complete"]) == (None, False)
    totals = body["totals"]
    assert totals["hours"] == 2
    assert totals["feeder_kwh"] == pytest.approx(6.0)
    assert totals["gap_kwh"] == pytest.approx(0.6)


async def test_its_meters_come_with_their_open_alerts(room: Room) -> None:
    client, tokens, runtime = room
    await runtime.alerts.clear("F1-energy_balance-1767225600", "olga", "meter swapped")
    again = await open_alert(runtime, "C1", AlertKind.CONSUMPTION_DROP, H0 + 3600)
    body = (await _balance(client, tokens, f"end={H0:.0f}")).json()
    meters = {m["id"]: m for m in body["meters"]}
    assert list(meters) == ["F1", "C1", "C2"]  # the check meter first; C9 is on T2
    assert meters["C1"]["customer_class"] == "shop"
    assert [a["id"] for a in meters["C1"]["open_alerts"]] == [again.id]
    assert meters["F1"]["open_alerts"] == []  # cleared
    assert len(body["items"]) == 48


async def test_the_allowance_is_the_energy_balance_detectors(room: Room) -> None:
    client, tokens, runtime = room
    runtime.settings.detectors["energy_balance"] = {"loss_allowance": 0.1, "gap_margin": 0.02}
    body = (await _balance(client, tokens, f"hours=1&end={H0:.0f}")).json()
    assert (body["loss_allowance"], body["gap_margin"]) == (0.1, 0.02)
    assert body["items"][0]["allowance_kwh"] == pytest.approx(0.3)
    assert body["items"][0]["excess_kwh"] == pytest.approx(0.0, abs=1e-9)


async def test_unknown_transformers_and_bad_windows_are_refused(room: Room) -> None:
    client, tokens, _ = room
    headers = {"Authorization": f"Bearer {tokens['vic']}"}
    assert (await client.get("/api/transformers/T404/balance", headers=headers)).status_code == 404
    for query in ("hours=0", "hours=10000", "end=yesterday"):
        assert (await _balance(client, tokens, query)).status_code == 422, query
    assert (await client.get("/api/transformers/T1/balance")).status_code == 401
