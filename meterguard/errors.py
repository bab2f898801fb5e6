"""The exceptions meterguard raises; each carries the data a caller needs to report it."""

from __future__ import annotations


class MeterguardError(Exception):
    """Base of every error meterguard raises on purpose."""


class ConfigError(MeterguardError):
    """A configuration file or value is wrong; `problems` lists (key, message) pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {key}: {message}" for key, message in problems)
        super().__init__(f"invalid configuration in {source}:\n{lines}")


class BatchShapeError(MeterguardError, ValueError):
    """The arrays of a ReadingBatch do not agree in length or layout."""


class DecodeError(MeterguardError, ValueError):
    """A device answered with data that cannot be turned into readings."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class MeterCsvError(MeterguardError, ValueError):
    """A meters.csv row cannot be used; carries the file line number."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        super().__init__(f"{path}:{line}: {reason}")


class AlertNotFoundError(MeterguardError, KeyError):
    """No alert has the id asked for."""


class AlertAlreadyClearedError(MeterguardError):
    """The alert has ended already; it cannot be cleared again."""


class StoreUnavailableError(MeterguardError):
    """A store's server failed or answered nonsense; try again later (HTTP 503)."""

    def __init__(self, store: str, reason: str) -> None:
        self.store = store
        self.reason = reason
        super().__init__(f"{store} unavailable: {reason}")
