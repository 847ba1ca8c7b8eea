"""Cross-silo reports: the three questions of seed 002, and the good and bad customers of seed 000.

* ``acquisition`` — "How do people become our customers?": new customers by acquisition
  channel (with spend and CAC), the lead funnel by source (leads → MQL → SQL → customers)
  and the time it takes to convert.
* ``complaints`` — "What creates unhappy customers?": ticket categories ranked by volume and
  by their effect on NPS and CSAT (the score of customers who opened a ticket of that
  category in the period vs those who did not), and the touchpoints detractors answer from.
* ``before-churn`` — "What happens when customers want to leave?": for the customers who
  churned in the period, the 90 days before they left, side by side with the 90 days before
  the period's end of the customers who stayed: tickets, survey scores, usage trend.
* ``profitability`` — seed 000's 'good' and 'bad' customers: the most and least profitable
  customers of the period (revenue − cost to serve).

Every number is aggregated in the database; only a few rows per report reach Python.
``run(name, period, engine, settings)`` builds a report; ``render_text`` and ``render_png``
show it; ``run_report(text, today=…, url=…)`` does all of it from words like
``before-churn last-quarter``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, String, and_, func, literal, or_, select, true, union_all

from metrics import engine as _engine
from metrics.catalogue import CATALOGUE
from metrics.errors import QueryError
from metrics.kpis.common import count_if, div, when
from metrics.kpis.financial import profit_rows
from metrics.model import relations
from metrics.parser import FILLER, tokenize
from metrics.periods import Period, Settings, default_period, match_period, to_utc
from metrics.render import currency
from storage import database
from storage.schema import customers, leads, survey_responses, tickets, usage_events

if TYPE_CHECKING:
    from matplotlib.figure import Figure
from storage.sqlfuncs import add_days

LOOKBACK_DAYS = 90  # the "before churn" window
SLICE_DAYS = 30  # usage is compared in three 30-day slices
TOP_N = 5  # customers at each end of the profitability ranking

CURRENT = "#1f6feb"
PREVIOUS = "#8b949e"
GOOD = "#2da44e"
BAD = "#cf222e"


# ---- results --------------------------------------------------------------------------------


@dataclass
class ChannelRow:
    channel: str
    new_customers: int
    paying: int
    spend: float | None = None
    cac: float | None = None


@dataclass
class FunnelRow:
    source: str
    leads: int
    mqls: int
    sqls: int
    customers: int

    @property
    def mql_rate(self) -> float | None:
        return div(self.mqls, self.leads, 100.0)

    @property
    def sql_rate(self) -> float | None:
        return div(self.sqls, self.mqls, 100.0)

    @property
    def conversion(self) -> float | None:
        return div(self.customers, self.leads, 100.0)


@dataclass
class AcquisitionReport:
    period: Period
    channels: list[ChannelRow]
    funnel: list[FunnelRow]  # by lead source, largest first
    total: FunnelRow
    days_to_mql: float | None
    days_to_sql: float | None
    days_to_customer: float | None
    converted: int
    name: str = "acquisition"
    question: str = "How do people become our customers?"


@dataclass
class Scores:
    """Survey counts of a group of responses; NPS and CSAT follow from them."""

    nps_n: int = 0
    promoters: int = 0
    detractors: int = 0
    csat_n: int = 0
    satisfied: int = 0

    @property
    def nps(self) -> float | None:
        return div(self.promoters - self.detractors, self.nps_n, 100.0)

    @property
    def csat(self) -> float | None:
        return div(self.satisfied, self.csat_n, 100.0)

    def __sub__(self, other: Scores) -> Scores:
        return Scores(
            self.nps_n - other.nps_n,
            self.promoters - other.promoters,
            self.detractors - other.detractors,
            self.csat_n - other.csat_n,
            self.satisfied - other.satisfied,
        )


@dataclass
class CategoryRow:
    category: str
    tickets: int
    customers: int
    with_ticket: Scores  # responses in the period from customers with a ticket of this category
    without: Scores  # all other responses in the period

    @property
    def nps_effect(self) -> float | None:
        a, b = self.with_ticket.nps, self.without.nps
        return None if a is None or b is None else a - b

    @property
    def csat_effect(self) -> float | None:
        a, b = self.with_ticket.csat, self.without.csat
        return None if a is None or b is None else a - b


@dataclass
class TouchpointRow:
    touchpoint: str
    scores: Scores
    dissatisfied: int  # CSAT answers below 4


@dataclass
class ComplaintsReport:
    period: Period
    by_volume: list[CategoryRow]  # most tickets first
    by_effect: list[CategoryRow]  # most harmful to NPS first (then CSAT)
    touchpoints: list[TouchpointRow]  # most detractors first
    overall: Scores
    name: str = "complaints"
    question: str = "What creates unhappy customers?"

    def points_lost(self, row: TouchpointRow) -> float | None:
        """NPS points the touchpoint's detractors cost overall: its detractors ÷ all NPS answers × 100."""
        return div(row.scores.detractors, self.overall.nps_n, 100.0)


@dataclass
class Cohort:
    """One side of the before-churn comparison, per customer over their 90-day window."""

    customers: int
    tickets: int
    scores: Scores
    nps_mean: float | None  # mean 0-10 answer
    csat_mean: float | None  # mean 1-5 answer
    usage: tuple[int, int, int]  # usage events 90-61, 60-31 and 30-0 days before the end

    @property
    def tickets_per_customer(self) -> float | None:
        return div(self.tickets, self.customers)

    @property
    def usage_per_customer(self) -> tuple[float | None, float | None, float | None]:
        a, b, c = self.usage
        return div(a, self.customers), div(b, self.customers), div(c, self.customers)

    @property
    def usage_trend(self) -> float | None:
        """Change in usage from the first 30 days to the last 30 days, in %."""
        first, _, last = self.usage
        return div(last - first, first, 100.0)


@dataclass
class BeforeChurnReport:
    period: Period
    churned: Cohort
    retained: Cohort
    categories: list[tuple[str, int]]  # churned customers' tickets by category, most first
    # of the churned, those who signed up during the period: they left, but the churn rate
    # (customers at the period's start who left) does not count them
    signed_up_in_period: int = 0
    name: str = "before-churn"
    question: str = "What happens when customers want to leave?"
    days: int = LOOKBACK_DAYS


@dataclass
class CustomerProfit:
    customer_id: str
    name: str | None
    revenue: float
    cost: float

    @property
    def profit(self) -> float:
        return self.revenue - self.cost


@dataclass
class ProfitabilityReport:
    period: Period
    best: list[CustomerProfit]
    worst: list[CustomerProfit]
    customers: int
    unprofitable: int
    profit: float
    name: str = "profitability"
    question: str = "Who are our good and bad customers?"


Report = AcquisitionReport | ComplaintsReport | BeforeChurnReport | ProfitabilityReport


@dataclass(frozen=True)
class ReportSpec:
    name: str
    question: str
    build: Callable[[Period, Engine, Settings], Report]
    words: tuple[str, ...] = ()
    description: str = ""
    tables: tuple[str, ...] = ()  # what it reads: on a team's own database, missing ones are named


# ---- helpers ----------------------------------------------------------------------------------


def _bounds(period: Period, settings: Settings):
    return to_utc(period.start, settings), to_utc(period.end, settings)


def _rows(engine: Engine, stmt) -> list[dict[str, Any]]:
    return _engine.execute(engine, stmt)


def _int(v) -> int:
    return int(v or 0)


def _label(v) -> str:
    return "(not set)" if v is None or v == "" else str(v)


def _score_aggregates(r):
    nps, csat = r.c.survey == "nps", r.c.survey == "csat"
    return [
        count_if(nps).label("nps_n"),
        count_if(and_(nps, r.c.score >= 9)).label("promoters"),
        count_if(and_(nps, r.c.score <= 6)).label("detractors"),
        count_if(csat).label("csat_n"),
        count_if(and_(csat, r.c.score >= 4)).label("satisfied"),
    ]


def _scores(row: dict[str, Any]) -> Scores:
    return Scores(
        _int(row.get("nps_n")), _int(row.get("promoters")), _int(row.get("detractors")),
        _int(row.get("csat_n")), _int(row.get("satisfied")),
    )


# ---- acquisition ------------------------------------------------------------------------------


def acquisition(period: Period, engine: Engine, settings: Settings) -> AcquisitionReport:
    start, end = _bounds(period, settings)
    c = customers
    new = _rows(
        engine,
        select(c.c.acquisition_channel.label("channel"), func.count().label("n"), count_if(c.c.is_paying == true()).label("paying"))
        .where(c.c.signed_up_at >= start, c.c.signed_up_at < end)
        .group_by(c.c.acquisition_channel),
    )
    window = [(period.start, period.end)]
    cac = _engine.compute(CATALOGUE["cac"], window, settings, engine, "acquisition_channel")
    channels = []
    for r in new:
        cell = cac.get((0, _label(r["channel"])))
        spend = (cell.extras or {}).get("spend") if cell else None
        channels.append(ChannelRow(_label(r["channel"]), _int(r["n"]), _int(r["paying"]), spend, cell.value if cell else None))
    seen = {row.channel for row in channels}
    for (_, channel), cell in cac.items():  # channels with spend but no new customer
        spend = (cell.extras or {}).get("spend")
        if channel is not None and channel not in seen and spend:
            channels.append(ChannelRow(channel, 0, 0, spend, None))
    channels.sort(key=lambda r: (-r.new_customers, r.channel))

    ld = leads
    funnel = [
        FunnelRow(_label(r["source"]), _int(r["leads"]), _int(r["mqls"]), _int(r["sqls"]), _int(r["customers"]))
        for r in _rows(
            engine,
            select(
                ld.c.source,
                func.count().label("leads"),
                func.count(ld.c.mql_at).label("mqls"),
                func.count(ld.c.sql_at).label("sqls"),
                func.count(ld.c.converted_at).label("customers"),
            )
            .where(ld.c.created_at >= start, ld.c.created_at < end)
            .group_by(ld.c.source),
        )
    ]
    funnel.sort(key=lambda r: (-r.leads, r.source))
    total = FunnelRow(
        "all sources",
        sum(r.leads for r in funnel),
        sum(r.mqls for r in funnel),
        sum(r.sqls for r in funnel),
        sum(r.customers for r in funnel),
    )
    times = _engine.compute(CATALOGUE["time_to_convert"], window, settings, engine).get((0, None))
    extras = (times.extras or {}) if times else {}
    return AcquisitionReport(
        period=period,
        channels=channels,
        funnel=funnel,
        total=total,
        days_to_mql=extras.get("to_mql"),
        days_to_sql=extras.get("to_sql"),
        days_to_customer=times.value if times else None,
        converted=_int(extras.get("converted")),
    )


# ---- complaints -------------------------------------------------------------------------------


def complaints(period: Period, engine: Engine, settings: Settings) -> ComplaintsReport:
    start, end = _bounds(period, settings)
    t, r = tickets, survey_responses
    in_period = and_(t.c.opened_at >= start, t.c.opened_at < end)
    volume = _rows(
        engine,
        select(t.c.category, func.count().label("tickets"), func.count(t.c.customer_id.distinct()).label("customers"))
        .where(in_period)
        .group_by(t.c.category),
    )
    answered = and_(r.c.responded_at >= start, r.c.responded_at < end, r.c.survey.in_(("nps", "csat")))
    overall = _scores(_rows(engine, select(*_score_aggregates(r)).where(answered))[0])
    ticketed = (
        select(t.c.customer_id, t.c.category).where(in_period, t.c.customer_id.is_not(None)).distinct().subquery("ticketed")
    )
    with_ticket = {
        _label(row["category"]): _scores(row)
        for row in _rows(
            engine,
            select(ticketed.c.category, *_score_aggregates(r))
            .select_from(r.join(ticketed, ticketed.c.customer_id == r.c.customer_id))
            .where(answered)
            .group_by(ticketed.c.category),
        )
    }
    rows = []
    for row in volume:
        category = _label(row["category"])
        mine = with_ticket.get(category, Scores())
        rows.append(CategoryRow(category, _int(row["tickets"]), _int(row["customers"]), mine, overall - mine))
    by_volume = sorted(rows, key=lambda c: (-c.tickets, c.category))

    def harm(c: CategoryRow):
        nps = c.nps_effect
        csat = c.csat_effect
        return (nps is None, nps if nps is not None else 0.0, csat if csat is not None else 0.0, c.category)

    by_effect = sorted(rows, key=harm)
    touch = func.lower(r.c.touchpoint)
    points = _rows(
        engine,
        select(
            touch.label("touchpoint"),
            *_score_aggregates(r),
            count_if(and_(r.c.survey == "csat", r.c.score < 4)).label("dissatisfied"),
        )
        .where(answered)
        .group_by(touch),
    )
    touchpoints = [TouchpointRow(_label(p["touchpoint"]), _scores(p), _int(p["dissatisfied"])) for p in points]
    touchpoints.sort(key=lambda p: (-p.scores.detractors, -p.dissatisfied, p.touchpoint))
    return ComplaintsReport(period, by_volume, by_effect, touchpoints, overall)


# ---- before churn -----------------------------------------------------------------------------


def _cohorts(period: Period, settings: Settings):
    """Churned in the period (anchor: churned_at) and retained through it (active at its start
    and end; anchor: the period's end): customer_id, grp, anchor."""
    start, end = _bounds(period, settings)
    c = customers
    churned = select(c.c.customer_id, literal("churned", String).label("grp"), c.c.churned_at.label("anchor")).where(
        c.c.churned_at >= start, c.c.churned_at < end
    )
    retained = select(
        c.c.customer_id, literal("retained", String).label("grp"), literal(end, c.c.churned_at.type).label("anchor")
    ).where(c.c.signed_up_at < start, or_(c.c.churned_at.is_(None), c.c.churned_at >= end))
    return union_all(churned, retained).subquery("cohorts")


def _before(column, cohort):
    return and_(column >= add_days(cohort.c.anchor, -LOOKBACK_DAYS), column < cohort.c.anchor)


def before_churn(period: Period, engine: Engine, settings: Settings) -> BeforeChurnReport:
    k = _cohorts(period, settings)
    t, r, ue = tickets, survey_responses, usage_events
    sizes = {row["grp"]: _int(row["n"]) for row in _rows(engine, select(k.c.grp, func.count().label("n")).group_by(k.c.grp))}
    start, end = _bounds(period, settings)
    c = customers
    joined = _rows(engine, select(count_if(and_(c.c.churned_at >= start, c.c.churned_at < end, c.c.signed_up_at >= start))
                                  .label("n")))
    ticket_rows = _rows(
        engine,
        select(k.c.grp, t.c.category, func.count().label("n"))
        .select_from(k.join(t, and_(t.c.customer_id == k.c.customer_id, _before(t.c.opened_at, k))))
        .group_by(k.c.grp, t.c.category),
    )
    survey_rows = {
        row["grp"]: row
        for row in _rows(
            engine,
            select(
                k.c.grp,
                *_score_aggregates(r),
                func.avg(when(r.c.survey == "nps", r.c.score)).label("nps_mean"),
                func.avg(when(r.c.survey == "csat", r.c.score)).label("csat_mean"),
            )
            .select_from(k.join(r, and_(r.c.customer_id == k.c.customer_id, _before(r.c.responded_at, k))))
            .group_by(k.c.grp),
        )
    }
    first_cut = add_days(k.c.anchor, -2 * SLICE_DAYS)
    last_cut = add_days(k.c.anchor, -SLICE_DAYS)
    usage_rows = {
        row["grp"]: row
        for row in _rows(
            engine,
            select(
                k.c.grp,
                count_if(ue.c.occurred_at < first_cut).label("u1"),
                count_if(and_(ue.c.occurred_at >= first_cut, ue.c.occurred_at < last_cut)).label("u2"),
                count_if(ue.c.occurred_at >= last_cut).label("u3"),
            )
            .select_from(k.join(ue, and_(ue.c.customer_id == k.c.customer_id, _before(ue.c.occurred_at, k))))
            .group_by(k.c.grp),
        )
    }

    def cohort(grp: str) -> Cohort:
        s = survey_rows.get(grp, {})
        u = usage_rows.get(grp, {})
        return Cohort(
            customers=sizes.get(grp, 0),
            tickets=sum(_int(row["n"]) for row in ticket_rows if row["grp"] == grp),
            scores=_scores(s),
            nps_mean=None if s.get("nps_mean") is None else float(s["nps_mean"]),
            csat_mean=None if s.get("csat_mean") is None else float(s["csat_mean"]),
            usage=(_int(u.get("u1")), _int(u.get("u2")), _int(u.get("u3"))),
        )

    categories = sorted(
        ((_label(row["category"]), _int(row["n"])) for row in ticket_rows if row["grp"] == "churned"),
        key=lambda kv: (-kv[1], kv[0]),
    )
    return BeforeChurnReport(
        period, cohort("churned"), cohort("retained"), categories, signed_up_in_period=_int(joined[0]["n"])
    )


# ---- profitability ----------------------------------------------------------------------------


def profitability(period: Period, engine: Engine, settings: Settings, n: int = TOP_N) -> ProfitabilityReport:
    start, end = _bounds(period, settings)
    rows = profit_rows()
    per_customer = (
        select(
            rows.c.customer_id,
            func.sum(rows.c.revenue).label("revenue"),
            func.sum(rows.c.cost).label("cost"),
            (func.sum(rows.c.revenue) - func.sum(rows.c.cost)).label("profit"),
        )
        .where(rows.c.at >= start, rows.c.at < end)
        .group_by(rows.c.customer_id)
        .subquery("customer_profit")
    )
    named = select(per_customer, customers.c.name).select_from(
        per_customer.outerjoin(customers, customers.c.customer_id == per_customer.c.customer_id)
    )

    def ranked(order, limit: int) -> list[CustomerProfit]:
        stmt = named.order_by(order, per_customer.c.customer_id).limit(limit)
        return [
            CustomerProfit(row["customer_id"], row["name"], float(row["revenue"] or 0), float(row["cost"] or 0))
            for row in _rows(engine, stmt)
        ]

    totals = _rows(
        engine,
        select(
            func.count().label("customers"),
            count_if(per_customer.c.profit < 0).label("unprofitable"),
            func.sum(per_customer.c.profit).label("profit"),
        ),
    )[0]
    count = _int(totals["customers"])
    # With fewer than 2n customers the two lists share none: each gets half of them.
    each = min(n, count // 2) if count < 2 * n else n
    best = ranked(per_customer.c.profit.desc(), each) if each else []
    worst = ranked(per_customer.c.profit.asc(), each) if each else []
    return ProfitabilityReport(period, best, worst, count, _int(totals["unprofitable"]), float(totals["profit"] or 0))


# ---- the registry and the entry points --------------------------------------------------------

REPORTS: dict[str, ReportSpec] = {
    spec.name: spec
    for spec in (
        ReportSpec(
            "acquisition", "How do people become our customers?", acquisition,
            ("acquisition", "acquisitions", "how-customers-come", "funnel-report"),
            "new customers by channel with CAC, the lead funnel by source, time to convert",
            ("customers", "leads", *CATALOGUE["cac"].tables, *CATALOGUE["time_to_convert"].tables),
        ),
        ReportSpec(
            "complaints", "What creates unhappy customers?", complaints,
            ("complaints", "complaint", "unhappy", "unhappy-customers", "detractors"),
            "ticket categories by volume and by their effect on NPS/CSAT; detractor touchpoints",
            ("tickets", "survey_responses"),
        ),
        ReportSpec(
            "before-churn", "What happens when customers want to leave?", before_churn,
            ("before-churn", "before churn", "pre-churn", "churn-report", "leaving"),
            "the 90 days before churn vs customers who stayed: tickets, scores, usage trend",
            ("customers", "tickets", "survey_responses", "usage_events"),
        ),
        ReportSpec(
            "profitability", "Who are our good and bad customers?", profitability,
            ("profitability", "good-customers", "bad-customers", "customer-profitability", "most-profitable"),
            "the most and least profitable customers (revenue − cost to serve)",
            ("orders", "costs", "customers"),
        ),
    )
}

_WORDS = {w.replace("-", " "): name for name, spec in REPORTS.items() for w in (name, *spec.words)}


def find(text: str) -> tuple[str, int] | None:
    """The report named at the start of ``tokens`` text and how many tokens name it."""
    tokens, _ = tokenize(text)
    for span in (3, 2, 1):
        phrase = " ".join(tokens[:span])
        if len(tokens) >= span and phrase in _WORDS:
            return _WORDS[phrase], span
    return None


def run(name: str, period: Period, engine: Engine | None = None, settings: Settings | None = None) -> Report:
    spec = REPORTS.get(name) or REPORTS.get(_WORDS.get(name.replace("-", " "), ""))
    if spec is None:
        raise QueryError(f"I don't know a report called `{name}`. Reports: {', '.join(REPORTS)}.")
    settings = settings or Settings.from_env()
    engine = engine or database.get_engine()
    database.check_tables(engine, relations.unmapped_tables(dict.fromkeys(spec.tables)), spec.name)
    try:
        return spec.build(period, engine, settings)
    except database.Refused as exc:
        if exc.kpi:
            raise
        raise exc.for_kpi(spec.name) from exc


def run_report(text: str, *, today: date, url: str | None = None, settings: Settings | None = None) -> Report:
    """``acquisition last-quarter``, ``before churn 2026-Q3`` … (no period: the last 30 days)."""
    settings = settings or Settings.from_env()
    found = find(text)
    if found is None:
        raise QueryError(f"Which report? Try one of: {', '.join(REPORTS)} (e.g. `complaints last-month`).")
    name, used = found
    tokens, _ = tokenize(text)
    period = None
    i = used
    while i < len(tokens):
        match = match_period(tokens, i, today, settings)
        if match is not None:
            if period is not None:
                raise QueryError("I found two periods there; a report covers one.")
            period = match.period
            i += match.length
            continue
        if tokens[i] not in FILLER and tokens[i] != "report":
            raise QueryError(f"I understood the `{name}` report but not `{tokens[i][:40]}`. Try `{name} last-quarter`.")
        i += 1
    period = period or default_period(today, settings)
    return run(name, period, database.get_engine(url), settings)


# ---- text ------------------------------------------------------------------------------------


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.0f}%"


def _num(v: float | None, digits: int = 1) -> str:
    if v is None:
        return "–"
    text = f"{v:,.{digits}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.,") else text  # no "-0"


def _signed(v: float | None) -> str:
    if v is None:
        return "–"
    text = f"{v:+.0f}"
    return "0" if text in ("+0", "-0") else text


def _money(v: float | None) -> str:
    if v is None:
        return "–"
    sign = "-" if v < 0 else ""
    return f"{sign}{currency()}{abs(v):,.0f}"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)) for r in rows]
    return "```\n" + "\n".join(lines) + "\n```"


def _customers(n: int) -> str:
    return f"{n} customer" if n == 1 else f"{n} customers"


def _head(report: Report) -> str:
    return f"*{report.question}* — {report.period}"


def _acquisition_text(r: AcquisitionReport) -> list[str]:
    out = []
    total_new = sum(c.new_customers for c in r.channels)
    if r.channels:
        top = r.channels[0]
        out.append(f"{total_new} new customers; most came through *{top.channel}* ({top.new_customers}).")
        out.append(
            _table(
                [["channel", "new", "paying", "spend", "CAC"]]
                + [[c.channel[:24], str(c.new_customers), str(c.paying), _money(c.spend), _money(c.cac)] for c in r.channels]
            )
        )
    else:
        out.append("No new customers in this period.")
    if r.funnel:
        rows = [["lead source", "leads", "MQL", "SQL", "customers", "lead→cust."]]
        for f in [*r.funnel, r.total]:
            rows.append([f.source[:24], str(f.leads), str(f.mqls), str(f.sqls), str(f.customers), _pct(f.conversion)])
        out.append("Funnel of the leads created in the period:")
        out.append(_table(rows))
        t = r.total
        out.append(
            f"Lead → MQL {_pct(t.mql_rate)}, MQL → SQL {_pct(t.sql_rate)}, lead → customer {_pct(t.conversion)}."
        )
    else:
        out.append("No leads created in this period.")
    if r.days_to_customer is not None or r.days_to_mql is not None:
        out.append(
            f"Time from first touch (median days): to MQL {_num(r.days_to_mql)}, to SQL {_num(r.days_to_sql)}, "
            f"to customer {_num(r.days_to_customer)} ({r.converted} conversions in the period)."
        )
    return out


def _complaints_text(r: ComplaintsReport) -> list[str]:
    out = []
    if r.by_volume:
        top = r.by_volume[0]
        out.append(f"{sum(c.tickets for c in r.by_volume)} tickets; the most common category is *{top.category}* ({top.tickets}).")
        worst = next((c for c in r.by_effect if c.nps_effect is not None and c.nps_effect < 0), None)
        if worst is not None:
            out.append(
                f"Most harmful: *{worst.category}* — NPS {_num(worst.with_ticket.nps, 0)} among customers who opened one "
                f"vs {_num(worst.without.nps, 0)} among the rest ({_signed(worst.nps_effect)} points)."
            )
        rows = [["category", "tickets", "customers", "NPS with", "NPS w/o", "effect", "CSAT with", "CSAT w/o"]]
        for c in r.by_effect:
            rows.append(
                [
                    c.category[:24], str(c.tickets), str(c.customers), _num(c.with_ticket.nps, 0),
                    _num(c.without.nps, 0), _signed(c.nps_effect), _pct(c.with_ticket.csat), _pct(c.without.csat),
                ]
            )
        out.append("Ticket categories by their effect on NPS (worst first):")
        out.append(_table(rows))
    else:
        out.append("No tickets opened in this period.")
    if r.touchpoints:
        rows = [["touchpoint", "NPS n", "detractors", "NPS", "NPS pts lost", "CSAT < 4"]]
        for p in r.touchpoints:
            rows.append(
                [
                    p.touchpoint[:24], str(p.scores.nps_n), str(p.scores.detractors), _num(p.scores.nps, 0),
                    _num(r.points_lost(p)), str(p.dissatisfied),
                ]
            )
        out.append(f"Where detractors answer from (overall NPS {_num(r.overall.nps, 0)}, n = {r.overall.nps_n}):")
        out.append(_table(rows))
    return out


def _before_churn_text(r: BeforeChurnReport) -> list[str]:
    c, k = r.churned, r.retained
    if not c.customers:
        return ["No customer churned in this period."]
    joined = r.signed_up_in_period
    reconcile = ""
    if joined:
        reconcile = (
            f" ({_customers(c.customers - joined)} at the period's start, whom the churn rate counts, and "
            f"{joined} who signed up during the period and left within it)"
        )
    out = [
        f"{_customers(c.customers)} churned{reconcile}. Their last {r.days} days before leaving, against the last "
        f"{r.days} days of the {_customers(k.customers)} who stayed:"
    ]
    cu, ku = c.usage_per_customer, k.usage_per_customer
    rows = [
        ["per customer", "churned", "stayed"],
        ["tickets", _num(c.tickets_per_customer), _num(k.tickets_per_customer)],
        ["NPS (score)", _num(c.scores.nps, 0), _num(k.scores.nps, 0)],
        ["mean NPS answer", _num(c.nps_mean), _num(k.nps_mean)],
        ["CSAT", _pct(c.scores.csat), _pct(k.scores.csat)],
        ["mean CSAT answer", _num(c.csat_mean), _num(k.csat_mean)],
        ["usage, days 90-61", _num(cu[0]), _num(ku[0])],
        ["usage, days 60-31", _num(cu[1]), _num(ku[1])],
        ["usage, days 30-0", _num(cu[2]), _num(ku[2])],
        ["usage trend", _pct(c.usage_trend), _pct(k.usage_trend)],
    ]
    out.append(_table(rows))
    if r.categories:
        out.append("What churned customers contacted support about: " + ", ".join(f"{cat} ({n})" for cat, n in r.categories[:5]) + ".")
    return out


def _profitability_text(r: ProfitabilityReport) -> list[str]:
    if not r.customers:
        return ["No revenue or cost in this period."]
    out = [
        f"{r.customers} customers with revenue or cost; {r.unprofitable} cost more to serve than they brought in. "
        f"Profit in total: {_money(r.profit)}."
    ]
    for title, rows in (("Most profitable ('good')", r.best), ("Least profitable ('bad')", r.worst)):
        table = [["customer", "revenue", "cost", "profit"]]
        table += [[(p.name or p.customer_id)[:28], _money(p.revenue), _money(p.cost), _money(p.profit)] for p in rows]
        out.append(f"{title}:")
        out.append(_table(table))
    return out


_TEXT: dict[type, Callable[[Any], list[str]]] = {
    AcquisitionReport: _acquisition_text,
    ComplaintsReport: _complaints_text,
    BeforeChurnReport: _before_churn_text,
    ProfitabilityReport: _profitability_text,
}


def render_text(report: Report) -> str:
    """The report as Slack mrkdwn (and plain text for the terminal)."""
    return "\n".join([_head(report), *_TEXT[type(report)](report)])


# ---- charts ----------------------------------------------------------------------------------


def _figure(panels: int = 1) -> tuple[Figure, list]:
    # matplotlib loads only when a chart is drawn (a text answer should not pay ~0.5 s for it)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, panels, i + 1) for i in range(panels)]
    for ax in axes:
        ax.spines[["top", "right"]].set_visible(False)
    return fig, axes


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _hbars(ax, labels: list[str], values: list[float], title: str, colors=None, unit: str = "count") -> None:
    """Bars in the house style (:mod:`metrics.chart_style`): human names, values labelled
    beyond each bar ($300k, 12.5k), losses left of zero."""
    from matplotlib.ticker import FuncFormatter

    from metrics import chart_style as style

    ys = list(range(len(labels)))[::-1]
    ax.barh(ys, values, color=colors or CURRENT, height=0.6)
    ax.set_yticks(ys, [style.human(label)[:22] for label in labels])
    ax.set_title(title, fontsize=11, loc="left")
    ax.grid(axis="x", alpha=0.3)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: style.tick(unit, v)))
    if values:
        lo, hi = min(0.0, *values), max(0.0, *values)
        span = (hi - lo) or 1.0
        ax.set_xlim(lo - (0.3 * span if lo < 0 else 0.0), hi + 0.3 * span)
    for y, v in zip(ys, values, strict=True):
        ax.annotate(style.compact(unit, v), (v, y), va="center", ha="left" if v >= 0 else "right", fontsize=8,
                    xytext=(4 if v >= 0 else -4, 0), textcoords="offset points")


def render_png(report: Report) -> bytes | None:
    """A chart for the report, or None when there is nothing to draw."""
    if isinstance(report, AcquisitionReport):
        if not report.channels and not report.total.leads:
            return None
        fig, (left, right) = _figure(2)
        rows = report.channels[:10]
        _hbars(left, [c.channel for c in rows], [c.new_customers for c in rows], "New customers by channel")
        t = report.total
        _hbars(right, ["leads", "MQL", "SQL", "customers"], [t.leads, t.mqls, t.sqls, t.customers], "Lead funnel")
    elif isinstance(report, ComplaintsReport):
        with_effect = [c for c in report.by_effect if c.nps_effect is not None][:10]
        if not report.by_volume:
            return None
        fig, (left, right) = _figure(2)
        vol = report.by_volume[:10]
        _hbars(left, [c.category for c in vol], [c.tickets for c in vol], "Tickets by category")
        effects = [c.nps_effect for c in with_effect if c.nps_effect is not None]
        _hbars(
            right, [c.category for c in with_effect], effects, "NPS with vs without a ticket (points)",
            [BAD if e < 0 else GOOD for e in effects], unit="score",
        )
        right.axvline(0, color=PREVIOUS, linewidth=1)
    elif isinstance(report, BeforeChurnReport):
        if not report.churned.customers:
            return None
        fig, (left, right) = _figure(2)
        right.remove()  # three measures in three units: a panel each, never one shared axis
        grid = right.get_subplotspec().subgridspec(3, 1, hspace=0.15)
        xs = ["days 90-61", "days 60-31", "days 30-0"]
        for cohort, label, color in ((report.churned, "churned", BAD), (report.retained, "stayed", CURRENT)):
            ys = [v if v is not None else float("nan") for v in cohort.usage_per_customer]
            left.plot(xs, ys, marker="o", color=color, label=label)
        left.set_title("Usage events per customer", fontsize=11, loc="left")
        left.set_ylim(bottom=0)  # counts from zero
        left.legend(frameon=False, fontsize=9)
        panels = [
            (f"Tickets per customer, last {report.days} days", report.churned.tickets_per_customer,
             report.retained.tickets_per_customer, None),
            ("Mean NPS answer (0-10)", report.churned.nps_mean, report.retained.nps_mean, (0.0, 10.0)),
            ("Mean CSAT answer (1-5)", report.churned.csat_mean, report.retained.csat_mean, (1.0, 5.0)),
        ]
        for k, (name, churned_value, stayed_value, scale) in enumerate(panels):
            ax = fig.add_subplot(grid[k])
            ax.spines[["top", "right"]].set_visible(False)
            shown = [(lbl, v, c) for lbl, v, c in (("churned", churned_value, BAD), ("stayed", stayed_value, CURRENT))]
            base = scale[0] if scale else 0.0
            ax.barh([1, 0], [0.0 if v is None else v - base for _, v, _ in shown], color=[c for _, _, c in shown],
                    height=0.6, left=base)
            ax.set_yticks([1, 0], [lbl for lbl, _, _ in shown], fontsize=8)
            for y, (_, v, _) in zip([1, 0], shown, strict=True):
                ax.annotate("no data" if v is None else f"{v:.2f}", (base if v is None else v, y),
                            va="center", fontsize=8, xytext=(3, 0), textcoords="offset points")
            if scale:  # the whole answer scale, so a 0.1 gap looks like one
                ax.set_xlim(scale[0], scale[1])
            ax.set_title(name, fontsize=9, loc="left")
            ax.tick_params(axis="x", labelsize=8)
    elif isinstance(report, ProfitabilityReport):
        ranked = report.best + [p for p in report.worst if p not in report.best]
        if not ranked:
            return None
        ranked.sort(key=lambda p: -p.profit)
        fig, (ax,) = _figure(1)
        _hbars(
            ax, [p.name or p.customer_id for p in ranked], [p.profit for p in ranked], "Profit per customer (revenue − cost to serve)",
            [GOOD if p.profit >= 0 else BAD for p in ranked], unit="currency",
        )
        ax.axvline(0, color=PREVIOUS, linewidth=1)
    else:
        return None
    fig.suptitle(f"{report.question} — {report.period.label}", fontsize=13, x=0.01, ha="left")
    return _png(fig)


__all__ = [
    "REPORTS", "run", "run_report", "render_text", "render_png", "find", "AcquisitionReport",
    "ComplaintsReport", "BeforeChurnReport", "ProfitabilityReport", "LOOKBACK_DAYS",
]


def to_json(report: Report) -> dict[str, Any]:
    """The report's dataclass fields as plain JSON-able values."""
    from dataclasses import asdict

    data = asdict(report)
    data["period"] = {"start": report.period.start.isoformat(), "end": report.period.end.isoformat(), "label": report.period.label}
    return data
