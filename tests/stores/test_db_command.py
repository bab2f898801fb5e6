import asyncio
import io
from pathlib import Path

import pytest

from meterguard.stores.alertdb import AlertDatabase
from meterguard.stores.alertdb.migrate import head_revision
from service.cli import main


def test_db_upgrade_then_current_then_add_user(
    alert_db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "current", "--url", alert_db_url]) == 0
    assert capsys.readouterr().out.startswith("empty")
    assert main(["db", "upgrade", "--url", alert_db_url]) == 0
    assert capsys.readouterr().out.strip() == f"alert database at revision {head_revision()}"
    assert main(["db", "upgrade", "--url", alert_db_url]) == 0  # a second run changes nothing
    assert main(["db", "current", "--url", alert_db_url]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(head_revision())
    assert main(["db", "add-user", "--url", alert_db_url, "--name", "olga"]) == 0
    assert "token: " in capsys.readouterr().out


def test_db_upgrade_uses_the_config_files_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "meterguard.toml"
    config.write_text('[storage]\ndata_dir = "state"\n', encoding="utf-8")
    assert main(["db", "upgrade", "--config", str(config)]) == 0
    assert (tmp_path / "state" / "alertdb.sqlite").exists()


def test_db_add_user_accepts_only_known_roles(
    alert_db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["db", "add-user", "--url", alert_db_url, "--name", "olga", "--role", "boss"])
    assert refused.value.code == 2
    assert "invalid choice: 'boss'" in capsys.readouterr().err
    assert main(["db", "add-user", "--url", alert_db_url, "--name", "ivan", "--role", "crew"]) == 0
    assert "user ivan (crew) token: " in capsys.readouterr().out


def test_db_add_user_with_a_password_from_stdin(
    alert_db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("long enough pass\n"))
    args = ["db", "add-user", "--url", alert_db_url, "--name", "olga", "--password-stdin"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "may log in with the password" in out
    assert "long enough pass" not in out

    async def login() -> bool:
        store = AlertDatabase(alert_db_url)
        try:
            return await store.users.login("olga", "long enough pass", 60) is not None
        finally:
            await store.close()

    assert asyncio.run(login())
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    args[5] = "ivan"
    assert main(args) == 2
    assert "at least 8" in capsys.readouterr().err
