"""The photo repository: what is known of each photo a crew took; the bytes are kept apart."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from meterguard.stores.alertdb import tables as t
from meterguard.stores.alertdb.core import Database, new_key
from meterguard.stores.records import NewPhoto, Photo


def _photo(row: sa.RowMapping) -> Photo:
    data = dict(row)
    data.pop("client_key", None)
    return Photo.model_validate(data)


class SqlPhotoRepository:
    """Photo records in the alert database, each in the audit trail of its alert."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, photo: NewPhoto, *, client_key: str | None = None) -> Photo:
        """Record a photo (once per client key) and note it in the alert's audit trail."""
        key = new_key(client_key)
        values = {
            "sha256": photo.sha256,
            "media_type": photo.media_type,
            "bytes": photo.bytes,
            "width": photo.width,
            "height": photo.height,
            "work_order_id": photo.work_order_id,
            "alert_id": photo.alert_id,
            "uploaded_by": photo.uploaded_by,
            "uploaded_at": self._db.clock(),
            "latitude": photo.latitude,
            "longitude": photo.longitude,
            "taken_at": photo.taken_at,
            "file_name": photo.file_name,
        }

        async def write(conn: AsyncConnection) -> sa.RowMapping:
            row, new = await self._db.insert_once(conn, t.photos, key, values)
            if new:
                detail = {
                    "photo": row["id"],
                    "sha256": photo.sha256,
                    "work_order": photo.work_order_id,
                }
                await self._db.audit(conn, photo.uploaded_by, "photo", photo.alert_id, detail, key)
            return row

        return _photo(await self._db.run(write))

    async def get(self, photo_id: int) -> Photo | None:
        """Return one photo's record (None if there is none)."""
        rows = await self._db.fetch(sa.select(t.photos).where(t.photos.c.id == photo_id))
        return _photo(rows[0]) if rows else None

    async def of_alert(self, alert_id: str) -> list[Photo]:
        """Return the photos documenting an alert, oldest first."""
        p = t.photos
        rows = await self._db.fetch(sa.select(p).where(p.c.alert_id == alert_id).order_by(p.c.id))
        return [_photo(r) for r in rows]

    async def of_work_order(self, work_order_id: int) -> list[Photo]:
        """Return the photos taken for a work order, oldest first."""
        p = t.photos
        query = sa.select(p).where(p.c.work_order_id == work_order_id).order_by(p.c.id)
        return [_photo(r) for r in await self._db.fetch(query)]
