"""Counter-based random numbers: a pure function of (seed, stream, meter, slot).

Every random quantity of the fleet is drawn from a hash of who and when it concerns instead
of a stateful generator, so the value at a given time is the same whether the fleet is
computed in one go, in chunks of any size, or one live poll at a time.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntLike = int | npt.NDArray[np.int64] | npt.NDArray[np.intp]

_MASK = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_METER_MUL = np.uint64(0xD1B54A32D192ED03)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix_int(x: int) -> int:
    """Splitmix64 finaliser on a Python int (for keys)."""
    x &= _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _mix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Splitmix64 finaliser on an array; unsigned arithmetic wraps, as the hash wants."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
    out: npt.NDArray[np.uint64] = x ^ (x >> np.uint64(31))
    return out


def uniform(seed: int, stream: int, meter: IntLike, slot: IntLike) -> FloatArray:
    """Return uniform numbers in [0, 1), broadcasting meter against slot."""
    key = np.uint64(_mix_int(_mix_int(seed * 0x2545F4914F6CDD1D + 0x632BE5AB) + stream))
    m = np.asarray(meter, dtype=np.int64).astype(np.uint64)
    s = np.asarray(slot, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = _mix(_mix((s * _GOLDEN) ^ key) ^ (m * _METER_MUL))
    out: FloatArray = (h >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
    return out


def normal(seed: int, stream: int, meter: IntLike, slot: IntLike) -> FloatArray:
    """Return standard normal numbers (Box-Muller on two hashed uniforms)."""
    u1 = uniform(seed, stream, meter, slot)
    u2 = uniform(seed, stream + 7919, meter, slot)
    out: FloatArray = np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)
    return out


def smooth(seed: int, stream: int, meter: IntLike, t: FloatArray, period_s: float) -> FloatArray:
    """Return value noise in [-1, 1] that drifts smoothly over `period_s` seconds."""
    s = np.asarray(t, dtype=np.float64) / period_s
    k = np.floor(s)
    w = s - k
    w = w * w * (3.0 - 2.0 * w)
    ki = k.astype(np.int64)
    a = uniform(seed, stream, meter, ki)
    b = uniform(seed, stream, meter, ki + 1)
    out: FloatArray = 2.0 * (a + (b - a) * w) - 1.0
    return out
