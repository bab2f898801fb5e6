"""User names on SQLite and PostgreSQL: unique whatever their case, log-in in any case."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from meterguard.stores.alertdb import AlertDatabase, UserExistsError
from meterguard.stores.alertdb.migrate import current_revision, head_revision, upgrade


async def test_a_name_in_another_case_is_taken(alert_db_url: str) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        await store.users.create_user("admin", "admin", password="admin-password")
        for other in ("ADMIN", "Admin", "admin"):
            with pytest.raises(UserExistsError, match="a user named 'admin' exists") as info:
                await store.users.create_user(other, "viewer")
            assert info.value.existing == "admin"
        # Nothing half-made was left behind by the refusals.
        async with store.engine.connect() as conn:
            users = (await conn.execute(sa.text("SELECT name FROM users"))).scalars().all()
            tokens = (await conn.execute(sa.text("SELECT count(*) FROM tokens"))).scalar_one()
        assert users == ["admin"]
        assert tokens == 1
        # The database refuses it too, not only the store's code.
        with pytest.raises(sa.exc.IntegrityError):
            async with store.engine.begin() as conn:
                await conn.execute(
                    sa.text(
                        "INSERT INTO users (name, role, created_at) VALUES ('ADMIN', 'admin', 0)"
                    )
                )
    finally:
        await store.close()


async def test_login_and_passwords_find_the_name_in_any_case(alert_db_url: str) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        await store.users.create_user("Olga", "operator", password="correct horse")
        for typed in ("olga", "OLGA", "Olga"):
            found = await store.users.login(typed, "correct horse", 60.0)
            assert found is not None
            assert found[0].name == "Olga"  # as created
        assert await store.users.login("olga", "wrong horse", 60.0) is None
        # Python folds the Kelvin sign to k; no user name is anything but ASCII.
        assert await store.users.login("\u212aolga", "correct horse", 60.0) is None
        await store.users.set_password("OLGA", "battery staple")
        assert await store.users.login("olga", "battery staple", 60.0) is not None
    finally:
        await store.close()


@pytest.mark.parametrize("name", ["", "with space", "x" * 101, "émile", "tab\t", "a/b"])
async def test_names_outside_the_allowed_letters_are_refused(alert_db_url: str, name: str) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        with pytest.raises(ValueError, match="user name"):
            await store.users.create_user(name, "viewer")
    finally:
        await store.close()


async def test_upgrade_renames_names_that_differ_only_in_case(alert_db_url: str) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        await upgrade(store.engine, "0005")
        async with store.engine.begin() as conn:
            for name in ("olga", "OLGA", "ivan", "Olga", "OLGA-2"):
                await conn.execute(
                    sa.text(
                        "INSERT INTO users (name, role, created_at) VALUES (:name, 'viewer', 0)"
                    ),
                    {"name": name},
                )
            await conn.execute(
                sa.text(
                    "INSERT INTO tokens (user_id, token_sha256, created_at)"
                    " SELECT id, 'digest-of-' || name, 0 FROM users"
                )
            )
        await upgrade(store.engine)
        assert await current_revision(store.engine) == head_revision() == "0007"
        async with store.engine.connect() as conn:
            names = (await conn.execute(sa.text("SELECT id, name FROM users ORDER BY id"))).all()
            tokens = (
                await conn.execute(
                    sa.text(
                        "SELECT u.name, k.token_sha256 FROM tokens k JOIN users u"
                        " ON u.id = k.user_id ORDER BY u.id"
                    )
                )
            ).all()
        # The oldest keeps its name; OLGA (id 2) cannot be OLGA-2, which another has.
        assert [n for _, n in names] == ["olga", "OLGA-2-2", "ivan", "Olga-4", "OLGA-2"]
        # Each keeps its tokens.
        assert [t for _, t in tokens] == [
            "digest-of-olga",
            "digest-of-OLGA",
            "digest-of-ivan",
            "digest-of-Olga",
            "digest-of-OLGA-2",
        ]
        audit = [e for e in await store.cases.audit() if e.action == "user_rename"]
        assert sorted((e.actor, e.detail["from"], e.detail["to"]) for e in audit) == [
            ("migration 0006", "OLGA", "OLGA-2-2"),
            ("migration 0006", "Olga", "Olga-4"),
        ]
        with pytest.raises(UserExistsError):
            await store.users.create_user("olga-4", "viewer")
    finally:
        await store.close()
