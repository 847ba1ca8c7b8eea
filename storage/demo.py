"""A synthetic B2B SaaS company to try kpibot on: ``build_demo(engine, seed=7, scale=1.0)``.

Two years of data up to ``today`` (the window starts on the first of the month 24 months
before today's month and ends at today 00:00 UTC), replacing whatever the tables held, in
one transaction. The same seed, scale and ``today`` give the same rows.

At ``scale=1``: ~3,000 customers (30% already customers when the window opens), their
subscriptions, ~40k invoices and one-off orders, ~90k monthly cost lines, ~60k survey
responses, ~55k tickets, ~40k leads, ~300k usage events, daily marketing spend per channel,
incidents, defects and upsell/cross-sell opportunities. ``scale`` multiplies every
customer-driven volume; platform-level tables (incidents, defects) grow with ``sqrt(scale)``
and marketing spend keeps one row per day and channel (its amounts scale). Generation is
vectorised numpy and streams blocks of customers to the database, so memory stays bounded at
any scale (scale 33 ≈ 100k customers and 10M usage events).

The story in the data, for demos and tests:

* Segments: industry, size band (SMB / Mid-Market / Enterprise), region (NA, EMEA, APAC,
  LATAM), plan (Free = not paying, Starter, Growth, Enterprise), acquisition channel
  (organic, paid_search, referral, events, outbound, partner). Bigger customers have more
  seats, users, tickets and survey responses; Mid-Market and Enterprise churn only at
  contract anniversaries.
* Subscriptions: product ``core`` plus add-ons ``analytics`` and ``api``. Expansion and
  contraction end a core subscription and start a new one with a different MRR (and seats);
  a churned customer has ``churned_at`` and every subscription ends then. Recurring orders are
  the monthly invoices of the subscriptions; one-off orders are ``services`` and ``training``.
* Every customer has a latent health: unhealthy ones churn more, score lower and file more
  tickets. In the 90 days before churn customers file extra tickets, score lower and use the
  product less and less.
* The NPS dip: in the most recent complete month, NPS falls by ~12 points, concentrated in
  EMEA (Enterprise hit hardest). Behind it: a sev1 outage during EMEA business hours that
  month, extra ``outage`` tickets from EMEA customers and slower first responses for them.
* Survey scales follow :data:`storage.schema.SURVEY_SCALES`; CES is 1-7 with 7 = effortless.
  Incident severities are ``sev1``-``sev3``; defect severities ``critical``, ``major``,
  ``minor``; ticket priorities ``low``, ``normal``, ``high``, ``urgent``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.stats import norm
from sqlalchemy import Engine, text

from storage.bulk import BUSY_WAIT, insert_rows
from storage.database import analyze, connect, data_changed, require_owned
from storage.schema import SURVEY_SCALES, TABLES, metadata

__all__ = ["build_demo", "DemoCompany"]

log = logging.getLogger(__name__)

INDUSTRIES = (
    "Retail",
    "Financial Services",
    "Healthcare",
    "Manufacturing",
    "Software",
    "Education",
)
SIZE_BANDS = ("SMB", "Mid-Market", "Enterprise")
REGIONS = ("NA", "EMEA", "APAC", "LATAM")
PLANS = ("Free", "Starter", "Growth", "Enterprise")
CHANNELS = ("organic", "paid_search", "referral", "events", "outbound", "partner")
ACTIONS = ("login", "create_report", "share", "export", "api_call", "invite")
CORE_ACTIONS = ("create_report", "share", "api_call")
TOUCHPOINTS = ("onboarding", "support", "billing", "product", "purchase")
TICKET_CATEGORIES = ("billing", "bug", "how-to", "feature-request", "outage")
PRIORITIES = ("low", "normal", "high", "urgent")
TICKET_CHANNELS = ("email", "chat", "phone")
DIP_REGION = "EMEA"

SMB, MM, ENT = 0, 1, 2
FREE, STARTER, GROWTH, ENTERPRISE = 0, 1, 2, 3
EMEA = REGIONS.index(DIP_REGION)

#: Customers per generation block: bounds memory (about 1M usage events per block at 10k).
BLOCK_CUSTOMERS = 10_000

_SIZE_P = (0.62, 0.28, 0.10)
_INDUSTRY_P = (0.18, 0.17, 0.15, 0.16, 0.22, 0.12)
_REGION_P = (0.45, 0.30, 0.15, 0.10)
_CHANNEL_P = {  # by size band
    SMB: (0.32, 0.28, 0.15, 0.05, 0.08, 0.12),
    MM: (0.20, 0.15, 0.15, 0.12, 0.25, 0.13),
    ENT: (0.08, 0.04, 0.12, 0.22, 0.40, 0.14),
}
_PLAN_P = {
    SMB: (0.22, 0.50, 0.25, 0.03),
    MM: (0.05, 0.25, 0.55, 0.15),
    ENT: (0.0, 0.03, 0.27, 0.70),
}
_SEATS = {
    SMB: (6, 0.6, 1, 40),
    MM: (35, 0.5, 10, 250),
    ENT: (200, 0.6, 60, 3000),
}  # median, sigma, lo, hi
_SEAT_PRICE = np.array([0.0, 15.0, 32.0, 55.0])  # per plan
_MONTHLY_CHURN = np.array([0.026, 0.013, 0.006])  # by size band, at average health
_FREE_MONTHLY_CHURN = 0.045
#: Survey responses, tickets and usage events per customer-month, by size band.
_SURVEY_RATE = np.array([1.1, 2.2, 4.2])
_TICKET_RATE = np.array([0.95, 1.9, 3.8])
_USAGE_RATE = np.array([5.0, 11.0, 24.0])
#: Business-hours centre (UTC hour) per region, for timestamps.
_REGION_HOUR = np.array([17.0, 11.0, 3.0, 15.0])
#: Overall lead→customer conversion per channel: how many leads each customer stands for.
_LEAD_CONVERSION = np.array([0.06, 0.04, 0.15, 0.05, 0.03, 0.10])
_CAC = np.array([3000.0, 14000.0, 4500.0, 38000.0, 30000.0, 16000.0])  # spend per acquired customer (B2B SaaS: payback ~8-12 months)
_SURVEY_KINDS = ("nps", "csat", "ces", "ppr")
_SURVEY_P = (0.30, 0.40, 0.18, 0.12)
_TOUCHPOINT_P = {  # per survey kind, over TOUCHPOINTS
    "nps": (0.15, 0.10, 0.15, 0.60, 0.0),
    "csat": (0.20, 0.55, 0.15, 0.10, 0.0),
    "ces": (0.25, 0.50, 0.25, 0.0, 0.0),
    "ppr": (0.0, 0.0, 0.0, 0.0, 1.0),
}
#: Baseline score distributions (index = score - scale minimum) each survey is calibrated to.
_SCORE_P = {
    "nps": (0.02, 0.01, 0.02, 0.02, 0.03, 0.05, 0.06, 0.10, 0.18, 0.22, 0.29),
    "csat": (0.04, 0.06, 0.12, 0.33, 0.45),
    "ces": (0.03, 0.04, 0.07, 0.12, 0.22, 0.30, 0.22),
    "ppr": (0.03, 0.05, 0.12, 0.35, 0.45),
}
_TOUCHPOINT_EFFECT = np.array([0.25, -0.15, -0.3, 0.0, 0.1])
_HEALTH_WEIGHT = 0.8
_SCORE_SIGMA = math.sqrt(_HEALTH_WEIGHT**2 + 1.0)
#: How far the NPS dip pushes EMEA satisfaction down, by size band (latent units).
_DIP_SHIFT = np.array([-0.3, -0.48, -0.9])

_COMMENTS_BAD = (
    "Support took too long to get back to us",
    "Reports are slow to load",
    "Billing was confusing this month",
    "We keep hitting bugs in exports",
    "Missing integrations we need",
    "Hard to find things in the new UI",
)
_COMMENTS_OK = ("Does the job", "It's fine", "Pricing could be better", "Decent, a few rough edges")
_COMMENTS_GOOD = (
    "Great support team",
    "Dashboards save us hours every week",
    "Easy to set up",
    "Love the API",
    "Reliable and fast",
)
_COMMENTS_DIP = (
    "The EU outage hit us during month-end close",
    "Dashboards were down for hours in Europe",
    "The EMEA outage cost us a deadline",
    "Second outage this quarter, getting nervous",
)
_NAME_A = (
    "North",
    "Blue",
    "Silver",
    "Bright",
    "Green",
    "Iron",
    "Summit",
    "River",
    "Cedar",
    "Golden",
    "Atlas",
    "Pioneer",
    "Harbor",
    "Crystal",
    "Maple",
    "Vertex",
    "Nova",
    "Prime",
    "Sterling",
    "Lumen",
)
_NAME_B = (
    "wind",
    "field",
    "stone",
    "bridge",
    "point",
    "light",
    "wave",
    "gate",
    "peak",
    "works",
    "line",
    "craft",
    "path",
    "forge",
    "leaf",
    "labs",
    "mark",
    "dale",
    "port",
    "grid",
)
_NAME_C = (
    "Inc",
    "Ltd",
    "Group",
    "Co",
    "Systems",
    "Partners",
    "GmbH",
    "Holdings",
    "Solutions",
    "LLC",
)


def build_demo(
    engine: Engine,
    *,
    seed: int = 7,
    scale: float = 1.0,
    today: date | None = None,
    table_scale: Mapping[str, float] | None = None,
) -> dict[str, int]:
    """Replace all data with the demo company; returns the row count per table.

    ``table_scale`` multiplies the volume of single per-customer tables on top of ``scale``
    (the benchmark uses it to reach round counts per table): below 1 a table's rows are
    thinned at random (any of :data:`BLOCK_TABLES`), above 1 the event rates grow (only
    ``survey_responses``, ``tickets`` and ``usage_events``, which are Poisson-driven).
    """
    if not scale > 0:
        raise ValueError("scale must be positive")
    require_owned(engine, "kpibot demo")  # it replaces all data: only in kpibot's own database
    if isinstance(today, datetime):
        today = today.date()
    company = DemoCompany(
        seed=seed, scale=scale, today=today or datetime.now(UTC).date(), table_scale=table_scale
    )
    counts = dict.fromkeys(TABLES, 0)
    with connect(engine, wait=BUSY_WAIT) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL statement_timeout = 0"))
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
        for name, frame in company.tables():
            counts[name] += insert_rows(conn, TABLES[name], frame)
            log.debug("demo: %s +%d rows", name, frame.num_rows)
    analyze(engine, metadata.sorted_tables)
    data_changed(engine)
    return counts


#: The per-customer tables generated block by block (``table_scale`` applies to these).
BLOCK_TABLES = ("orders", "costs", "survey_responses", "tickets", "usage_events", "leads")
_RATE_TABLES = ("survey_responses", "tickets", "usage_events")


def _check_table_scale(table_scale: Mapping[str, float] | None) -> dict[str, float]:
    out = {name: float(v) for name, v in (table_scale or {}).items()}
    for name, factor in out.items():
        if name not in BLOCK_TABLES:
            raise ValueError(f"table_scale: {name} is not one of {', '.join(BLOCK_TABLES)}")
        if not factor > 0:
            raise ValueError(f"table_scale: {name} must be positive")
        if factor > 1 and name not in _RATE_TABLES:
            raise ValueError(f"table_scale: {name} can only be thinned (at most 1)")
    return out


def _pick(rng: np.random.Generator, n: int, p) -> np.ndarray:
    """``n`` category codes drawn with probabilities ``p``."""
    cum = np.cumsum(np.asarray(p, float))
    return np.minimum(np.searchsorted(cum / cum[-1], rng.random(n), side="right"), len(cum) - 1)


def _pick_rows(rng: np.random.Generator, codes: np.ndarray, table: dict[int, tuple]) -> np.ndarray:
    """One category per row, with the probabilities ``table[code]`` of that row's code."""
    out = np.zeros(codes.size, np.int64)
    for code, p in table.items():
        hit = codes == code
        out[hit] = _pick(rng, int(hit.sum()), p)
    return out


def _strings(values: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    return pa.array(values, pa.string()).take(pa.array(codes, pa.int64()))


def _ids(prefix: str, start: int, n: int, width: int) -> pa.Array:
    return pa.array([f"{prefix}{i:0{width}d}" for i in range(start, start + n)], pa.string())


class _Calendar:
    """Times are float days since the window start; this maps them to calendar facts."""

    def __init__(self, today: date) -> None:
        this_month = np.datetime64(today, "M")
        start_month = this_month - 24
        self.start = start_month.astype("datetime64[D]")
        self.end_days = float((np.datetime64(today, "D") - self.start).astype(np.int64))
        self.dip = (
            float(((this_month - 1).astype("datetime64[D]") - self.start).astype(np.int64)),
            float((this_month.astype("datetime64[D]") - self.start).astype(np.int64)),
        )
        months = start_month + np.arange(-40, 27)
        self.month_start = (
            (months.astype("datetime64[D]") - self.start).astype(np.int64).astype(float)
        )
        self.month_of_year = months.astype(np.int64) % 12  # 0 = January
        self.start_weekday = int((self.start.astype(np.int64) + 3) % 7)  # 1970-01-01: Thursday
        self.start_us = int(self.start.astype("datetime64[us]").astype(np.int64))
        self._first_day = int(self.month_start[0])
        days = np.arange(self._first_day, int(self.month_start[-1]) + 1, dtype=float)
        self._day_month = np.searchsorted(self.month_start, days, side="right") - 1

    def month(self, t: np.ndarray) -> np.ndarray:
        """Index into ``month_start`` of the month containing ``t`` (a lookup by whole day)."""
        day = np.floor(t).astype(np.int64) - self._first_day
        return self._day_month[np.clip(day, 0, self._day_month.size - 1)]

    def weekday(self, t: np.ndarray) -> np.ndarray:
        return (np.floor(t).astype(np.int64) + self.start_weekday) % 7

    def to_ts(self, t: np.ndarray) -> pa.Array:
        valid = ~np.isnan(t)
        secs = np.round(np.where(valid, t, 0.0) * 86400.0).astype(np.int64)
        us = secs * 1_000_000 + self.start_us
        return pa.array(us, pa.int64(), mask=~valid).cast(pa.timestamp("us"))

    def to_date(self, days: np.ndarray) -> pa.Array:
        return pa.array(
            (self.start + days.astype("timedelta64[D]")).astype("datetime64[D]"), pa.date32()
        )


_SEASON = np.array(
    [1.0, 1.0, 1.05, 1.0, 1.0, 0.95, 0.9, 0.75, 1.0, 1.05, 1.0, 0.7]
)  # Jan..Dec volume
_SCORE_SEASON = np.array([0.05, 0.0, 0.0, 0.05, 0.05, 0.0, 0.0, 0.05, 0.0, -0.05, -0.05, -0.1])


class DemoCompany:
    """The generator. :meth:`tables` yields ``(table name, pyarrow.Table)`` pieces in an order
    that keeps memory bounded: the small tables first, then blocks of customers."""

    def __init__(
        self, *, seed: int, scale: float, today: date, table_scale: Mapping[str, float] | None = None
    ) -> None:
        self.seed, self.scale, self.cal = seed, scale, _Calendar(today)
        self.table_scale = _check_table_scale(table_scale)
        self._volume = 1.0  # event-rate multiplier of the table being generated
        self.n = max(20, round(3000 * scale))
        self._customers()
        self._subscriptions()
        self.has_api = np.zeros(self.n, bool)
        self.has_api[self.sub_customer[self.sub_product == 2]] = True
        # The outage behind the NPS dip: sev1, EMEA business hours, early in the dip month.
        self.dip_outage = self.cal.dip[0] + 9 + 8.5 / 24

    def _rng(self, *stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *stream])

    # ---------------------------------------------------------------------------- customers

    def _customers(self) -> None:
        rng, cal, n = self._rng(0), self.cal, self.n
        n_base = round(0.3 * n)
        days = np.arange(int(cal.end_days))
        month = cal.month(days.astype(float))
        weight = np.exp(0.55 * days / 365.0) * _SEASON[cal.month_of_year[month]]
        weight *= np.where(cal.weekday(days.astype(float)) >= 5, 0.3, 1.0)
        new_days = rng.choice(days, size=n - n_base, p=weight / weight.sum()).astype(float)
        base_days = -np.floor(rng.uniform(1, 540, n_base))
        day = np.sort(np.concatenate([base_days, new_days]))
        self.size = _pick(rng, n, _SIZE_P)
        self.region = _pick(rng, n, _REGION_P)
        self.industry = _pick(rng, n, _INDUSTRY_P)
        self.channel = _pick_rows(rng, self.size, _CHANNEL_P)
        self.plan = _pick_rows(rng, self.size, _PLAN_P)
        self.paying = self.plan != FREE
        self.signup = day + self._hour(rng, self.region)
        self.health = rng.normal(size=n)
        seats = np.zeros(n)
        for band, (median, sigma, lo, hi) in _SEATS.items():
            hit = self.size == band
            seats[hit] = np.clip(np.round(rng.lognormal(np.log(median), sigma, hit.sum())), lo, hi)
        seats[~self.paying] = rng.integers(1, 6, (~self.paying).sum())
        self.seats = seats.astype(np.int64)
        # Churn: exponential with a health-dependent hazard; annual contracts (Mid-Market,
        # Enterprise) only end on an anniversary of the signup.
        monthly = np.where(self.paying, _MONTHLY_CHURN[self.size], _FREE_MONTHLY_CHURN)
        hazard = monthly / 30.44 * np.exp(-0.6 * self.health)
        origin = np.maximum(self.signup, 0.0)
        churn = origin + 20 + rng.exponential(1.0 / hazard)
        annual = self.paying & (self.size != SMB)
        years = np.ceil((churn - self.signup) / 365.25)
        churn = np.where(annual, self.signup + years * 365.25, churn)
        self.churned = churn < cal.end_days
        self.churn = np.where(self.churned, churn, np.nan)
        self.life_end = np.where(self.churned, churn, cal.end_days)  # end of activity
        self.active_from = np.maximum(self.signup, 0.0)  # start of activity in the window
        self.ids = _ids("C", 1, n, 6)
        self.users = np.where(self.paying, np.clip(np.round(self.seats * 0.5), 1, 80), self.seats)
        self.users = self.users.astype(np.int64)
        self.user_offset = np.concatenate([[0], np.cumsum(self.users)[:-1]])

    def _hour(self, rng: np.random.Generator, region: np.ndarray) -> np.ndarray:
        """Fraction of a day: business hours of the region, in UTC."""
        hour = (_REGION_HOUR[region] + rng.normal(0, 3.0, region.size)) % 24.0
        return hour / 24.0

    def customers_table(self) -> pa.Table:
        rng = self._rng(1)
        n = self.n
        name = np.char.add(
            np.char.add(
                np.array(_NAME_A)[rng.integers(0, len(_NAME_A), n)],
                np.array(_NAME_B)[rng.integers(0, len(_NAME_B), n)],
            ),
            np.char.add(" ", np.array(_NAME_C)[rng.integers(0, len(_NAME_C), n)]),
        )
        return pa.table(
            {
                "customer_id": self.ids,
                "name": pa.array(name.tolist(), pa.string()),
                "signed_up_at": self.cal.to_ts(self.signup),
                "churned_at": self.cal.to_ts(self.churn),
                "industry": _strings(INDUSTRIES, self.industry),
                "size_band": _strings(SIZE_BANDS, self.size),
                "region": _strings(REGIONS, self.region),
                "plan": _strings(PLANS, self.plan),
                "acquisition_channel": _strings(CHANNELS, self.channel),
                "is_paying": pa.array(self.paying),
            }
        )

    # ------------------------------------------------------------------------ subscriptions

    def _subscriptions(self) -> None:
        rng = self._rng(2)
        payers = np.flatnonzero(self.paying)
        start, end = self.signup[payers], self.life_end[payers]
        price = _SEAT_PRICE[self.plan[payers]] * rng.uniform(0.9, 1.05, payers.size)
        price = np.where(self.seats[payers] > 150, price * 0.85, price)
        mrr0 = np.maximum(np.round(self.seats[payers] * price, 2), 29.0)
        # Core: up to two changes (expansion or contraction), each ending one subscription
        # and starting the next with a different MRR and seat count.
        changes = _pick(rng, payers.size, (0.55, 0.33, 0.12))
        lo, hi = start + 60.0, end - 20.0
        changes = np.where(hi - lo > 30, changes, 0)
        when = np.sort(
            lo[:, None] + rng.random((payers.size, 2)) * np.maximum(hi - lo, 0)[:, None], axis=1
        )
        expand_p = np.clip(0.72 + 0.1 * self.health[payers], 0.35, 0.95)
        expands = rng.random((payers.size, 2)) < expand_p[:, None]
        factor = np.where(
            expands,
            rng.uniform(1.15, 1.7, (payers.size, 2)),
            rng.uniform(0.6, 0.9, (payers.size, 2)),
        )
        count = changes + 1
        owner = np.repeat(np.arange(payers.size), count)
        first = np.repeat(np.cumsum(count) - count, count)
        k = np.arange(owner.size) - first  # 0 = initial subscription
        last = k == changes[owner]
        seg_start = np.where(k == 0, start[owner], when[owner, np.maximum(k - 1, 0)])
        seg_end = np.where(
            last,
            np.where(self.churned[payers[owner]], end[owner], np.nan),
            when[owner, np.minimum(k, 1)],
        )
        cum = np.cumprod(factor, axis=1)
        mult = np.where(k == 0, 1.0, cum[owner, np.maximum(k - 1, 0)])
        core_mrr = np.round(mrr0[owner] * mult, 2)
        core_seats = np.maximum(np.round(self.seats[payers[owner]] * mult), 1)
        # Add-ons, sold later to some Growth/Enterprise (and a few Starter) customers.
        plan = self.plan[payers]
        addons = []
        for product, share, p_by_plan in (
            ("analytics", 0.2, (0, 0.04, 0.25, 0.45)),
            ("api", 0.15, (0, 0.03, 0.15, 0.35)),
        ):
            take = rng.random(payers.size) < np.array(p_by_plan)[plan]
            take &= end - start > 60
            idx = np.flatnonzero(take)
            a_start = start[idx] + 30 + rng.random(idx.size) * (end[idx] - start[idx] - 45)
            a_end = np.where(self.churned[payers[idx]], end[idx], np.nan)
            a_mrr = np.maximum(np.round(mrr0[idx] * share, 2), 49.0)
            addons.append((product, idx, a_start, a_end, a_mrr))
        # Flatten: per subscription its customer index, product, times, mrr, seats.
        cust = [payers[owner]] + [payers[a[1]] for a in addons]
        self.sub_customer = np.concatenate(cust)
        self.sub_product = np.concatenate(
            [np.zeros(owner.size, np.int64)]
            + [np.full(a[1].size, i + 1) for i, a in enumerate(addons)]
        )
        self.sub_start = np.concatenate([seg_start] + [a[2] for a in addons])
        self.sub_end = np.concatenate([seg_end] + [a[3] for a in addons])
        self.sub_mrr = np.concatenate([core_mrr] + [a[4] for a in addons])
        self.sub_seats = np.concatenate([core_seats] + [np.full(a[1].size, np.nan) for a in addons])
        order = np.lexsort((self.sub_start, self.sub_customer))
        for attr in ("sub_customer", "sub_product", "sub_start", "sub_end", "sub_mrr", "sub_seats"):
            setattr(self, attr, getattr(self, attr)[order])
        # Remember the changes (for upsell opportunities): time, old and new MRR.
        changed = k > 0
        self.change_customer = payers[owner[changed]]
        self.change_time = seg_start[changed]
        prev = np.where(k[changed] == 1, 1.0, cum[owner[changed], 0])
        self.change_delta = core_mrr[changed] - np.round(mrr0[owner[changed]] * prev, 2)
        self.addon_customer = np.concatenate([payers[a[1]] for a in addons])
        self.addon_product = np.concatenate(
            [np.full(a[1].size, i + 1) for i, a in enumerate(addons)]
        )
        self.addon_time = np.concatenate([a[2] for a in addons])
        self.addon_mrr = np.concatenate([a[4] for a in addons])

    def subscriptions_table(self) -> pa.Table:
        seats = self.sub_seats
        return pa.table(
            {
                "subscription_id": _ids("S", 1, self.sub_customer.size, 7),
                "customer_id": self.ids.take(pa.array(self.sub_customer)),
                "started_at": self.cal.to_ts(self.sub_start),
                "ended_at": self.cal.to_ts(self.sub_end),
                "mrr": pa.array(self.sub_mrr),
                "seats": pa.array(np.nan_to_num(seats).astype(np.int64), mask=np.isnan(seats)),
                "product": _strings(("core", "analytics", "api"), self.sub_product),
            }
        )

    # ----------------------------------------------------------------- small, global tables

    def opportunities_table(self) -> pa.Table:
        rng, cal = self._rng(3), self.cal
        # Won upsells (every expansion) and cross-sells (every add-on); lost and open ones.
        up = self.change_delta > 0
        won_c = np.concatenate([self.change_customer[up], self.addon_customer])
        won_t = np.concatenate([self.change_time[up], self.addon_time])
        won_amt = np.concatenate([12 * self.change_delta[up], 12 * self.addon_mrr])
        won_kind = np.concatenate(
            [np.zeros(up.sum(), np.int64), np.ones(self.addon_customer.size, np.int64)]
        )
        won_prod = np.concatenate([np.zeros(up.sum(), np.int64), self.addon_product])
        won_created = won_t - rng.uniform(14, 75, won_t.size)
        payers = np.flatnonzero(self.paying)
        months = (self.life_end[payers] - self.active_from[payers]) / 30.44
        n_lost = rng.poisson(0.06 * np.maximum(months, 0))
        lost_c = np.repeat(payers, n_lost)
        span = self.life_end[lost_c] - self.active_from[lost_c]
        lost_created = self.active_from[lost_c] + rng.random(lost_c.size) * span
        lost_kind = _pick(rng, lost_c.size, (0.6, 0.4))
        lost_prod = np.where(lost_kind == 0, 0, 1 + _pick(rng, lost_c.size, (0.6, 0.4)))
        base = np.array([0.0, 2400.0, 6000.0, 30000.0])[self.plan[lost_c]]
        lost_amt = np.round(base * rng.lognormal(0, 0.5, lost_c.size), 2)
        lost_at = lost_created + rng.uniform(10, 90, lost_c.size)
        customer = np.concatenate([won_c, lost_c])
        created = np.concatenate([won_created, lost_created])
        won_at = np.concatenate([won_t, np.full(lost_c.size, np.nan)])
        lost = np.concatenate([np.full(won_c.size, np.nan), lost_at])
        keep = created >= 0
        # Still open today: neither won nor lost yet.
        won_at = np.where(won_at < cal.end_days, won_at, np.nan)
        lost = np.where(lost < cal.end_days, lost, np.nan)
        order = np.argsort(created[keep], kind="stable")
        pick = np.flatnonzero(keep)[order]
        return pa.table(
            {
                "opportunity_id": _ids("OPP", 1, pick.size, 6),
                "customer_id": self.ids.take(pa.array(customer[pick])),
                "created_at": cal.to_ts(created[pick]),
                "kind": _strings(
                    ("upsell", "cross-sell"), np.concatenate([won_kind, lost_kind])[pick]
                ),
                "product": _strings(
                    ("core", "analytics", "api"), np.concatenate([won_prod, lost_prod])[pick]
                ),
                "amount": pa.array(np.round(np.concatenate([won_amt, lost_amt])[pick], 2)),
                "won_at": cal.to_ts(won_at[pick]),
                "lost_at": cal.to_ts(lost[pick]),
            }
        )

    def incidents_table(self) -> pa.Table:
        rng, cal = self._rng(4), self.cal
        n = rng.poisson(3.0 * 24 * math.sqrt(self.scale))
        start = np.sort(rng.random(n) * cal.end_days)
        sev = _pick(rng, n, (0.1, 0.3, 0.6))
        kind = np.where(rng.random(n) < np.array([0.8, 0.4, 0.2])[sev], 0, 1)
        minutes = rng.lognormal(np.log(np.array([90.0, 45.0, 30.0])[sev]), 0.6)
        # The outage behind the NPS dip: sev1, EMEA business hours, early in the dip month.
        dip_start = self.dip_outage
        start = np.append(start, dip_start)
        sev, kind = np.append(sev, 0), np.append(kind, 0)
        minutes = np.append(minutes, 330.0)
        end = start + minutes / 1440.0
        end = np.where(end < cal.end_days, end, np.nan)
        order = np.argsort(start, kind="stable")
        return pa.table(
            {
                "incident_id": _ids("INC-", 1, start.size, 4),
                "started_at": cal.to_ts(start[order]),
                "ended_at": cal.to_ts(end[order]),
                "severity": _strings(("sev1", "sev2", "sev3"), sev[order]),
                "kind": _strings(("outage", "degradation"), kind[order]),
            }
        )

    def defects_table(self) -> pa.Table:
        rng, cal = self._rng(5), self.cal
        n = rng.poisson(25.0 * 24 * math.sqrt(self.scale))
        opened = np.sort(rng.random(n) * cal.end_days + 0.0)
        opened = np.floor(opened) + self._hour(rng, np.full(n, EMEA))
        sev = _pick(rng, n, (0.05, 0.25, 0.70))
        days = rng.lognormal(np.log(np.array([2.0, 7.0, 20.0])[sev]), 0.9)
        resolved = opened + days
        resolved = np.where(resolved < cal.end_days, resolved, np.nan)
        return pa.table(
            {
                "defect_id": _ids("DEF-", 1, n, 5),
                "opened_at": cal.to_ts(opened),
                "resolved_at": cal.to_ts(resolved),
                "severity": _strings(("critical", "major", "minor"), sev),
            }
        )

    def marketing_spend_table(self) -> pa.Table:
        rng, cal = self._rng(6), self.cal
        days = np.arange(int(cal.end_days)).astype(float)
        # Expected new customers per day and channel follows the signup curve.
        new = self.signup >= 0
        per_channel = np.bincount(self.channel[new], minlength=len(CHANNELS)).astype(float)
        curve = np.exp(0.55 * days / 365.0) * _SEASON[cal.month_of_year[cal.month(days)]]
        curve /= curve.sum()
        weekday = np.where(cal.weekday(days) >= 5, 0.35, 1.0)
        spend_day, spend_ch, amount = [], [], []
        for ch in range(len(CHANNELS)):
            total = per_channel[ch] * _CAC[ch]
            daily = total * (curve * weekday) / (curve * weekday).sum()
            if CHANNELS[ch] == "events":  # lumpy: a couple of event days a month
                spike = rng.random(days.size) < 2 / 30.44
                daily = 0.1 * daily + 0.9 * total * spike * curve / max((spike * curve).sum(), 1e-9)
            value = np.round(daily * rng.lognormal(0, 0.25, days.size), 2)
            keep = value > 0
            spend_day.append(days[keep])
            spend_ch.append(np.full(keep.sum(), ch))
            amount.append(value[keep])
        d, c, a = (np.concatenate(x) for x in (spend_day, spend_ch, amount))
        order = np.lexsort((c, d))
        return pa.table(
            {
                "spent_on": cal.to_date(d[order]),
                "channel": _strings(CHANNELS, c[order]),
                "amount": pa.array(a[order]),
            }
        )

    # ---------------------------------------------------------------------- per-block tables

    def _spread(self, rng, cust: np.ndarray, per_month: np.ndarray, lo=None, hi=None):
        """Poisson events per customer over its active time (or [lo, hi)): returns the
        customer index per event and event times, with weekends and region hours applied."""
        a = self.active_from[cust] if lo is None else lo
        b = self.life_end[cust] if hi is None else hi
        span = np.maximum(b - a, 0.0)
        counts = rng.poisson(per_month * span / 30.44 * 1.25 * self._volume)
        idx = np.repeat(np.arange(cust.size), counts)
        t = a[idx] + rng.random(idx.size) * span[idx]
        t = np.floor(t) + self._hour(rng, self.region[cust[idx]])
        keep = (t >= a[idx]) & (t < b[idx])
        keep &= (self.cal.weekday(t) < 5) | (rng.random(t.size) < 0.3)
        month = self.cal.month(t)
        keep &= rng.random(t.size) < _SEASON[self.cal.month_of_year[month]]
        return cust[idx[keep]], t[keep]

    def _ramp(self, cust: np.ndarray, t: np.ndarray) -> np.ndarray:
        """0 normally, rising to 1 at churn over the 90 days before it."""
        left = self.churn[cust] - t
        return np.where(self.churned[cust] & (left >= 0) & (left <= 90), 1.0 - left / 90.0, 0.0)

    def _in_dip(self, cust: np.ndarray, t: np.ndarray) -> np.ndarray:
        return (self.region[cust] == EMEA) & (t >= self.cal.dip[0]) & (t < self.cal.dip[1])

    def tables(self) -> Iterator[tuple[str, pa.Table]]:
        yield "customers", self.customers_table()
        yield "subscriptions", self.subscriptions_table()
        yield "opportunities", self.opportunities_table()
        yield "incidents", self.incidents_table()
        yield "defects", self.defects_table()
        yield "marketing_spend", self.marketing_spend_table()
        next_id = dict.fromkeys(("orders", "survey_responses", "tickets", "leads"), 1)
        for block, lo in enumerate(range(0, self.n, BLOCK_CUSTOMERS)):
            cust = np.arange(lo, min(lo + BLOCK_CUSTOMERS, self.n))
            for stream, (name, make) in enumerate(
                (
                    ("orders", self._orders),
                    ("costs", self._costs),
                    ("survey_responses", self._surveys),
                    ("tickets", self._tickets),
                    ("usage_events", self._usage),
                    ("leads", self._leads),
                )
            ):
                rng = self._rng(100 + stream, block)
                factor = self.table_scale.get(name, 1.0)
                self._volume = max(factor, 1.0)
                if name in next_id:
                    frame = make(rng, cust, next_id[name])  # type: ignore[operator]  # methods of two signatures
                    next_id[name] += frame.num_rows  # before thinning: ids stay unique
                else:
                    frame = make(rng, cust)  # type: ignore[operator]  # (mypy joins them to "function")
                self._volume = 1.0
                if factor < 1.0:
                    keep = self._rng(200 + stream, block).random(frame.num_rows) < factor
                    frame = frame.filter(pa.array(keep))
                yield name, frame

    def _orders(self, rng, cust: np.ndarray, first_id: int) -> pa.Table:
        cal = self.cal
        sel = np.flatnonzero((self.sub_customer >= cust[0]) & (self.sub_customer <= cust[-1]))
        s_start, s_end = self.sub_start[sel], self.sub_end[sel]
        s_end = np.where(np.isnan(s_end), cal.end_days, s_end)
        # Monthly invoices on the subscription's day of month, inside the window.
        m0 = cal.month(s_start)
        offset = s_start - cal.month_start[m0]
        offset = np.minimum(offset, 27.0 + (offset % 1))
        first = np.maximum(cal.month(np.maximum(s_start, 0.0)) - m0 - 1, 0)
        last = cal.month(np.minimum(s_end, cal.end_days)) - m0 + 1
        count = np.maximum(last - first + 1, 0)
        owner = np.repeat(np.arange(sel.size), count)
        k = np.arange(owner.size) - np.repeat(np.cumsum(count) - count, count) + first[owner]
        month = np.minimum(m0[owner] + k, cal.month_start.size - 1)
        t = cal.month_start[month] + offset[owner]
        ok = (t >= s_start[owner]) & (t < s_end[owner]) & (t >= 0) & (t < cal.end_days)
        owner, t = owner[ok], t[ok]
        rec_c = self.sub_customer[sel][owner]
        rec_amt = self.sub_mrr[sel][owner]
        rec_prod = self.sub_product[sel][owner]
        # One-off orders: onboarding services for bigger customers, training now and then.
        svc = cust[
            (self.signup[cust] >= 0)
            & self.paying[cust]
            & (rng.random(cust.size) < np.array([0.1, 0.5, 0.8])[self.size[cust]])
        ]
        svc_t = self.signup[svc] + rng.uniform(1, 20, svc.size)
        svc_amt = np.round(
            np.array([800.0, 3500.0, 15000.0])[self.size[svc]] * rng.lognormal(0, 0.4, svc.size), -1
        )
        paying = cust[self.paying[cust]]
        tr_c, tr_t = self._spread(rng, paying, np.full(paying.size, 0.03))
        tr_amt = np.round(
            np.array([500.0, 1500.0, 4000.0])[self.size[tr_c]] * rng.lognormal(0, 0.3, tr_c.size),
            -1,
        )
        ok_svc = svc_t < np.minimum(self.life_end[svc], cal.end_days)
        svc, svc_t, svc_amt = svc[ok_svc], svc_t[ok_svc], svc_amt[ok_svc]
        c = np.concatenate([rec_c, svc, tr_c])
        t = np.concatenate([t, svc_t, tr_t])
        amount = np.concatenate([rec_amt, svc_amt, tr_amt])
        product = np.concatenate([rec_prod, np.full(svc.size, 3), np.full(tr_c.size, 4)])
        recurring = np.concatenate(
            [np.ones(rec_c.size, bool), np.zeros(svc.size + tr_c.size, bool)]
        )
        order = np.lexsort((c, t))
        return pa.table(
            {
                "order_id": _ids("O", first_id, c.size, 8),
                "customer_id": self.ids.take(pa.array(c[order])),
                "ordered_at": cal.to_ts(t[order]),
                "amount": pa.array(amount[order]),
                "product": _strings(
                    ("core", "analytics", "api", "services", "training"), product[order]
                ),
                "is_recurring": pa.array(recurring[order]),
            }
        )

    def _costs(self, rng, cust: np.ndarray) -> pa.Table:
        cal = self.cal
        first = cal.month(self.active_from[cust])
        last = cal.month(np.minimum(self.life_end[cust], cal.end_days - 1e-6))
        count = np.maximum(last - first + 1, 0)
        owner = np.repeat(np.arange(cust.size), count)
        month = first[owner] + np.arange(owner.size) - np.repeat(np.cumsum(count) - count, count)
        c = cust[owner]
        seats = self.seats[c].astype(float)
        paying = self.paying[c]
        infra = np.where(paying, 0.9 * seats, 0.6 * seats) * rng.uniform(0.8, 1.25, c.size) + 3
        support = np.where(paying, 0.5 * seats + 15, 2.0) * rng.lognormal(0, 0.35, c.size)
        support *= np.exp(-0.2 * self.health[c])
        success = np.array([0.0, 250.0, 1200.0])[self.size[c]] * rng.uniform(0.9, 1.1, c.size)
        has_success = paying & (self.size[c] != SMB)
        cat = np.concatenate(
            [np.zeros(c.size, np.int64), np.ones(c.size, np.int64), np.full(has_success.sum(), 2)]
        )
        cc = np.concatenate([c, c, c[has_success]])
        mm = np.concatenate([month, month, month[has_success]])
        amount = np.round(np.concatenate([infra, support, success[has_success]]), 2)
        order = np.lexsort((cat, cc, mm))
        return pa.table(
            {
                "customer_id": self.ids.take(pa.array(cc[order])),
                "incurred_at": cal.to_ts(cal.month_start[mm[order]]),
                "amount": pa.array(amount[order]),
                "category": _strings(("infrastructure", "support", "success"), cat[order]),
            }
        )

    def _surveys(self, rng, cust: np.ndarray, first_id: int) -> pa.Table:
        cal = self.cal
        c, t = self._spread(rng, cust, _SURVEY_RATE[self.size[cust]])
        kind = _pick(rng, c.size, _SURVEY_P)
        touch = np.zeros(c.size, np.int64)
        for k, name in enumerate(_SURVEY_KINDS):
            hit = kind == k
            touch[hit] = _pick(rng, int(hit.sum()), _TOUCHPOINT_P[name])
        # Onboarding surveys happen in the first weeks.
        onboarding = (touch == 0) & (self.signup[c] >= 0)
        t = np.where(onboarding, self.signup[c] + rng.uniform(7, 45, c.size), t)
        keep = t < np.minimum(self.life_end[c], cal.end_days)
        c, t, kind, touch = c[keep], t[keep], kind[keep], touch[keep]
        moy = cal.month_of_year[cal.month(t)]
        dip = self._in_dip(c, t)
        ramp = self._ramp(c, t)
        latent = (
            _HEALTH_WEIGHT * self.health[c]
            + np.array([-0.05, 0.0, 0.1])[self.size[c]]
            + np.where(self.plan[c] == FREE, -0.3, 0.0)
            + _TOUCHPOINT_EFFECT[touch]
            + _SCORE_SEASON[moy]
            - ramp * 1.3
            - np.where(ramp > 0, 0.3, 0.0)
            + np.where(dip, _DIP_SHIFT[self.size[c]], 0.0)
            + rng.normal(size=c.size)
        )
        score = np.zeros(c.size, np.int64)
        for k, name in enumerate(_SURVEY_KINDS):
            hit = kind == k
            cuts = _SCORE_SIGMA * norm.ppf(np.cumsum(_SCORE_P[name])[:-1])
            score[hit] = SURVEY_SCALES[name][0] + np.searchsorted(cuts, latent[hit])
        # Comments on about a third of the responses, in the tone of the score.
        lo = np.array([SURVEY_SCALES[k][0] for k in _SURVEY_KINDS])[kind]
        hi = np.array([SURVEY_SCALES[k][1] for k in _SURVEY_KINDS])[kind]
        rel = (score - lo) / (hi - lo)
        has = rng.random(c.size) < 0.35
        comment = np.full(c.size, None, dtype=object)
        for pool, mask in (
            (_COMMENTS_BAD, has & (rel < 0.6)),
            (_COMMENTS_OK, has & (rel >= 0.6) & (rel < 0.85)),
            (_COMMENTS_GOOD, has & (rel >= 0.85)),
            (_COMMENTS_DIP, has & (rel < 0.6) & dip),
        ):
            comment[mask] = np.array(pool, dtype=object)[rng.integers(0, len(pool), mask.sum())]
        order = np.lexsort((c, t))
        return pa.table(
            {
                "response_id": _ids("R", first_id, c.size, 8),
                "customer_id": self.ids.take(pa.array(c[order])),
                "responded_at": cal.to_ts(t[order]),
                "survey": _strings(_SURVEY_KINDS, kind[order]),
                "score": pa.array(score[order]),
                "touchpoint": _strings(TOUCHPOINTS, touch[order]),
                "comment": pa.array(comment[order], pa.string()),
            }
        )

    def _tickets(self, rng, cust: np.ndarray, first_id: int) -> pa.Table:
        cal = self.cal
        rate = _TICKET_RATE[self.size[cust]] * np.exp(-0.3 * self.health[cust])
        rate = np.where(self.paying[cust], rate, rate * 0.4)
        c1, t1 = self._spread(rng, cust, rate)
        # Customers about to churn file extra tickets in their last 90 days.
        churners = cust[self.churned[cust]]
        lo = np.maximum(self.churn[churners] - 90, self.active_from[churners])
        hi = self.churn[churners]
        c2, t2 = self._spread(rng, churners, 1.2 + 1.0 * _TICKET_RATE[self.size[churners]], lo, hi)
        # The dip month's outage: EMEA customers active then report it.
        out = self.dip_outage
        emea = cust[
            (self.region[cust] == EMEA)
            & (self.active_from[cust] <= out)
            & (self.life_end[cust] > out)
        ]
        n3 = rng.poisson(np.array([0.4, 0.9, 1.8])[self.size[emea]])
        c3 = np.repeat(emea, n3)
        t3 = out + rng.exponential(0.25, c3.size)
        c = np.concatenate([c1, c2, c3])
        t = np.concatenate([t1, t2, t3])
        keep = t < cal.end_days
        c, t = c[keep], t[keep]
        n = c.size
        outage = np.concatenate([np.zeros(c1.size + c2.size, bool), np.ones(c3.size, bool)])[keep]
        pre_churn = np.concatenate(
            [np.zeros(c1.size, bool), np.ones(c2.size, bool), np.zeros(c3.size, bool)]
        )[keep]
        category = _pick(rng, n, (0.15, 0.25, 0.38, 0.17, 0.05))
        category = np.where(pre_churn & (rng.random(n) < 0.3), 0, category)  # billing disputes
        category = np.where(outage, 4, category)
        priority = _pick(rng, n, (0.25, 0.5, 0.18, 0.07))
        priority = np.where(outage, np.where(rng.random(n) < 0.5, 3, 2), priority)
        channel = _pick(rng, n, (0.5, 0.35, 0.15))
        median_min = (
            np.array([180.0, 20.0, 5.0])[channel] * np.array([1.6, 1.0, 0.6, 0.3])[priority]
        )
        median_min = np.where(self._in_dip(c, t), median_min * 2.5, median_min)
        first = t + rng.lognormal(np.log(median_min), 1.0) / 1440.0
        resolve_h = np.array([10.0, 40.0, 6.0, 72.0, 5.0])[category]
        resolved = first + rng.lognormal(np.log(resolve_h), 1.1) / 24.0
        reopened = rng.random(n) < 0.05 + 0.06 * (category == 1) + 0.08 * pre_churn
        escalated = (
            rng.random(n) < 0.04 + 0.25 * (priority == 3) + 0.08 * (category == 1) + 0.1 * pre_churn
        )
        resolved = np.where(reopened, resolved + rng.exponential(2.0, n), resolved)
        replies = 1 + rng.poisson(1.2 + 1.5 * (category == 1) + 2.0 * reopened)
        first = np.where(first < cal.end_days, first, np.nan)
        resolved = np.where((resolved < cal.end_days) & ~np.isnan(first), resolved, np.nan)
        order = np.lexsort((c, t))
        return pa.table(
            {
                "ticket_id": _ids("T", first_id, n, 8),
                "customer_id": self.ids.take(pa.array(c[order])),
                "opened_at": cal.to_ts(t[order]),
                "first_response_at": cal.to_ts(first[order]),
                "resolved_at": cal.to_ts(resolved[order]),
                "reopened": pa.array(reopened[order]),
                "escalated": pa.array(escalated[order]),
                "agent_replies": pa.array(replies[order]),
                "category": _strings(TICKET_CATEGORIES, category[order]),
                "priority": _strings(PRIORITIES, priority[order]),
                "channel": _strings(TICKET_CHANNELS, channel[order]),
            }
        )

    def _usage(self, rng, cust: np.ndarray) -> pa.Table:
        cal = self.cal
        rate = _USAGE_RATE[self.size[cust]] * np.exp(0.3 * self.health[cust])
        rate = np.where(self.paying[cust], rate, rate * 0.5)
        c, t = self._spread(rng, cust, rate)
        keep = rng.random(c.size) < 1.0 - 0.85 * self._ramp(c, t)  # fading before churn
        c, t = c[keep], t[keep]
        api = self.has_api[c]
        p = np.array([0.30, 0.22, 0.10, 0.10, 0.22, 0.06])
        action = np.where(api, _pick(rng, c.size, p), _pick(rng, c.size, p * [1, 1, 1, 1, 0.15, 1]))
        user = np.floor(self.users[c] * rng.random(c.size) ** 2).astype(np.int64)
        # User ids: one string per user of the block's customers.
        first_user = self.user_offset[cust[0]]
        n_users = int(self.user_offset[cust[-1]] + self.users[cust[-1]] - first_user)
        owners = np.repeat(cust, self.users[cust])
        local = np.arange(n_users) - (self.user_offset[owners] - first_user)
        names = pa.array(
            [
                f"U{o + 1:06d}-{u + 1:03d}"
                for o, u in zip(owners.tolist(), local.tolist(), strict=True)
            ]
        )
        code = self.user_offset[c] - first_user + user
        core = np.isin(action, [ACTIONS.index(a) for a in CORE_ACTIONS])
        median_s = np.where(action == 0, 600.0, 180.0)
        seconds = np.round(rng.lognormal(np.log(median_s), 0.8), 1)
        # Unique keys: (customer, user, second, action).
        second = np.round(t * 86400).astype(np.int64)
        key = (code.astype(np.int64) << 30 | second) << 3 | action
        _, first = np.unique(key, return_index=True)
        first.sort()
        c, t, action, code, core, seconds = (x[first] for x in (c, t, action, code, core, seconds))
        order = np.lexsort((c, t))
        return pa.table(
            {
                "customer_id": self.ids.take(pa.array(c[order])),
                "user_id": names.take(pa.array(code[order])),
                "occurred_at": cal.to_ts(t[order]),
                "action": _strings(ACTIONS, action[order]),
                "is_core": pa.array(core[order]),
                "session_seconds": pa.array(seconds[order]),
            }
        )

    def _leads(self, rng, cust: np.ndarray, first_id: int) -> pa.Table:
        cal = self.cal
        new = cust[self.signup[cust] >= 0]
        # Converted leads: one per new customer, from its acquisition channel.
        length = rng.lognormal(np.log(np.array([30.0, 60.0, 110.0])[self.size[new]]), 0.4)
        conv_created = self.signup[new] - length
        conv_mql = conv_created + 0.2 * length
        conv_sql = conv_created + 0.55 * length
        ok = conv_created >= 0
        new, length = new[ok], length[ok]
        conv_created, conv_mql, conv_sql = conv_created[ok], conv_mql[ok], conv_sql[ok]
        first_sub = np.minimum(
            np.searchsorted(self.sub_customer, new), max(self.sub_customer.size - 1, 0)
        )
        arr = self.sub_mrr[first_sub] * 12 if self.sub_customer.size else np.zeros(new.size)
        conv_value = np.where(self.paying[new], arr, 1200.0) * rng.uniform(0.8, 1.3, new.size)
        # Leads that did not convert, around the same times, per channel conversion rates.
        ch = self.channel[new]
        n_lost = rng.poisson(1.0 / _LEAD_CONVERSION[ch] - 1.0)
        src = np.repeat(new, n_lost)
        lost_ch = self.channel[src]
        created = (
            self.signup[src]
            - rng.lognormal(np.log(45.0), 0.6, src.size)
            + rng.normal(0, 20, src.size)
        )
        mql_p = np.array([0.30, 0.25, 0.55, 0.35, 0.20, 0.45])[lost_ch]
        mql = np.where(
            rng.random(src.size) < mql_p, created + rng.exponential(6.0, src.size), np.nan
        )
        sql = np.where(rng.random(src.size) < 0.3, mql + rng.exponential(12.0, src.size), np.nan)
        value = np.round(
            np.array([4000.0, 3000.0, 6000.0, 15000.0, 25000.0, 9000.0])[lost_ch]
            * rng.lognormal(0, 0.7, src.size),
            -1,
        )
        okl = (created >= 0) & (created < cal.end_days)
        created = np.concatenate([conv_created, created[okl]])
        size = created.size
        mql = np.concatenate([conv_mql, mql[okl]])
        sql = np.concatenate([conv_sql, sql[okl]])
        converted = np.concatenate([self.signup[new], np.full(okl.sum(), np.nan)])
        customer = np.concatenate([new, np.full(okl.sum(), -1)])
        source = np.concatenate([ch, lost_ch[okl]])
        pot = np.concatenate([np.round(conv_value, -1), value[okl]])
        for arr_ in (mql, sql, converted):
            arr_[arr_ >= cal.end_days] = np.nan
        sql[np.isnan(mql)] = np.nan
        order = np.argsort(created, kind="stable")
        cust_ids = self.ids.take(pa.array(np.maximum(customer[order], 0)))
        cust_ids = pc.if_else(
            pa.array(customer[order] >= 0), cust_ids, pa.scalar(None, pa.string())
        )
        return pa.table(
            {
                "lead_id": _ids("L", first_id, size, 8),
                "created_at": cal.to_ts(created[order]),
                "source": _strings(CHANNELS, source[order]),
                "mql_at": cal.to_ts(mql[order]),
                "sql_at": cal.to_ts(sql[order]),
                "converted_at": cal.to_ts(converted[order]),
                "customer_id": cust_ids,
                "potential_value": pa.array(pot[order]),
            }
        )
