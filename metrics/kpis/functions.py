"""Named finalizers a data entry refers to (``finalize: nps``): the few sums no arithmetic
expression states, such as a margin of error, each tested by hand (tests/test_kpi_functions.py).

A finalizer turns the aggregates an entry declares (``aggregates:``, one SQL aggregate each)
into the KPI's value and extras. ``needs`` lists the aggregate names it reads; ``args`` the
options an entry may pass (``finalize: {function: ratio, num: hits, den: n, scale: 100}``),
those naming aggregates in ``refs``. The loader checks names, arguments and aggregates, so a
typo is a load error with file and line, never a wrong number.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from metrics.kpis.common import (
    DAY,
    MONTH_DAYS,
    YEAR_DAYS,
    div,
    inactive_days,
    per_month,
    per_week,
    window_days,
)
from metrics.kpis.common import num as num_or_zero
from metrics.spec import Aggs

Z95 = 1.96


@dataclass(frozen=True)
class Finalizer:
    fn: Callable[..., dict[str, Any]]
    needs: tuple[str, ...] = ()  # aggregates it always reads
    args: tuple[str, ...] = ()  # options an entry may pass
    refs: tuple[str, ...] = ()  # the options that name aggregates
    check: Callable[[Mapping[str, Any]], str | None] | None = None  # options -> a problem, or None
    required: tuple[str, ...] = ()  # options an entry must give


def nps(a: Aggs) -> dict[str, Any]:
    """100 × (promoters − detractors) ÷ n, with the 95% margin of error of that difference."""
    n = a.get("n") or 0
    if not n:
        return {"value": None}
    p, d = (a["promoters"] or 0) / n, (a["detractors"] or 0) / n
    variance = p + d - (p - d) ** 2
    return {
        "value": 100.0 * (p - d),
        "moe": 100.0 * Z95 * math.sqrt(max(variance, 0.0) / n),
        "promoters_pct": 100.0 * p,
        "detractors_pct": 100.0 * d,
        "passives_pct": 100.0 * (1 - p - d),
    }


def share_with_moe(a: Aggs) -> dict[str, Any]:
    """Percent of the n answers that are hits, with its 95% margin of error (CSAT-style)."""
    n = a.get("n") or 0
    if not n:
        return {"value": None}
    p = (a["hits"] or 0) / n
    return {"value": 100.0 * p, "moe": 100.0 * Z95 * math.sqrt(p * (1 - p) / n)}


def mean_with_moe(a: Aggs) -> dict[str, Any]:
    """Mean of n answers from their sum and sum of squares, with its 95% margin of error."""
    n = a.get("n") or 0
    if not n:
        return {"value": None}
    mean = (a["total"] or 0) / n
    var = max(((a["squares"] or 0) - n * mean * mean) / (n - 1), 0.0) if n > 1 else 0.0
    return {"value": mean, "moe": Z95 * math.sqrt(var / n)}


def retention(a: Aggs) -> dict[str, Any]:
    """(customers active at the end − new customers) ÷ customers active at the start × 100."""
    start = a.get("active_start")
    if not start:
        return {"value": None}
    return {"value": 100.0 * ((a.get("active_end") or 0) - (a.get("new") or 0)) / start}


def churn_rates(a: Aggs) -> dict[str, float] | None:
    """Period churn c, and its monthly / yearly equivalents at the same pace:
    1 − (1 − c)^(30.4375 / days) and 1 − (1 − c)^(365.25 / days)."""
    start, churned, days = a.get("active_start"), a.get("churned"), window_days(a)
    if not start or not days:
        return None
    c = min(float(churned or 0) / float(start), 1.0)
    return {
        "period": 100.0 * c,
        "monthly": 100.0 * (1.0 - (1.0 - c) ** (MONTH_DAYS / days)),
        "yearly": 100.0 * (1.0 - (1.0 - c) ** (YEAR_DAYS / days)),
    }


def churn_pace(a: Aggs, pace: str = "period") -> dict[str, Any]:
    """Churn of the customers active at the start, over the period or at the same pace per
    month or year (the others as extras); ``churned_new`` (joined and left within the period,
    not in the rate) beside it, so the before-churn report reconciles."""
    rates = churn_rates(a)
    if rates is None:
        return {"value": None}
    return {
        "value": rates[pace],
        **{k: v for k, v in rates.items() if k != pace},
        "churned": a.get("churned"),
        "churned_new": a.get("churned_new") or None,  # None: nothing to reconcile, not shown
    }


def tenure(a: Aggs) -> dict[str, Any]:
    """Mean months (of 30.4375 days) from sign-up to the period's end over customers active
    then, their median, and the mean lifetime of those who churned in the period."""
    n = a.get("active_end")
    if not n:
        return {"value": None}
    churned = a.get("churned") or 0
    med = a.get("median_seconds")
    return {
        "value": float(a.get("tenure_seconds") or 0) / n / DAY / MONTH_DAYS,
        "median": None if med is None else float(med) / DAY / MONTH_DAYS,
        "churned_lifetime": div(a.get("churned_seconds"), churned, 1 / DAY / MONTH_DAYS),
        "churned": churned,
    }


def _shown(a: Aggs, show: Any, rates: Any, amounts: Any = ()) -> dict[str, Any]:
    """Extras: aggregates as they are (``show``: names, or output name -> aggregate),
    percentages (``rates``: output name -> [numerator, denominator], × 100) and sums as
    numbers, 0 when there is none (``amounts``: names)."""
    out: dict[str, Any] = {name: div(a.get(num), a.get(den), 100.0) for name, (num, den) in (rates or {}).items()}
    pairs = show.items() if isinstance(show, Mapping) else ((s, s) for s in show or ())
    out.update({name: a.get(agg) for name, agg in pairs})
    out.update({name: num_or_zero(a, name) for name in amounts or ()})
    return out


def value(a: Aggs, of: str, show: Any = (), rates: Any = None, exact: bool = False) -> dict[str, Any]:
    """One aggregate as the value (a float, or as counted with ``exact``), plus extras."""
    v = a.get(of)
    return {"value": v if exact or v is None else float(v), **_shown(a, show, rates)}


def ratio(a: Aggs, num: str, den: str, scale: float = 1.0, show: Any = (), rates: Any = None,
          per: str | None = None, amounts: Any = ()) -> dict[str, Any]:
    """num ÷ den × scale (no data when den is 0 or missing), plus extras; ``per: month`` or
    ``week`` turns it into a monthly or weekly average over the window (needs window_seconds)."""
    v = div(a.get(num), a.get(den), float(scale))
    if per is not None:
        v = (per_month if per == "month" else per_week)(v, a)
    return {"value": v, **_shown(a, show, rates, amounts)}


def weekly(a: Aggs, of: str, show: Any = ()) -> dict[str, Any]:
    """A count over the window as a weekly average (needs ``window_seconds``), plus extras."""
    return {"value": per_week(a.get(of), a), **_shown(a, show, None)}


def mean_of(a: Aggs, total: str, n: str, median: str | None = None, divide: float = 1,
            count_as: str | None = None) -> dict[str, Any]:
    """total ÷ n ÷ ``divide`` (e.g. 60: seconds to minutes), the median ÷ ``divide`` and n
    (named ``count_as``) as extras; no data without rows. A missing total with rows is 0."""
    count = a.get(n)
    if not count:
        return {"value": None}
    out: dict[str, Any] = {"value": float(a.get(total) or 0) / count / divide}
    if median is not None:
        med = a.get(median)
        out["median"] = None if med is None else float(med) / divide
    if count_as is not None:
        out[count_as] = count
    return out


def in_days(a: Aggs, of: str, days: Any = None, show: Any = ()) -> dict[str, Any]:
    """Seconds as days: the aggregate ``of`` as the value, ``days`` (extra name -> aggregate)
    as extras in days, ``show`` as they are (time to convert, to MQL, to SQL)."""

    def as_days(key: str) -> float | None:
        v = a.get(key)
        return None if v is None else float(v) / DAY

    return {"value": as_days(of), **{name: as_days(agg) for name, agg in (days or {}).items()},
            **_shown(a, show, None)}


def acquisition_cost(a: Aggs) -> dict[str, Any]:
    """Marketing spend ÷ new customers (CAC), both beside it; no data with neither."""
    spend, new = a.get("spend"), a.get("new")
    if spend is None and new is None:
        return {"value": None}
    return {"value": div(spend, new), "spend": num_or_zero(a, "spend"), "new_customers": num_or_zero(a, "new")}


def leads_per_spend(a: Aggs) -> dict[str, Any]:
    """Leads per 1,000 of marketing spend, with leads, spend and the cost per lead; no data
    with neither."""
    if a.get("spend") is None and a.get("leads") is None:
        return {"value": None}
    return {
        "value": div(a.get("leads"), a.get("spend"), 1000.0),
        "leads": num_or_zero(a, "leads"),
        "spend": num_or_zero(a, "spend"),
        "cost_per_lead": div(a.get("spend"), a.get("leads")),
    }


def marketing_return(a: Aggs) -> dict[str, Any]:
    """Revenue earned from the customers of channels with spend ÷ that spend ($ per $), with
    earned, spend and all channels' revenue beside it; no data without spend."""
    if a.get("spend") is None:
        return {"value": None}
    return {
        "value": div(a.get("earned"), a.get("spend")),
        "earned": num_or_zero(a, "earned"),
        "spend": num_or_zero(a, "spend"),
        "revenue_all_channels": num_or_zero(a, "revenue"),
    }


PROFIT = {
    "margin": lambda revenue, cost, a: revenue - cost,
    "gross_margin": lambda revenue, cost, a: div(revenue - cost, revenue, 100.0),
    "per_customer": lambda revenue, cost, a: div(revenue - cost, a.get("customers")),
}


def profit(a: Aggs, value: str = "margin") -> dict[str, Any]:
    """Revenue − cost to serve (``margin``), as % of revenue (``gross_margin``) or per
    customer with revenue or cost (``per_customer``, reads ``customers``); revenue, cost and
    profit as extras. No data when there is neither revenue nor cost; one without the other is 0."""
    if a.get("revenue") is None and a.get("cost") is None:
        return {"value": None}
    revenue, cost = num_or_zero(a, "revenue"), num_or_zero(a, "cost")
    return {"value": PROFIT[value](revenue, cost, a), "revenue": revenue, "cost": cost, "profit": revenue - cost}


def _formula(expr: str) -> Callable[[Mapping[str, float | None]], float | None]:
    """Built per call: the evaluator keeps the values it reads, so one is never shared by threads."""
    from metrics.model.compile import _arithmetic  # the same arithmetic as a derived metric's

    return _arithmetic(expr)


def arithmetic(a: Aggs, expr: str, show: Any = (), rates: Any = None, amounts: Any = ()) -> dict[str, Any]:
    """Arithmetic over the aggregates (``100 * kept / mrr_start``): + - * / parentheses and
    numbers, evaluated left to right as written; a missing aggregate or a division by zero is
    no data. Extras as ``ratio`` gives them."""
    values = {k: None if v is None else float(v) for k, v in a.items()}
    return {"value": _formula(expr)(values), **_shown(a, show, rates, amounts)}


def _check_arithmetic(args: Mapping[str, Any]) -> str | None:
    from metrics.model.compile import Invalid, expression_names

    expr = args.get("expr")
    if not isinstance(expr, str) or not expression_names(expr):
        return "expr: arithmetic over the aggregates' names"
    try:
        _formula(expr)
    except Invalid:
        return f"expr: `{expr}`: only + - * / ( ), numbers and aggregate names"
    return None


def downtime(a: Aggs) -> dict[str, Any]:
    """Minutes of outage in the window (``down`` seconds, overlaps counted once), the outages
    and the longest (minutes) beside it; no data when no incident is tracked at all."""
    if not a.get("tracked"):
        return {"value": None}
    longest = a.get("longest")
    return {
        "value": num_or_zero(a, "down") / 60.0,
        "incidents": a.get("incidents"),
        "longest": None if longest is None else float(longest) / 60.0,
    }


def uptime(a: Aggs) -> dict[str, Any]:
    """100 × (1 − down seconds ÷ the window's seconds), the downtime (minutes) and outages beside it."""
    if not a.get("tracked") or not a.get("window_seconds"):
        return {"value": None}
    down = num_or_zero(a, "down")
    return {
        "value": 100.0 * max(0.0, 1.0 - down / num_or_zero(a, "window_seconds")),
        "downtime_minutes": down / 60.0,
        "incidents": a.get("incidents"),
    }


def inactive(a: Aggs) -> dict[str, Any]:
    """Customers without usage (``inactive``) of those active at the end (``active``), their
    share, and the days without use that count (``KPI_INACTIVE_DAYS``, as the rows read it)."""
    active = a.get("active")
    if not active:
        return {"value": None}
    count = num_or_zero(a, "inactive")
    return {"value": count, "pct": 100.0 * count / active, "days": inactive_days()}


def _check_ratio(args: Mapping[str, Any]) -> str | None:
    per = args.get("per")
    if per is not None and per not in ("week", "month"):
        return f"per: `{per}` (week or month)"
    scale = args.get("scale", 1)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        return "scale must be a number"
    return None


_EXTRAS = ("show", "rates")
FINALIZERS: dict[str, Finalizer] = {
    "nps": Finalizer(nps, needs=("n", "promoters", "detractors")),
    "share_with_moe": Finalizer(share_with_moe, needs=("n", "hits")),
    "mean_with_moe": Finalizer(mean_with_moe, needs=("n", "total", "squares")),
    "churn_pace": Finalizer(churn_pace, needs=("active_start", "churned", "churned_new", "window_seconds"),
                            args=("pace",), check=lambda args: None if args.get("pace", "period") in (
                                "period", "monthly", "yearly") else "pace: period, monthly or yearly"),
    "tenure": Finalizer(tenure, needs=("active_end", "tenure_seconds", "median_seconds", "churned", "churned_seconds")),
    "retention": Finalizer(retention, needs=("active_start", "active_end", "new")),
    "value": Finalizer(value, args=("of", *_EXTRAS, "exact"), refs=("of", *_EXTRAS), required=("of",)),
    "ratio": Finalizer(ratio, args=("num", "den", "scale", *_EXTRAS, "per", "amounts"),
                       refs=("num", "den", *_EXTRAS, "amounts"),
                       check=_check_ratio, required=("num", "den")),
    "mean_of": Finalizer(mean_of, args=("total", "n", "median", "divide", "count_as"), refs=("total", "n", "median"),
                         required=("total", "n")),
    "acquisition_cost": Finalizer(acquisition_cost, needs=("spend", "new")),
    "leads_per_spend": Finalizer(leads_per_spend, needs=("leads", "spend")),
    "marketing_return": Finalizer(marketing_return, needs=("earned", "spend", "revenue")),
    "in_days": Finalizer(in_days, args=("of", "days", "show"), refs=("of", "days", "show"), required=("of",)),
    "profit": Finalizer(profit, needs=("revenue", "cost"), args=("value",),
                        check=lambda args: None if args.get("value", "margin") in PROFIT
                        else f"value: {' or '.join(PROFIT)}"),
    "arithmetic": Finalizer(arithmetic, args=("expr", *_EXTRAS, "amounts"), refs=(*_EXTRAS, "amounts"),
                            check=_check_arithmetic, required=("expr",)),
    "downtime": Finalizer(downtime, needs=("down", "incidents", "longest", "tracked")),
    "uptime": Finalizer(uptime, needs=("down", "incidents", "tracked", "window_seconds")),
    "inactive": Finalizer(inactive, needs=("active", "inactive")),
    "weekly": Finalizer(weekly, needs=("window_seconds",), args=("of", "show"), refs=("of", "show"),
                        required=("of",)),
}


def referenced(args: Mapping[str, Any], fin: Finalizer) -> list[str]:
    """The aggregate names an entry's finalize options point at."""
    out: list[str] = list(fin.needs) + (["window_seconds"] if args.get("per") else [])
    if fin.fn is profit and args.get("value") == "per_customer":
        out.append("customers")
    if fin.fn is arithmetic and isinstance(args.get("expr"), str):
        from metrics.model.compile import expression_names

        out.extend(expression_names(args["expr"]))
    for key in fin.refs:
        v = args.get(key)
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, Mapping):
            for item in v.values():
                out.extend(item if isinstance(item, list) else [item])
        elif isinstance(v, list):
            out.extend(v)
    return [str(x) for x in out]
