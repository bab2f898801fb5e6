"""The demo fleets: reversed CTs show as negative phase power, solar exports only at noon."""

from __future__ import annotations

from simulators.fleet import live_demo_fleet

NOON = 12 * 3600.0 + 7 * 86400.0
MIDNIGHT = 7 * 86400.0


def test_live_demo_fleet_reverses_exactly_the_thieves_phases() -> None:
    fleet, truth = live_demo_fleet(24, seed=3, thieves=2, solar=3)
    assert len(truth) == 2
    thieves = {t.meter: t.phase for t in truth}
    roles = [m.meter.role for m in fleet]
    assert roles.index("feeder") == 24  # customers first, feeders after
    exporters = set()
    for t in (MIDNIGHT + 3600.0, NOON):
        for lm in fleet:
            values = lm.read(t)
            negative = {k for k in (1, 2, 3) if values.get(f"p{k}", 0.0) < 0}
            if lm.meter.id in thieves:
                assert negative == {thieves[lm.meter.id]}
            elif negative:
                assert lm.meter.generation
                assert t == NOON
                exporters.add(lm.meter.id)
    assert sum(m.meter.generation for m in fleet) == 3
    assert exporters  # midday sun makes at least one solar customer export
