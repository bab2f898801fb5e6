"""Eastron register maps as the simulator serves them, written from the manufacturer's documents.

Kept apart from the collector's profiles on purpose: a simulator that borrowed the
collector's map could never catch a wrong address in it.
"""

from __future__ import annotations

import struct

#: SDM630 input registers (function 04), float32 high word first: quantity -> address.
SDM630 = {
    "v1": 0x00, "v2": 0x02, "v3": 0x04,
    "i1": 0x06, "i2": 0x08, "i3": 0x0A,
    "p1": 0x0C, "p2": 0x0E, "p3": 0x10,
    "q1": 0x18, "q2": 0x1A, "q3": 0x1C,
    "f": 0x46, "e_imp": 0x48, "e_exp": 0x4A,
    "in": 0xE0,
}  # fmt: skip

#: SDM120 input registers (function 04), float32 high word first.
SDM120 = {
    "v1": 0x00, "i1": 0x06, "p1": 0x0C, "q1": 0x18,
    "f": 0x46, "e_imp": 0x48, "e_exp": 0x4A,
}  # fmt: skip

#: Power-factor registers: derived by the meter from P and S, per phase.
SDM630_PF = {1: 0x1E, 2: 0x20, 3: 0x22}
SDM120_PF = {1: 0x1E}


def float32_words(value: float) -> tuple[int, int]:
    """Return the two registers of an IEEE-754 float32, high word first."""
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return high, low
