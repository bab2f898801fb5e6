"""The technical-loss terms of a transformer's energy balance, shared by detector and view.

The energy-balance detector allows a share of the check meter's energy as the line and
transformer losses no customer meter sees until it has learned the transformer's own; the
transformer view draws the same allowance, read from the same `[detectors.energy_balance]`
settings, so what the operator sees is what the detector judges by.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Technical losses allowed, as a share of the check meter's energy, until learned.
DEFAULT_LOSS_ALLOWANCE = 0.06
#: Until the gap is learned, the share of the load the detector takes as one spread of it.
DEFAULT_GAP_MARGIN = 0.015
#: The detector's name, and the settings table its options are in.
ENERGY_BALANCE = "energy_balance"


@dataclass(frozen=True, slots=True)
class LossTerms:
    """The allowance and margin, as shares of the check meter's energy."""

    loss_allowance: float = DEFAULT_LOSS_ALLOWANCE
    gap_margin: float = DEFAULT_GAP_MARGIN


def loss_terms(detectors: Mapping[str, Mapping[str, Any]]) -> LossTerms:
    """Return the terms the energy-balance detector is configured with (its defaults else)."""
    options = detectors.get(ENERGY_BALANCE, {})
    return LossTerms(
        float(options.get("loss_allowance", DEFAULT_LOSS_ALLOWANCE)),
        float(options.get("gap_margin", DEFAULT_GAP_MARGIN)),
    )
