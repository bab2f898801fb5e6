"""The source registry: each source type's name, settings model and factory.

A source's own module registers it (`register_source(...)` at the end of the module), as
detectors register themselves; `load_source_modules()` imports every module of this
package so that each can. The `[[sources]]` tables of the config are typed here, by the
model their `type` names, so a new protocol is one new module and its tests: no union of
settings, no isinstance chain to extend.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

import collector
from collector.base import Source
from meterguard.errors import ConfigError
from meterguard.model import MeterRegistry
from meterguard.settings import Settings, config_key
from meterguard.source_settings import SourceSettingsBase, entry_type
from meterguard.status import StatusBoard

S = TypeVar("S", bound=SourceSettingsBase)
#: A problem with a key relative to its [[sources]] entry, e.g. ("devices[2].profile", why).
Problem = tuple[str, str]

#: Modules of this package that are no source: shared code, or code a source module
#: imports only when such a source is built (dlms_gurux: GPL, an optional extra).
_NOT_SOURCE_MODULES = frozenset({"base", "registry", "mqtt_decoders", "dlms_gurux"})


@dataclass(frozen=True, slots=True)
class SourceType(Generic[S]):
    """A registered source type: how its settings look and how it is built from them."""

    name: str
    settings: type[S]
    build: Callable[[S, MeterRegistry, StatusBoard], Source]
    #: Further checks of settings against the fleet (e.g. register maps that fit each
    #: meter), as problems with keys relative to the entry; run at start-up and by --check.
    check: Callable[[S, MeterRegistry], list[Problem]] | None = None


SOURCE_TYPES: dict[str, SourceType[Any]] = {}


def register_source(
    name: str,
    settings: type[S],
    build: Callable[[S, MeterRegistry, StatusBoard], Source],
    check: Callable[[S, MeterRegistry], list[Problem]] | None = None,
) -> None:
    """Make a source type known by the `type` its config entries give.

    A second registration of a name is refused unless it is the same settings model again
    (a module imported twice under one name registers twice).
    """
    known = SOURCE_TYPES.get(name)
    if known is not None and known.settings.__qualname__ != settings.__qualname__:
        raise ValueError(
            f"source type {name!r} is registered twice "
            f"({known.settings.__qualname__} and {settings.__qualname__})"
        )
    SOURCE_TYPES[name] = SourceType(name, settings, build, check)


def load_source_modules() -> None:
    """Import every source module of the collector package so that each registers itself."""
    for info in pkgutil.iter_modules(collector.__path__):
        if info.ispkg or info.name.startswith("_") or info.name in _NOT_SOURCE_MODULES:
            continue
        importlib.import_module(f"collector.{info.name}")


def known_types() -> str:
    """Return the registered type names, for messages."""
    return ", ".join(sorted(SOURCE_TYPES))


def _typed(
    entry: SourceSettingsBase | Mapping[str, Any], settings: Settings
) -> tuple[SourceSettingsBase | None, list[Problem]]:
    """Validate one entry by its type's model; return it, or the problems of the entry."""
    kind = entry_type(entry)
    source_type = SOURCE_TYPES.get(kind)
    if source_type is None:
        return None, [("type", f"unknown source type {kind!r} (known: {known_types()})")]
    if isinstance(entry, SourceSettingsBase):
        return entry, []  # built in code: already validated, paths as given
    try:
        typed = source_type.settings.model_validate({"type": kind, **entry})
    except ValidationError as exc:
        return None, [(config_key(err["loc"]), err["msg"]) for err in exc.errors()]
    typed.resolve_paths(settings.config_dir)
    return typed, []


def source_problems(source: SourceSettingsBase, fleet: MeterRegistry) -> list[Problem]:
    """Return what is wrong with typed settings against the fleet, keys relative to the entry."""
    problems = [
        (source.meter_key(d), f"unknown meter {meter_id!r}")
        for d, meter_id in enumerate(source.meter_ids())
        if meter_id not in fleet
    ]
    source_type = SOURCE_TYPES[source.type]
    if source_type.check is not None and not problems:
        problems += source_type.check(source, fleet)
    return problems


def check_sources(
    sources: Sequence[SourceSettingsBase], fleet: MeterRegistry, origin: str = "the sources"
) -> None:
    """Refuse typed sources that name unknown meters or fail their type's own checks.

    Each problem names its key, e.g. `sources[0].devices[2].profile`.
    """
    load_source_modules()
    problems = [
        (f"sources[{s}].{key}", message)
        for s, source in enumerate(sources)
        for key, message in source_problems(source, fleet)
    ]
    if problems:
        raise ConfigError(origin, problems)


def typed_sources(settings: Settings, fleet: MeterRegistry) -> list[SourceSettingsBase]:
    """Type and check every [[sources]] entry; one ConfigError names every bad key.

    Entries built in code are taken as they are; tables from the file are validated by
    the model their `type` names, and their paths taken relative to the config file.
    """
    load_source_modules()
    problems: list[Problem] = []
    typed: list[SourceSettingsBase] = []
    for s, entry in enumerate(settings.sources):
        source, found = _typed(entry, settings)
        if source is not None:
            found = source_problems(source, fleet)
            typed.append(source)
        problems += [(f"sources[{s}].{key}", message) for key, message in found]
    if problems:
        raise ConfigError(settings.origin, problems)
    return typed


def build_source(settings: SourceSettingsBase, fleet: MeterRegistry, status: StatusBoard) -> Source:
    """Return the source typed settings describe."""
    load_source_modules()
    source_type = SOURCE_TYPES.get(settings.type)
    if source_type is None:
        raise ConfigError(
            settings.name,
            [("type", f"unknown source type {settings.type!r} (known: {known_types()})")],
        )
    return source_type.build(settings, fleet, status)


def build_sources(settings: Settings, fleet: MeterRegistry, status: StatusBoard) -> list[Source]:
    """Type, check and build every configured source (checks first: nothing half-built)."""
    return [build_source(s, fleet, status) for s in typed_sources(settings, fleet)]
