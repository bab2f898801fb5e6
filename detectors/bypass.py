"""Bypass: current that passes a metering element unseen, shown by the neutral current."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, cast

import numba
import numpy as np
import numpy.typing as npt
from pydantic import Field

from detectors.base import (
    I1_ROW,
    IN_ROW,
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

_DEFAULT_PF = 0.95
#: Export on a phase beyond this, W, at a customer without generation: a reversal.
_REVERSED_W = 30.0
#: Time constant of each phase's usual current (which phase fell), s.
_USUAL_TAU_S = 3600.0


class BypassConfig(DetectorConfig):
    """Options of the bypass detector."""

    clear_after_s: float = Field(
        default=10_800.0,
        ge=0,
        description="Absence before clearing: a bypass shows only while enough load flows, "
        "so a quiet spell (a household's night read every 15 minutes) must not split one "
        "incident into several alerts, nor drop a pending one before its next sign.",
    )

    min_current_a: float = Field(
        default=0.2, gt=0, description="Below this current, A, a mismatch cannot be told."
    )
    min_mismatch_ratio: float = Field(
        default=0.08,
        gt=0,
        lt=1,
        description="Neutral/phase mismatch, as a share of the load current, that counts.",
    )
    min_mismatch_a: float = Field(
        default=0.1, gt=0, description="And at least this many amperes (measurement noise)."
    )
    weak_mismatch_ratio: float = Field(
        default=0.03,
        gt=0,
        lt=1,
        description="A smaller mismatch, as a share of the load current, that counts once it "
        "has gathered weak_persist_s of evidence (a partly bypassed phase whose lost current "
        "lies across the neutral's phasor changes its magnitude little).",
    )
    weak_persist_s: float = Field(
        default=3600.0,
        gt=0,
        description="Data time of mismatch evidence a weak mismatch needs before it counts; "
        "a clean reading takes back four times its own interval.",
    )


def _judge(  # one pass over the rows, every figure at once
    values: npt.NDArray[np.float64],
    ts: npt.NDArray[np.float64],
    slot: npt.NDArray[np.int32],
    dt: npt.NDArray[np.float64],
    eligible: npt.NDArray[np.bool_],
    three: npt.NDArray[np.bool_],
    generation: npt.NDArray[np.bool_],
    ref_v: npt.NDArray[np.float64],
    usual: npt.NDArray[np.float64],
    evidence: npt.NDArray[np.float64],
    limits: npt.NDArray[np.float64],
    holds: npt.NDArray[np.int8],
    phase: npt.NDArray[np.int8],
    loss: npt.NDArray[np.float64],
    score: npt.NDArray[np.float64],
    magnitude: npt.NDArray[np.float64],
    onset: npt.NDArray[np.float64],
) -> None:
    """Judge every row and follow each phase's usual current; compiled, one pass.

    Single-phase: the neutral carries the phase current. Three-phase four-wire: the
    neutral carries the phasor sum of the phase currents; a phase's current lags its
    voltage by the angle of (P, Q), so its direction is (P - jQ)/|S| turned by the phase's
    supply angle (0, -120, +120 degrees).

    Without Q (Shelly Pro 3EM sends none, Tasmota's has no sign) the angle's size comes
    from P/(V·I) and its sign is unknown: every choice of signs is judged, the row holds
    only if each of them shows a mismatch, and a phase is named only if every choice
    under which one phase's lost current explains the neutral points at the same one.

    A mismatch between weak_ratio and min_ratio of the load is evidence, not a verdict:
    `evidence` keeps per meter the data time of mismatch gathered (a clean reading takes
    back four times its interval), when it began and when it was last added to; such a
    row holds once weak_persist of it has gathered, its onset where the evidence began,
    and says nothing before.
    """
    min_current, min_ratio, min_amps, reversed_w, tau, weak_ratio, weak_persist = (
        limits[0], limits[1], limits[2], limits[3], limits[4], limits[5], limits[6],
    )  # fmt: skip
    v0, i0, n_col, p0, q0 = V1_ROW, I1_ROW, IN_ROW, P1_ROW, Q1_ROW
    cos_t = (1.0, -0.5, -0.5)
    sin_t = (0.0, -0.8660254037844386, 0.8660254037844386)
    ur = np.empty(3)
    ui = np.empty(3)
    # Per phase: the current's direction against its own voltage, (dr, -di_size) when the
    # sign of Q is unknown.
    dr = np.empty(3)
    di = np.empty(3)
    for r in range(slot.shape[0]):
        s = slot[r]
        neutral = values[n_col, r]
        if not eligible[s] or math.isnan(neutral):
            continue
        if three[s]:
            total = 0.0
            counted = 0
            measured = True
            reversed_phase = False
            # Bits of the phases whose angle sign is unknown, and of those carrying no
            # measured current (their angle is unknown altogether).
            unsigned = 0
            undirected = 0
            for k in range(3):
                p = values[p0 + k, r]
                q = values[q0 + k, r]
                amps = values[i0 + k, r]
                if math.isnan(p):
                    measured = False
                    p = 0.0
                if p < -reversed_w and not generation[s]:
                    reversed_phase = True
                if not math.isnan(amps):
                    total += amps
                    counted += 1
                if not math.isnan(q):
                    ap = math.hypot(p, q)
                    dr[k] = p / ap if ap > 0 else 1.0
                    di[k] = -q / ap if ap > 0 else 0.0
                    continue
                volts = values[v0 + k, r]
                if math.isnan(volts) or volts <= 0:
                    volts = ref_v[s]
                if math.isnan(amps) or amps <= 0 or not volts > 0:
                    dr[k] = 1.0  # no current: it adds nothing to the metered sum
                    di[k] = 0.0
                    undirected |= 1 << k
                    continue
                c = min(max(p / (volts * amps), -1.0), 1.0)
                dr[k] = c
                di[k] = -math.sqrt(1.0 - c * c)
                if di[k] < -1e-3:
                    unsigned |= 1 << k
            if counted == 0 or not measured or reversed_phase:
                continue
            load = max(total / counted, neutral / 3.0)
            if load < min_current:
                continue
            clean = False
            weak = False
            ratio = np.inf
            mismatch = np.inf
            named = -2  # -2: no choice judged yet, -1: the choices disagree
            unmetered = np.inf
            for signs in range(8):
                if signs & ~unsigned:
                    continue  # only phases without Q have a sign to choose
                cr = 0.0
                ci = 0.0
                for k in range(3):
                    turn = di[k] if not signs >> k & 1 else -di[k]
                    ur[k] = dr[k] * cos_t[k] - turn * sin_t[k]
                    ui[k] = dr[k] * sin_t[k] + turn * cos_t[k]
                    amps = values[i0 + k, r]
                    if not math.isnan(amps):
                        cr += amps * ur[k]
                        ci += amps * ui[k]
                this_mismatch = abs(neutral - math.hypot(cr, ci))
                if this_mismatch / load < weak_ratio or this_mismatch < min_amps:
                    clean = True  # one reading of the angles explains the neutral
                    break
                if this_mismatch / load < min_ratio:
                    weak = True  # one reading of the angles leaves only a weak mismatch
                if this_mismatch < mismatch:
                    mismatch = this_mismatch
                    ratio = mismatch / load
                # Per phase, the least extra current along its direction that explains
                # the measured neutral; the phase whose current fell most against its
                # usual level is the one (the neutral's magnitude alone cannot say).
                best_k = -1
                best_fall = np.inf
                best_delta = np.inf
                least_k = -1
                least_delta = np.inf
                for k in range(3):
                    along_r = cr * ur[k] + ci * ui[k]
                    along_i = ci * ur[k] - cr * ui[k]
                    disc = neutral * neutral - along_i * along_i
                    if disc < 0:
                        # Off this phase's line by more than the measurement's noise:
                        # no extra current of this phase alone explains the neutral. A
                        # phase that shows no current at all (wholly shunted) has no line
                        # to be off: its lost current's angle is unknown.
                        if abs(along_i) - neutral > min_amps and not undirected >> k & 1:
                            continue
                        disc = 0.0
                    root = math.sqrt(disc)
                    delta = -along_r - root
                    if delta < 0:
                        delta = -along_r + root
                    if delta < 0:
                        continue
                    if delta < least_delta:
                        least_delta = delta
                        least_k = k
                    amps = values[i0 + k, r]
                    if usual[k, s] > 0 and not math.isnan(amps):
                        fall = amps / usual[k, s]
                        if fall < best_fall:
                            best_fall = fall
                            best_k = k
                            best_delta = delta
                if best_k < 0:  # no usual level yet: the least extra current, if any
                    best_k = least_k
                    best_delta = least_delta
                # Signs under which no single phase explains the neutral rule themselves
                # out as the reading of a bypass; the others must agree on the phase.
                if best_k >= 0:
                    if named == -2:
                        named = best_k
                    elif named != best_k:
                        named = -1
                unmetered = min(unmetered, best_delta if best_delta < np.inf else this_mismatch)
            if clean:
                holds[r] = 0
                _drain(evidence, s, dt[r])
                # A clean row: follow the usual current of each phase.
                w = 1.0 - math.exp(-(dt[r] if dt[r] > 0 else 60.0) / tau)
                for k in range(3):
                    amps = values[i0 + k, r]
                    if not math.isnan(amps):
                        old = usual[k, s]
                        usual[k, s] = amps if old <= 0 else old + w * (amps - old)
                continue
            best_k = max(named, -1)
        else:
            amps = values[i0, r]
            if math.isnan(amps):
                continue
            load = max(neutral, amps)
            if load < min_current:
                continue
            mismatch = abs(neutral - amps)
            ratio = mismatch / load
            if ratio < weak_ratio or mismatch < min_amps:
                holds[r] = 0
                _drain(evidence, s, dt[r])
                continue
            weak = ratio < min_ratio
            best_k = 0
            unmetered = mismatch
        if not _gather(evidence, s, ts[r], dt[r], weak_persist) and weak:
            continue  # too little evidence yet: the row says nothing
        onset[r] = evidence[1, s]
        if best_k >= 0:
            volts = values[v0 + best_k, r]
            if math.isnan(volts) or volts <= 0:
                volts = ref_v[s]
            amps = values[i0 + best_k, r]
            pf = abs(values[p0 + best_k, r]) / (volts * amps) if amps > 0 else _DEFAULT_PF
        else:  # the signs of the angles leave the phase open: name none
            volts = ref_v[s]
            pf = _DEFAULT_PF
        if math.isnan(pf) or pf <= 0.05 or pf > 1.05:
            pf = _DEFAULT_PF
        holds[r] = 1
        phase[r] = best_k + 1
        loss[r] = unmetered * volts * pf
        score[r] = min(max(0.5 + 0.5 * (ratio - min_ratio) / 0.5, 0.0), 1.0)
        magnitude[r] = ratio


_judge_compiled = cast(Callable[..., None], numba.njit(cache=True)(_judge))


@numba.njit(cache=True)
def _drain(evidence: npt.NDArray[np.float64], s: int, dt: float) -> None:
    """Take back four times a clean reading's interval from a meter's evidence."""
    step = dt if dt > 0 else 60.0
    evidence[0, s] = max(evidence[0, s] - 4.0 * step, 0.0)


@numba.njit(cache=True)
def _gather(evidence: npt.NDArray[np.float64], s: int, t: float, dt: float, persist: float) -> bool:
    """Add a mismatching reading's interval to a meter's evidence; True once it is enough.

    Evidence left unadded for longer than `persist` (a quiet spell, a gap) starts afresh:
    it belongs to another incident, if any.
    """
    step = dt if dt > 0 else 60.0
    if evidence[0, s] <= 0.0 or t - evidence[2, s] > persist:
        evidence[0, s] = 0.0
        evidence[1, s] = t
    evidence[0, s] += step
    evidence[2, s] = t
    return bool(evidence[0, s] >= persist)


@register
class BypassDetector(Detector):
    """Compares the measured neutral current with the phase current(s) the meter registers.

    A meter that does not measure its neutral (blank `in`) cannot be judged here: the
    imbalance detector judges it against its own history.
    """

    name = "bypass"
    kind = AlertKind.BYPASS
    unmetered = True
    config_model = BypassConfig
    needs = ("i1", "i2", "i3", "in", "p1", "p2", "p3", "q1", "q2", "q3", "v1", "v2", "v3")
    requires = (("in",), ("i1",))

    def __init__(self, config: DetectorConfig, registry: MeterRegistry) -> None:
        super().__init__(config, registry)
        assert isinstance(config, BypassConfig)
        self.cfg = config
        self._eligible = registry.flag_array(lambda m: m.role == "customer" and m.service != "3p3w")
        self._three = registry.flag_array(lambda m: m.phases == 3)
        self._generation = registry.flag_array(lambda m: m.generation)
        self.usual_a = np.zeros((3, len(registry)))
        # Per meter: mismatch evidence (s), when it began, when it was last added to.
        self.evidence_s = np.zeros((3, len(registry)))
        self._limits = np.array(
            [
                config.min_current_a,
                config.min_mismatch_ratio,
                config.min_mismatch_a,
                _REVERSED_W,
                _USUAL_TAU_S,
                config.weak_mismatch_ratio,
                config.weak_persist_s,
            ]
        )

    def step(self, batch: ReadingBatch, ctx: BatchContext) -> Conditions:
        """Mark rows whose neutral current disagrees with the metered phase currents."""
        out = Conditions.unknown(len(batch))
        onset = np.full(len(batch), np.nan)
        _judge_compiled(
            np.ascontiguousarray(batch.values),
            batch.ts,
            batch.slot,
            ctx.dt,
            self._eligible,
            self._three,
            self._generation,
            ctx.fleet.ref_v,
            self.usual_a,
            self.evidence_s,
            self._limits,
            *out.outputs(),
            onset,
        )
        return dataclasses.replace(out, onset=onset)

    def evidence(self, slot: int) -> dict[str, Any]:
        """Give each phase's usual current before the mismatch."""
        return {"usual_phase_current_a": [round(float(a), 2) for a in self.usual_a[:, slot]]}

    def summarise(self, facts: IncidentFacts) -> str:
        """Describe the unmetered share and how long it has gone on."""
        return (
            f"{phase_label(facts.phase)}: neutral current shows up to "
            f"{facts.peak_magnitude:.0%} of the load current unmetered, for "
            f"{format_duration(facts.duration_s)} ({facts.kwh_lost:.1f} kWh est.)"
        )
