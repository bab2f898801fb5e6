"""Phase shift: a phase's power angle moves far from its own history (P far below V*I)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import numba
import numpy as np
import numpy.typing as npt
from pydantic import Field

from detectors.base import (
    I1_ROW,
    P1_ROW,
    Q1_ROW,
    V1_ROW,
    Conditions,
    Detector,
    DetectorConfig,
    IncidentFacts,
    format_duration,
    phase_label,
    register,
)
from detectors.context import BatchContext
from meterguard.model import AlertKind, MeterRegistry, ReadingBatch

#: A current turned round by more than this angle (cos 165 deg) is reversed, not shifted.
_REVERSED_COS = -0.966


class PhaseShiftConfig(DetectorConfig):
    """Options of the phase-shift detector."""

    clear_after_s: float = Field(
        default=3600.0,
        ge=0,
        description="Absence before clearing: the angle is judged only under load, so a "
        "quiet spell must not split one incident into several alerts.",
    )

    min_current_a: float = Field(
        default=0.05, gt=0, description="Below this phase current, A, the angle is not judged."
    )
    min_shift_deg: float = Field(
        default=15.0, gt=0, description="Angle change against the phase's history that fires."
    )
    min_pf: float = Field(
        default=0.4,
        gt=0,
        lt=1,
        description="Before the baseline is learned: a power factor below this fires.",
    )
    baseline_tau_s: float = Field(
        default=6 * 3600.0, gt=0, description="Time constant of the angle baseline, s."
    )
    warmup_s: float = Field(
        default=2 * 3600.0, ge=0, description="Data time of learning before the baseline counts."
    )


def _judge(
    values: npt.NDArray[np.float64],
    slot: npt.NDArray[np.int32],
    dt: npt.NDArray[np.float64],
    eligible: npt.NDArray[np.int8],
    ref_v: npt.NDArray[np.float64],
    base_cos: npt.NDArray[np.float64],
    base_sin: npt.NDArray[np.float64],
    learned: npt.NDArray[np.float64],
    limits: npt.NDArray[np.float64],
    holds: npt.NDArray[np.int8],
    phase: npt.NDArray[np.int8],
    loss: npt.NDArray[np.float64],
    score: npt.NDArray[np.float64],
    magnitude: npt.NDArray[np.float64],
) -> None:
    """Judge each phase's power angle against its learned angle, then learn; compiled.

    The angle is a unit vector (P, Q)/|S|; without Q, (PF, sqrt(1 - PF^2)) and only
    magnitudes compare. Rows are learned from one by one, in order (a circular mean with
    the time constant, plain averaging while young).
    """
    min_current, cos_min_shift, min_pf, tau, warmup = (
        limits[0], limits[1], limits[2], limits[3], limits[4],
    )  # fmt: skip
    v0, i0, p0, q0 = V1_ROW, I1_ROW, P1_ROW, Q1_ROW
    for r in range(slot.shape[0]):
        s = slot[r]
        if not eligible[s]:
            continue
        step_s = dt[r] if dt[r] > 0 else 60.0
        any_usable = False
        fired = False
        worst_cos = 2.0
        worst_k = 0
        lost = 0.0
        for k in range(3):
            volts = values[v0 + k, r]
            amps = values[i0 + k, r]
            p = values[p0 + k, r]
            q = values[q0 + k, r]
            if math.isnan(p) or math.isnan(amps) or math.isnan(volts):
                continue
            if amps < min_current or volts < 0.85 * ref_v[s]:
                continue
            apparent = volts * amps
            pf = p / apparent if apparent > 0 else 1.0
            norm = math.hypot(p, q) if not math.isnan(q) else 0.0
            has_q = norm > 0
            if has_q:
                cos_a = p / norm
                sin_a = q / norm
            else:
                cos_a = min(max(pf, -1.0), 1.0)
                sin_a = math.sqrt(1.0 - cos_a * cos_a)
            bc = base_cos[k, s]
            bs = base_sin[k, s]
            warm = learned[k, s] >= warmup and not math.isnan(bc)
            # Negative power is a shifted phase only when the angle says so (P and Q known,
            # a learned angle, and not turned round: that is the reversal detector's).
            if p < 0.0 and not (warm and has_q):
                continue
            any_usable = True
            fires = False
            if warm:
                bn = math.hypot(bc, bs)
                ubc = bc / bn if bn > 0 else 1.0
                ubs = bs / bn if bn > 0 else 0.0
                cos_shift = cos_a * ubc + sin_a * (ubs if has_q else abs(ubs))
                if p < 0.0 and cos_shift <= _REVERSED_COS:
                    continue
                if cos_shift <= cos_min_shift:
                    fires = True
                    if cos_shift < worst_cos:
                        worst_cos = cos_shift
                        worst_k = k
                    lost += max(apparent * ubc - p, 0.0)
            elif pf < min_pf and eligible[s] == 1:
                fires = True
                if pf < worst_cos:
                    worst_cos = pf
                    worst_k = k
                lost += max(apparent * 0.95 - p, 0.0)
            if fires:
                fired = True
            elif pf >= min_pf or eligible[s] == 2:
                # A clean phase: move its learned angle towards this reading.
                seen = learned[k, s]
                if math.isnan(bc):
                    base_cos[k, s] = cos_a
                    base_sin[k, s] = sin_a
                else:
                    w = max(1.0 - math.exp(-step_s / tau), step_s / (seen + step_s))
                    base_cos[k, s] = bc + w * (cos_a - bc)
                    base_sin[k, s] = bs + w * (sin_a - bs)
                learned[k, s] = seen + step_s
        if not any_usable:
            continue
        if not fired:
            holds[r] = 0
            continue
        degrees = math.degrees(math.acos(min(max(worst_cos, -1.0), 1.0)))
        holds[r] = 1
        phase[r] = worst_k + 1
        loss[r] = lost
        score[r] = min(max(0.4 + degrees / 60.0, 0.0), 1.0)
        magnitude[r] = degrees


_judge_compiled = cast(Callable[..., None], numba.njit(cache=True)(_judge))


@register
class PhaseShiftDetector(Detector):
    """Flags the phase-shifting method: a power angle far from the phase's usual one.

    The angle between a phase's voltage and current comes from P and Q (or P / V*I when
    Q is not measured). A phase turned round (about 180 degrees, or any negative power
    whose angle cannot be told) is the reversal detector's; a shift of, say, 120 degrees
    drives the power negative too and is flagged here as well.
    """

    name = "phase_shift"
    kind = AlertKind.PHASE_SHIFT
    unmetered = True
    config_model = PhaseShiftConfig
    needs = ("v1", "v2", "v3", "i1", "i2", "i3", "p1", "p2", "p3", "q1", "q2", "q3")
    requires = (("p1",), ("q1",), ("i1",))

    def __init__(self, config: DetectorConfig, registry: MeterRegistry) -> None:
        super().__init__(config, registry)
        assert isinstance(config, PhaseShiftConfig)
        self.cfg = config
        # Solar and storage move the net angle legitimately; feeder meters are not billed.
        # 2: judged against its own history only (a two-element meter's elements read
        # 30 degrees either side of the load's angle, so a low power factor is no sign).
        self._eligible = np.where(
            registry.flag_array(lambda m: m.role == "customer" and not m.generation),
            np.where(registry.flag_array(lambda m: m.service == "3p3w"), 2, 1),
            0,
        ).astype(np.int8)
        n = len(registry)
        self.base_cos = np.full((3, n), np.nan)
        self.base_sin = np.full((3, n), np.nan)
        self.learned_s = np.zeros((3, n))
        self._limits = np.array(
            [
                config.min_current_a,
                math.cos(math.radians(config.min_shift_deg)),
                config.min_pf,
                config.baseline_tau_s,
                config.warmup_s,
            ]
        )

    def step(self, batch: ReadingBatch, ctx: BatchContext) -> Conditions:
        """Judge each phase's angle against its baseline, then learn from clean rows."""
        out = Conditions.unknown(len(batch))
        _judge_compiled(
            np.ascontiguousarray(batch.values),
            batch.slot,
            ctx.dt,
            self._eligible,
            ctx.fleet.ref_v,
            self.base_cos,
            self.base_sin,
            self.learned_s,
            self._limits,
            *out.outputs(),
        )
        return out

    def evidence(self, slot: int) -> dict[str, Any]:
        """Give the usual power angle of each phase (None for a phase not learned)."""
        angles = np.degrees(np.arctan2(self.base_sin[:, slot], self.base_cos[:, slot]))
        # JSON has no NaN: PostgreSQL refuses it, so a phase never seen is null.
        return {"usual_angle_deg": [round(float(a), 1) if np.isfinite(a) else None for a in angles]}

    def summarise(self, facts: IncidentFacts) -> str:
        """Describe the shifted phase."""
        return (
            f"{phase_label(facts.phase)} power angle off its usual value by up to "
            f"{facts.peak_magnitude:.0f} deg (P far below V*I), for "
            f"{format_duration(facts.duration_s)} ({facts.kwh_lost:.1f} kWh est.)"
        )
