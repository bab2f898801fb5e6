"""What the settings of every source share, and a [[sources]] entry before it is typed.

Each source type brings its own settings model (a subclass of SourceSettingsBase) and
registers it with the source registry in `collector/`; the settings file keeps each
`[[sources]]` table as written, and the registry validates it by its `type` when the
sources are built (or checked by `meterguard run --check`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator

#: The type of a [[sources]] entry without `type` (the first kind meterguard read).
DEFAULT_SOURCE_TYPE = "modbus"


class SourceSettingsBase(BaseModel):
    """Settings every source has: the type that picks the code reading it, and a name."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="The source type (modbus, mqtt, dlms, ...).")
    name: str = Field(min_length=1, description="Name of the source, used in logs and status.")

    def meter_ids(self) -> list[str]:
        """Return the meters these settings name (each must be in the fleet)."""
        return []

    def meter_key(self, index: int) -> str:
        """Return where the `index`-th of meter_ids() is set, relative to the entry."""
        return f"devices[{index}].meter"

    def lease_key(self) -> str | None:
        """Return what only one process may poll at once (None: the source needs no lease).

        Polled sources name their gateway, so that processes sharing the alert database
        with `[leases]` on poll each exactly once; subscriptions need none.
        """
        return None

    def resolve_paths(self, base: Path) -> None:
        """Make file paths absolute against the config file's folder (none by default)."""


def _table_or_settings(value: object) -> SourceSettingsBase | dict[str, Any]:
    if isinstance(value, SourceSettingsBase):
        return value
    if isinstance(value, Mapping):
        return {str(key): item for key, item in value.items()}
    raise ValueError("a source must be a table with a type and a name")


#: A [[sources]] entry: settings built in code, or the table as written in the file (typed
#: by the source registry when the sources are built).
SourceTable = Annotated[SourceSettingsBase | dict[str, Any], PlainValidator(_table_or_settings)]


def entry_type(entry: SourceSettingsBase | Mapping[str, Any]) -> str:
    """Return the source type an entry asks for (`modbus` when it names none)."""
    if isinstance(entry, SourceSettingsBase):
        return entry.type
    return str(entry.get("type", DEFAULT_SOURCE_TYPE))


def entry_name(entry: SourceSettingsBase | Mapping[str, Any]) -> str | None:
    """Return an entry's name, or None while it has none that is text."""
    name = entry.name if isinstance(entry, SourceSettingsBase) else entry.get("name")
    return name if isinstance(name, str) else None
