"""Eastron register maps as the simulator serves them, written from the manufacturer's documents.

Kept apart from the collector's profiles on purpose: a simulator that borrowed the
collector's map could never catch a wrong address in it. Addresses are 0-based input
registers (function 04); every value is an IEEE-754 float32, high word first.
"""

from __future__ import annotations

import math
import struct

#: SDM630 measured quantities: quantity -> address.
SDM630 = {
    "v1": 0x00, "v2": 0x02, "v3": 0x04,
    "i1": 0x06, "i2": 0x08, "i3": 0x0A,
    "p1": 0x0C, "p2": 0x0E, "p3": 0x10,
    "q1": 0x18, "q2": 0x1A, "q3": 0x1C,
    "f": 0x46, "e_imp": 0x48, "e_exp": 0x4A,
    "in": 0xE0,
}  # fmt: skip

#: SDM120 measured quantities.
SDM120 = {
    "v1": 0x00, "i1": 0x06, "p1": 0x0C, "q1": 0x18,
    "f": 0x46, "e_imp": 0x48, "e_exp": 0x4A,
}  # fmt: skip

#: Power-factor registers: derived by the meter from P and S, per phase.
SDM630_PF = {1: 0x1E, 2: 0x20, 3: 0x22}
SDM120_PF = {1: 0x1E}
#: Apparent power (VA) per phase.
SDM630_VA = {1: 0x12, 2: 0x14, 3: 0x16}
SDM120_VA = {1: 0x12}
#: SDM630 system totals: total active power (W), total VA, total var, total kWh.
SDM630_TOTAL_W, SDM630_TOTAL_VA, SDM630_TOTAL_VAR = 0x34, 0x38, 0x3C
#: Total kWh (import + export), both models.
TOTAL_KWH = 0x156

#: Registers a simulated device answers for (covers every address above).
REGISTER_SPAN = 0x160


def float32_words(value: float) -> tuple[int, int]:
    """Return the two registers of an IEEE-754 float32, high word first."""
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return high, low


def register_image(values: dict[str, float], phases: int) -> dict[int, float]:
    """Return address -> float value of every register a meter model serves for a reading."""
    three = phases == 3
    # A quantity the meter does not measure (a 3p3w meter's second element) reads zero.
    wanted = (*SDM630, *SDM120, "q1", "q2", "q3", "e_imp", "e_exp")
    values = {q: values.get(q, 0.0) for q in wanted}
    image = {addr: values[q] for q, addr in (SDM630 if three else SDM120).items()}
    for k in range(1, phases + 1):
        apparent = values[f"v{k}"] * values[f"i{k}"]
        pf = values[f"p{k}"] / apparent if apparent else 1.0
        image[(SDM630_PF if three else SDM120_PF)[k]] = pf
        image[(SDM630_VA if three else SDM120_VA)[k]] = apparent
    if three:
        image[SDM630_TOTAL_W] = values["p1"] + values["p2"] + values["p3"]
        image[SDM630_TOTAL_VAR] = values["q1"] + values["q2"] + values["q3"]
        image[SDM630_TOTAL_VA] = math.fsum(image[a] for a in SDM630_VA.values())
    image[TOTAL_KWH] = values["e_imp"] + values["e_exp"]
    return image


def read_registers(image: dict[int, float], address: int, count: int) -> list[int]:
    """Return `count` registers from `address`: float32 pairs where mapped, zero elsewhere."""
    words = [0] * count
    end = address + count
    for addr, value in image.items():
        if address <= addr and addr + 2 <= end:
            words[addr - address], words[addr - address + 1] = float32_words(value)
    return words
