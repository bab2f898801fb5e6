from pathlib import Path

import pytest

from meterguard.cli import main
from meterguard.stores.alertdb.migrate import head_revision


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
