"""Photo records on both databases: kept with who/when/where, once per client key, migrated."""

import pytest

from meterguard.model import AlertKind
from meterguard.stores.alertdb import AlertDatabase
from meterguard.stores.alertdb.migrate import current_revision, upgrade
from meterguard.stores.records import NewPhoto
from tests.clock import ManualClock
from tests.stores.test_alertdb import _downgrade, _open

DIGEST = "ab" * 32


def _photo(work_order_id: int, **changes: object) -> NewPhoto:
    fields: dict[str, object] = dict(
        sha256=DIGEST,
        media_type="image/jpeg",
        bytes=1234,
        width=4000,
        height=3000,
        work_order_id=work_order_id,
        alert_id="A1",
        uploaded_by="carl",
        latitude=31.23,
        longitude=121.47,
        taken_at="2026-01-01T09:30:05+08:00",
        file_name="seal.jpg",
    )
    fields.update(changes)
    return NewPhoto(**fields)  # type: ignore[arg-type]


async def _case(store: AlertDatabase) -> int:
    await store.alerts.apply(_open(kind=AlertKind.BYPASS))
    return (await store.cases.create_work_order(["A1"], "olga", "look", "carl")).id


async def test_a_photo_is_kept_with_who_when_where_and_audited(alert_db_url: str) -> None:
    store = AlertDatabase(alert_db_url, clock=ManualClock(1_767_225_900.0))
    try:
        order = await _case(store)
        photo = await store.photos.add(_photo(order))
        assert photo.uploaded_at == 1_767_225_900.0
        assert (photo.latitude, photo.longitude, photo.taken_at) == (
            31.23,
            121.47,
            "2026-01-01T09:30:05+08:00",
        )
        assert await store.photos.get(photo.id) == photo
        assert await store.photos.of_alert("A1") == [photo]
        assert await store.photos.of_work_order(order) == [photo]
        assert await store.photos.of_alert("A2") == []
        assert await store.photos.get(photo.id + 1) is None
        audit = await store.cases.audit(alert_id="A1")
        assert (audit[0].action, audit[0].detail["sha256"]) == ("photo", DIGEST)
    finally:
        await store.close()


async def test_a_resent_upload_is_recorded_once(alert_db_url: str) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        order = await _case(store)
        first = await store.photos.add(_photo(order), client_key="k1")
        again = await store.photos.add(_photo(order), client_key="k1")
        assert again == first
        assert len(await store.photos.of_work_order(order)) == 1
        assert [e.action for e in await store.cases.audit(alert_id="A1")].count("photo") == 1
    finally:
        await store.close()


async def test_a_photo_needs_its_work_order_and_alert(alert_db_url: str) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        order = await _case(store)
        with pytest.raises(Exception, match=r"(?i)foreign key"):
            await store.photos.add(_photo(order + 1))
    finally:
        await store.close()


async def test_0009_adds_the_photos_table_and_comes_down_again(alert_db_url: str) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        order = await _case(store)
        await store.photos.add(_photo(order))
        await _downgrade(store.engine, "0008")
        assert await current_revision(store.engine) == "0008"
        await upgrade(store.engine)
        assert await current_revision(store.engine) == "0009"
        assert await store.photos.of_alert("A1") == []
        assert len(await store.cases.work_orders()) == 1
    finally:
        await store.close()
