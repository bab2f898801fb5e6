"""Meter profiles as data: register maps, request planning and decoding as pure functions."""

from __future__ import annotations

import struct
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from meterguard.errors import ConfigError, DecodeError
from meterguard.model import QUANTITIES, Meter

PROFILE_DIR = Path(__file__).parent
#: The shipped profile a device reads with when it names none, by the meter's service.
DEFAULT_PROFILES = {"1p2w": "sdm120", "3p4w": "sdm630", "3p3w": "sdm630"}
MAX_REGISTERS_PER_REQUEST = 125  # the Modbus limit for function 03/04

RegisterType = Literal["float32", "int16", "uint16", "int32", "uint32"]
WordOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]
_WIDTH = {"float32": 2, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2}
#: A compiled answer layout: struct, quantities in order, scales (None: all 1).
_Layout = tuple[struct.Struct, tuple[str, ...], tuple[float, ...] | None]
_STRUCT = {"float32": ">f", "int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I"}


class RegisterEntry(BaseModel):
    """One value in a register map."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    quantity: str = Field(description="The quantity it feeds (a readings.csv column).")
    address: int = Field(ge=0, le=65535, description="0-based register address.")
    function: Literal[3, 4] | None = Field(
        default=None, description="03 holding or 04 input registers; default: the profile's."
    )
    type: RegisterType = "float32"
    word_order: WordOrder = Field(
        default="ABCD", description="ABCD big-endian; CDAB word-swapped; BADC byte-swapped."
    )
    scale: float = Field(default=1.0, description="Multiply the raw value by this.")

    @field_validator("quantity")
    @classmethod
    def _known_quantity(cls, value: str) -> str:
        if value not in QUANTITIES:
            raise ValueError(f"unknown quantity {value!r}")
        return value

    @property
    def width(self) -> int:
        """Registers the value occupies."""
        return _WIDTH[self.type]


class Profile(BaseModel):
    """A meter model's register map."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    function: Literal[3, 4] = 4
    max_gap: int = Field(
        default=0, ge=0, description="Unused registers a request may span to save a request."
    )
    registers: tuple[RegisterEntry, ...]

    def function_of(self, entry: RegisterEntry) -> int:
        """Return the function code that reads an entry."""
        return entry.function or self.function


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One Modbus read covering one or more register entries."""

    function: int
    address: int
    count: int
    entries: tuple[RegisterEntry, ...]
    #: One struct for the whole answer when no entry needs reordering (decode's fast path).
    layout: _Layout | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layout", _compile(self))


def plan_requests(
    profile: Profile, max_gap: int | None = None, max_count: int = MAX_REGISTERS_PER_REQUEST
) -> list[ReadRequest]:
    """Merge neighbouring registers into as few reads as the gap and size limits allow."""
    gap = profile.max_gap if max_gap is None else max_gap
    requests: list[ReadRequest] = []
    for function in sorted({profile.function_of(e) for e in profile.registers}):
        entries = sorted(
            (e for e in profile.registers if profile.function_of(e) == function),
            key=lambda e: e.address,
        )
        group: list[RegisterEntry] = []
        start = end = 0
        for entry in entries:
            entry_end = entry.address + entry.width
            if group and entry.address - end <= gap and entry_end - start <= max_count:
                group.append(entry)
                end = max(end, entry_end)
                continue
            if group:
                requests.append(ReadRequest(function, start, end - start, tuple(group)))
            group, start, end = [entry], entry.address, entry_end
        if group:
            requests.append(ReadRequest(function, start, end - start, tuple(group)))
    return requests


def _to_bytes(words: Sequence[int], order: WordOrder) -> bytes:
    if order in ("CDAB", "DCBA"):
        words = words[::-1]
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    if order in ("BADC", "DCBA"):
        raw = bytes(b for pair in zip(raw[1::2], raw[0::2], strict=True) for b in pair)
    return raw


def decode_wire(request: ReadRequest, wire: bytes) -> dict[str, float]:
    """Decode an answer's register bytes as they came off the wire (big-endian words)."""
    if len(wire) != 2 * request.count:
        raise DecodeError(
            f"read {request.address:#06x}+{request.count}",
            f"expected {request.count} registers, got {len(wire) / 2:g}",
        )
    compiled = request.layout
    if compiled is None:
        return decode(request, list(struct.unpack(f">{request.count}H", wire)))
    layout, names, scales = compiled  # every entry big-endian: one unpack for the answer
    raw_values = layout.unpack(wire)
    if scales is None:
        return dict(zip(names, map(float, raw_values), strict=True))
    return {n: float(v) * k for n, v, k in zip(names, raw_values, scales, strict=True)}


def decode(request: ReadRequest, registers: Sequence[int]) -> dict[str, float]:
    """Turn the registers of one answer into quantities; a short answer is a DecodeError."""
    if len(registers) != request.count:
        raise DecodeError(
            f"read {request.address:#06x}+{request.count}",
            f"expected {request.count} registers, got {len(registers)}",
        )
    if request.layout is not None:
        return decode_wire(request, struct.pack(f">{len(registers)}H", *registers))
    out: dict[str, float] = {}
    wire = b""
    for entry in request.entries:
        offset = entry.address - request.address
        if entry.word_order == "ABCD":  # big-endian as on the wire: unpack in place
            if not wire:
                wire = struct.pack(f">{len(registers)}H", *registers)
            value = float(struct.unpack_from(_STRUCT[entry.type], wire, 2 * offset)[0])
        else:
            raw = _to_bytes(registers[offset : offset + entry.width], entry.word_order)
            value = float(struct.unpack(_STRUCT[entry.type], raw)[0])
        out[entry.quantity] = value * entry.scale if entry.scale != 1.0 else value
    return out


_CODE = {"float32": "f", "int16": "h", "uint16": "H", "int32": "i", "uint32": "I"}


def _compile(request: ReadRequest) -> _Layout | None:
    """Return one struct covering a request's entries, or None when they need reordering."""
    entries = sorted(request.entries, key=lambda e: e.address)
    if any(e.word_order != "ABCD" for e in entries):
        return None
    fmt, position = ">", request.address
    for entry in entries:
        if entry.address < position:
            return None  # overlapping entries: decode one by one
        fmt += f"{2 * (entry.address - position)}x{_CODE[entry.type]}"
        position = entry.address + entry.width
    fmt += f"{2 * (request.address + request.count - position)}x"
    scales = tuple(e.scale for e in entries)
    plain = all(k == 1.0 for k in scales)
    return struct.Struct(fmt), tuple(e.quantity for e in entries), None if plain else scales


def encode(value: float, type_: RegisterType = "float32", order: WordOrder = "ABCD") -> list[int]:
    """Turn a value into registers, the inverse of decode (simulators use it)."""
    if type_ == "float32":
        raw = struct.pack(">f", value)
    else:
        raw = struct.pack(_STRUCT[type_], round(value))
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    # Word reversal and byte swapping are each their own inverse, so applying the
    # decoder's reordering to big-endian words yields the wire order.
    wire = _to_bytes(words, order)
    return [int.from_bytes(wire[i : i + 2], "big") for i in range(0, len(wire), 2)]


def load_profile_file(path: Path) -> Profile:
    """Load a profile from a TOML file; a bad file is a ConfigError naming the key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return Profile.model_validate(data)
    except OSError as exc:
        raise ConfigError(str(path), [("(file)", str(exc))]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [("(file)", f"not valid TOML: {exc}")]) from exc
    except ValidationError as exc:
        problems = [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
        raise ConfigError(str(path), problems) from exc


@cache
def builtin_profile(name: str) -> Profile:
    """Return a shipped profile by name (sdm630, sdm120)."""
    path = PROFILE_DIR / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILE_DIR.glob("*.toml")))
        raise ConfigError("profiles", [(name, f"no such profile (shipped: {known})")])
    return load_profile_file(path)


@cache
def _profile_file(path: str) -> Profile:
    return load_profile_file(Path(path))


def resolve_profile(spec: str) -> Profile:
    """Return a profile by shipped name, or load it from a path ending in .toml."""
    if spec.endswith(".toml"):
        return _profile_file(spec)
    return builtin_profile(spec)


def default_profile(service: str) -> str:
    """Return the shipped profile that fits a service (1p2w: sdm120, else sdm630)."""
    return DEFAULT_PROFILES[service]


def profile_phases(profile: Profile) -> int | None:
    """Return the phases a profile reads per-phase quantities of (None: no such quantity)."""
    per_phase = [
        e.quantity for e in profile.registers if e.quantity[0] in "vipq" and e.quantity[-1] in "123"
    ]
    if not per_phase:
        return None
    return 3 if any(q[-1] in "23" for q in per_phase) else 1


def profile_misfit(profile: Profile, meter: Meter) -> str | None:
    """Say why a profile does not fit a meter's service, or None when it fits.

    A three-phase map on a single-phase meter reads registers the meter does not have,
    and such meters answer 0 for them: a phase current of 0, a neutral of 0, taken as
    measured. A single-phase map on a three-phase meter leaves two phases unread.
    """
    phases = profile_phases(profile)
    if phases is None or phases == meter.phases:
        return None
    kind = "three-phase" if phases == 3 else "single-phase"
    return (
        f"profile {profile.name!r} is a {kind} register map, but meter {meter.id!r} has a "
        f"{meter.service} service; use {default_profile(meter.service)!r} (the default for "
        f"{meter.service}) or a profile of its kind"
    )
