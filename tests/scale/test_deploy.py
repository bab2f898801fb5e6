"""deploy/scale: the config files load, and ingest and workers agree on the partitions."""

from __future__ import annotations

import shutil
from pathlib import Path

from meterguard.settings import load_settings

CONF = Path(__file__).parents[2] / "deploy" / "scale" / "conf"


def test_the_partitioned_configs_load_and_agree(tmp_path: Path) -> None:
    # The operator puts meters.csv beside them in /etc/meterguard.
    shutil.copytree(CONF, tmp_path, dirs_exist_ok=True)
    (tmp_path / "meters.csv").write_text("meter,service,nominal_v\nM1,1p2w,230\n")
    ingest = load_settings(tmp_path / "ingest.toml")
    worker = load_settings(tmp_path / "worker.toml")
    api = load_settings(tmp_path / "api.toml")
    assert ingest.scale.partitions == worker.scale.partitions
    assert ingest.scale.stream == worker.scale.stream
    assert ingest.leases.enabled
    assert ingest.storage.series_backend == "influxdb-v1"
    for settings in (ingest, worker, api):
        assert settings.storage.alert_db_url.startswith("postgresql+asyncpg://")


def test_the_compose_file_runs_every_part() -> None:
    compose = (CONF.parent / "compose.yaml").read_text()
    for part in ("nats:", "postgres:", "influxdb:", "ingest:", "worker:", "api:"):
        assert f"\n  {part}" in compose
    assert "meterguard worker" not in compose  # commands are lists
    assert '"worker", "-c", "/etc/meterguard/worker.toml"' in compose
