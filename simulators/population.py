"""The fleet's installed base: transformers, their feeder meters and customers, as arrays."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import numpy.typing as npt

from meterguard.model import Meter
from simulators.calendars import HolidayCalendar

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

RESIDENTIAL, COMMERCIAL, INDUSTRIAL = 0, 1, 2
CLASS_NAMES = ("residential", "commercial", "industrial")
#: Angle of each transformer phase voltage, radians (L1 0°, L2 -120°, L3 +120°).
PHASE_ANGLES = np.array([0.0, -2.0 * math.pi / 3.0, 2.0 * math.pi / 3.0])
#: Customers per distribution transformer in a generated fleet.
CUSTOMERS_PER_TRANSFORMER = 25


@dataclass(frozen=True, slots=True)
class FleetOptions:
    """How a fleet is drawn: sizes and shares of each kind of customer."""

    customers: int = 150
    seed: int = 1
    nominal_v: float = 230.0
    customers_per_transformer: int = CUSTOMERS_PER_TRANSFORMER
    commercial_share: float = 0.2
    industrial_share: float = 0.08
    #: Share of residential customers on a three-phase service.
    residential_three_phase_share: float = 0.2
    solar_share: float = 0.1
    #: Share of three-phase whole-current meters that measure the neutral current.
    neutral_measured_share_3p: float = 0.5
    #: Share of single-phase meters with a neutral current element (anti-tamper meters).
    neutral_measured_share_1p: float = 0.8
    #: Share of customer meters read less often than every step (e.g. every 15 minutes).
    slow_share: float = 0.0
    slow_interval_s: float = 900.0
    #: Meter clocks are off by up to this many seconds either way (each meter its own).
    clock_skew_s: float = 0.0
    #: Whether transformers have a feeder (check) meter in the output; without them,
    #: thefts only a feeder meter could reveal are left out of the run.
    feeders: bool = True
    #: Public holiday calendar: ISO country code (or "DE-BY"), optional region, extra dates.
    country: str | None = None
    region: str | None = None
    extra_holidays: tuple[date, ...] = ()
    #: Share of residential customers away on vacation (2-10 days) at some time in a run.
    vacation_share: float = 0.05
    #: Share of residential and commercial customers that heat electrically.
    heating_share: float = 0.15

    def calendar(self) -> HolidayCalendar:
        """Return the checked holiday calendar of these options."""
        return HolidayCalendar.of(self.country, self.region, self.extra_holidays)


@dataclass
class Population:
    """Per-customer and per-transformer parameters; index i is customer i everywhere."""

    seed: int
    customers: list[Meter]
    feeders: list[Meter]
    tx: IntArray
    three_phase: BoolArray
    #: Transformer phase (0..2) each of the meter's three element slots is wired to.
    phase_of: IntArray
    #: Which element slots exist: all three for 3p4w, the first only for 1p2w.
    active: BoolArray
    cls: IntArray
    #: Load scale, kW: typical daily peak of the customer's consumption.
    size_kw: FloatArray
    shares: FloatArray
    pf: FloatArray
    solar_kwp: FloatArray
    cable_r: FloatArray
    cable_x: FloatArray
    #: Rated CT primary current, A; NaN for whole-current meters.
    ct_primary: FloatArray
    neutral_measured: BoolArray
    e_imp0: FloatArray
    e_exp0: FloatArray
    #: Per-customer schedule detail: commercial opening hour / industrial shift count.
    open_h: FloatArray
    close_h: FloatArray
    shifts: IntArray
    tx_nominal_v: FloatArray
    tx_backbone_r: FloatArray
    tx_backbone_x: FloatArray
    feeder_e_imp0: FloatArray
    #: Seconds between two readings the meter reports (0: every step of the run).
    report_every_s: FloatArray
    #: How far each meter's clock is off, s: customers, then feeder meters.
    clock_offset_s: FloatArray
    feeder_clock_offset_s: FloatArray
    #: Electric heating, kW per kelvin below the set-point (0: heats otherwise).
    heating_kw_per_k: FloatArray
    #: Vacation of each customer, epoch s (NaN: at home); set by the run (FleetModel).
    away_start: FloatArray
    away_end: FloatArray
    #: Public holidays, kept like a Sunday by every customer.
    calendar: HolidayCalendar = field(default_factory=HolidayCalendar)
    #: Whether the feeder meters appear in meters.csv and readings.csv.
    feeder_meters: bool = True
    #: Customer index by meter id, filled on first use.
    by_id: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        """Number of customer meters."""
        return len(self.customers)

    @property
    def n_tx(self) -> int:
        """Number of transformers (and feeder meters)."""
        return len(self.feeders)

    def index(self, meter_id: str) -> int:
        """Return the customer index of a meter id (KeyError when unknown)."""
        if not self.by_id:
            self.by_id.update({m.id: i for i, m in enumerate(self.customers)})
        return self.by_id[meter_id]

    def all_meters(self) -> list[Meter]:
        """Return every meter in meters.csv order: each feeder (if metered), its customers."""
        out: list[Meter] = []
        for t, feeder in enumerate(self.feeders):
            if self.feeder_meters:
                out.append(feeder)
            out.extend(self.customers[i] for i in np.flatnonzero(self.tx == t))
        return out

    def refresh_meters(self) -> None:
        """Rebuild the Meter records after parameters changed (CT rating, generation)."""
        fresh: list[Meter] = []
        for i, m in enumerate(self.customers):
            ct = None if math.isnan(self.ct_primary[i]) else float(self.ct_primary[i])
            fresh.append(
                m.model_copy(update={"ct_primary_a": ct, "generation": self.solar_kwp[i] > 0})
            )
        self.customers = fresh


def _contracted(cls: int, three_phase: bool, size_kw: float) -> float:
    """Return a contracted capacity above the customer's typical peak."""
    step = 3.0 if cls == RESIDENTIAL else 10.0
    return float(math.ceil(size_kw * 1.6 / step) * step)


def build_population(options: FleetOptions) -> Population:
    """Draw a fleet deterministically from `options.seed`."""
    rng = np.random.default_rng(options.seed)
    n = options.customers
    if n < 1:
        raise ValueError("a fleet needs at least one customer")
    n_tx = max(1, math.ceil(n / options.customers_per_transformer))
    tx = np.sort(np.arange(n) % n_tx).astype(np.int64)
    draw = rng.random(n)
    cls = np.where(
        draw < options.industrial_share,
        INDUSTRIAL,
        np.where(
            draw < options.industrial_share + options.commercial_share, COMMERCIAL, RESIDENTIAL
        ),
    ).astype(np.int64)
    three_phase = np.where(
        cls == RESIDENTIAL,
        rng.random(n) < options.residential_three_phase_share,
        (cls == INDUSTRIAL) | (rng.random(n) < 0.75),
    )
    size_kw = np.select(
        [cls == RESIDENTIAL, cls == COMMERCIAL],
        [rng.uniform(2.0, 5.0, n) * np.where(three_phase, 2.0, 1.0), rng.uniform(8.0, 45.0, n)],
        rng.uniform(60.0, 250.0, n),
    )
    # Single-phase customers go round the transformer's phases, as a fitter balances them.
    single_phase = np.zeros(n, dtype=np.int64)
    for t in range(n_tx):
        members = np.flatnonzero((tx == t) & ~three_phase)
        single_phase[members] = (np.arange(members.size) + t) % 3
    phase_of = np.where(three_phase[:, None], np.arange(3)[None, :], single_phase[:, None])
    active = np.where(three_phase[:, None], True, np.arange(3)[None, :] == 0)
    shares = rng.dirichlet([10.0, 10.0, 10.0], n)
    shares[~three_phase] = (1.0, 0.0, 0.0)
    pf = np.select(
        [cls == RESIDENTIAL, cls == COMMERCIAL],
        [rng.uniform(0.90, 0.98, n), rng.uniform(0.85, 0.95, n)],
        rng.uniform(0.80, 0.92, n),
    )
    solar = (rng.random(n) < options.solar_share) & (cls != INDUSTRIAL)
    solar_kwp = np.where(solar, size_kw * rng.uniform(1.0, 1.8, n), 0.0)
    # Service cable: its loop resistance is tens of milliohms for single-phase services;
    # three-phase services run thicker cable, a few milliohms per phase.
    cable_u = rng.uniform(0.0, 1.0, n)
    cable_r = np.where(three_phase, 0.002 + 0.008 * cable_u, 0.02 + 0.06 * cable_u)
    cable_x = cable_r * 0.3
    # CT-connected: industrial customers; rating fits the load (30-100 % rule) on the
    # heaviest phase, which is the one whose CT saturates first.
    typical_a = size_kw * 1000.0 * 0.8 * shares.max(axis=1) / (options.nominal_v * pf)
    ct_steps = np.array([50, 75, 100, 150, 200, 250, 300, 400, 500, 600, 800, 1000], float)
    wanted = typical_a / rng.uniform(0.55, 0.8, n)
    ct_fit = ct_steps[np.minimum(np.searchsorted(ct_steps, wanted), ct_steps.size - 1)]
    ct_primary = np.where(cls == INDUSTRIAL, ct_fit, np.nan)
    # Own generator: the heating share must not change anything else of the fleet.
    heat_rng = np.random.default_rng([options.seed, 0x4EA7])
    heats = (heat_rng.random(n) < options.heating_share) & (cls != INDUSTRIAL)
    heating_kw_per_k = np.where(
        heats,
        size_kw
        * np.where(
            cls == RESIDENTIAL, heat_rng.uniform(0.02, 0.06, n), heat_rng.uniform(0.015, 0.03, n)
        ),
        0.0,
    )
    neutral_measured = np.where(
        three_phase,
        (cls != INDUSTRIAL) & (rng.random(n) < options.neutral_measured_share_3p),
        rng.random(n) < options.neutral_measured_share_1p,
    )
    customers = [
        Meter(
            id=f"M{i + 1:05d}" if n >= 10000 else f"M{i + 1:04d}",
            service="3p4w" if three_phase[i] else "1p2w",
            nominal_v=options.nominal_v,
            ct_primary_a=None if math.isnan(ct_primary[i]) else float(ct_primary[i]),
            generation=bool(solar[i]),
            transformer=f"T{int(tx[i]) + 1:03d}",
            role="customer",
            customer_class=CLASS_NAMES[int(cls[i])],
            contracted_kw=_contracted(int(cls[i]), bool(three_phase[i]), float(size_kw[i])),
        )
        for i in range(n)
    ]
    tx_kw = np.bincount(tx, weights=size_kw, minlength=n_tx)
    feeder_ct = ct_steps[
        np.minimum(
            np.searchsorted(ct_steps, tx_kw * 1000.0 * 0.7 / (3.0 * options.nominal_v)),
            ct_steps.size - 1,
        )
    ]
    feeders = [
        Meter(
            id=f"T{t + 1:03d}-FDR",
            service="3p4w",
            nominal_v=options.nominal_v,
            ct_primary_a=float(feeder_ct[t]),
            transformer=f"T{t + 1:03d}",
            role="feeder",
        )
        for t in range(n_tx)
    ]
    return Population(
        seed=options.seed,
        customers=customers,
        feeders=feeders,
        tx=tx,
        three_phase=three_phase,
        phase_of=phase_of.astype(np.int64),
        active=active,
        cls=cls,
        size_kw=size_kw,
        shares=shares,
        pf=pf,
        solar_kwp=solar_kwp,
        cable_r=cable_r,
        cable_x=cable_x,
        ct_primary=ct_primary,
        neutral_measured=neutral_measured.astype(bool),
        e_imp0=rng.uniform(500.0, 40000.0, n) * np.where(cls == RESIDENTIAL, 1.0, 10.0),
        e_exp0=np.where(solar, rng.uniform(100.0, 5000.0, n), 0.0),
        open_h=rng.uniform(7.0, 9.5, n),
        close_h=rng.uniform(17.0, 20.5, n),
        shifts=rng.integers(2, 4, n).astype(np.int64),
        tx_nominal_v=np.full(n_tx, options.nominal_v),
        # LV backbone between the transformer and the service cables.
        tx_backbone_r=rng.uniform(0.004, 0.012, n_tx),
        tx_backbone_x=rng.uniform(0.002, 0.005, n_tx),
        feeder_e_imp0=rng.uniform(1e5, 1e6, n_tx),
        # Own generator: the share of slow meters must not change anything else of the fleet.
        report_every_s=np.where(
            np.random.default_rng([options.seed, 0x510]).random(n) < options.slow_share,
            options.slow_interval_s,
            0.0,
        ),
        # Whole milliseconds, as timestamps are written.
        clock_offset_s=np.round(
            np.random.default_rng([options.seed, 0xC10C]).uniform(
                -options.clock_skew_s, options.clock_skew_s, n
            ),
            3,
        ),
        feeder_clock_offset_s=np.round(
            np.random.default_rng([options.seed, 0xC10D]).uniform(
                -options.clock_skew_s, options.clock_skew_s, n_tx
            ),
            3,
        ),
        heating_kw_per_k=heating_kw_per_k,
        away_start=np.full(n, np.nan),
        away_end=np.full(n, np.nan),
        calendar=options.calendar(),
        feeder_meters=options.feeders,
    )
