"""Survey KPIs (seed 001): NPS, CSAT, CES, post-purchase rating."""

from __future__ import annotations

import math

from sqlalchemy import case, func

from metrics.spec import Aggs, Band, Measure, Metric, in_window

Z95 = 1.96


def _survey(kind: str):
    return lambda t: t.c.survey == kind


def _count_if(cond):
    return func.sum(case((cond, 1), else_=0))


def _nps(a: Aggs) -> dict:
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


def _share(a: Aggs) -> dict:
    n = a.get("n") or 0
    if not n:
        return {"value": None}
    p = (a["hits"] or 0) / n
    return {"value": 100.0 * p, "moe": 100.0 * Z95 * math.sqrt(p * (1 - p) / n)}


def _mean(a: Aggs) -> dict:
    n = a.get("n") or 0
    if not n:
        return {"value": None}
    mean = (a["total"] or 0) / n
    var = max(((a["squares"] or 0) - n * mean * mean) / (n - 1), 0.0) if n > 1 else 0.0
    return {"value": mean, "moe": Z95 * math.sqrt(var / n)}


def survey_share(kind: str, low: int, touchpoint: str | None = None) -> Measure:
    """Percent of ``kind`` responses scoring ``low`` or more (CSAT-style)."""

    def where(t):
        cond = t.c.survey == kind
        return cond & (func.lower(t.c.touchpoint) == touchpoint.lower()) if touchpoint else cond

    return Measure(
        table="survey_responses",
        join=in_window("responded_at"),
        where=where,
        time_column="responded_at",
        aggregates={"n": lambda t, w: func.count(), "hits": lambda t, w: _count_if(t.c.score >= low)},
        finalize=_share,
        n="n",
    )


def survey_mean(kind: str) -> Measure:
    return Measure(
        table="survey_responses",
        join=in_window("responded_at"),
        where=_survey(kind),
        time_column="responded_at",
        aggregates={
            "n": lambda t, w: func.count(),
            "total": lambda t, w: func.sum(t.c.score),
            "squares": lambda t, w: func.sum(t.c.score * t.c.score),
        },
        finalize=_mean,
        n="n",
    )


SURVEY_DIMS = ("touchpoint",)

METRICS = [
    Metric(
        id="nps",
        split="mean",
        label="Net Promoter Score",
        group="satisfaction",
        unit="score",
        formula="100 × (share of NPS answers scoring 9-10 − share scoring 0-6), over responses in the period",
        direction="higher",
        synonyms=("net promoter score", "net promoter", "promoter score"),
        tables=("survey_responses",),
        dimensions=SURVEY_DIMS,
        survey="nps",
        min_sample=30,
        bands=(
            Band("negative", None, 0, good=False),
            Band("good (above 0)", 0, 50),
            Band("excellent (50+)", 50, 70),
            Band("world-class (70+)", 70, None),
        ),
        measure=Measure(
            table="survey_responses",
            join=in_window("responded_at"),
            where=_survey("nps"),
            time_column="responded_at",
            aggregates={
                "n": lambda t, w: func.count(),
                "promoters": lambda t, w: _count_if(t.c.score >= 9),
                "detractors": lambda t, w: _count_if(t.c.score <= 6),
            },
            finalize=_nps,
            n="n",
        ),
        description="How likely customers are to recommend us: promoters (9-10) minus detractors (0-6).",
    ),
    Metric(
        id="csat",
        split="mean",
        label="Customer Satisfaction (CSAT)",
        group="satisfaction",
        unit="percent",
        formula="satisfied CSAT answers (4 or 5 on 1-5) ÷ all CSAT answers in the period × 100",
        direction="higher",
        synonyms=("customer satisfaction", "satisfaction", "csat score", "customer satisfaction score"),
        tables=("survey_responses",),
        dimensions=SURVEY_DIMS,
        survey="csat",
        min_sample=30,
        bands=(Band("below 80%", None, 80, good=False), Band("good (above 80%)", 80, None)),
        measure=survey_share("csat", 4),
        description="Share of customers satisfied with an interaction.",
    ),
    Metric(
        id="ces",
        split="mean",
        label="Customer Effort Score",
        group="satisfaction",
        unit="score",
        formula="mean CES answer (1-7, higher = easier) over responses in the period",
        direction="higher",
        synonyms=("customer effort score", "customer effort", "effort score", "effort"),
        tables=("survey_responses",),
        dimensions=SURVEY_DIMS,
        survey="ces",
        min_sample=30,
        measure=survey_mean("ces"),
        description="How easy customers found it to get what they needed.",
    ),
    Metric(
        id="ppr",
        label="Post-purchase rating",
        group="satisfaction",
        unit="score",
        formula="mean post-purchase rating (ppr answers, 1-5) over responses in the period",
        direction="higher",
        synonyms=("post purchase rating", "post-purchase rating", "purchase rating", "post purchase score"),
        tables=("survey_responses",),
        dimensions=SURVEY_DIMS,
        survey="ppr",
        min_sample=30,
        split="mean",
        measure=survey_mean("ppr"),
        description="Seed 001 lists the Post Purchase Rating (PPR) with CSAT, NPS and CES: how customers "
        "rate a purchase right after making it.",
    ),
    Metric(
        id="support_csat",
        label="Support CSAT",
        group="support",
        unit="percent",
        formula="satisfied CSAT answers (4 or 5 on 1-5) at the support touchpoint ÷ all CSAT answers there in the period × 100",
        direction="higher",
        synonyms=("support satisfaction", "csat support", "support csat score", "support customer satisfaction"),
        tables=("survey_responses",),
        dimensions=SURVEY_DIMS,
        survey="csat",
        min_sample=30,
        split="mean",
        bands=(Band("below 80%", None, 80, good=False), Band("solid (80%+)", 80, None)),
        measure=survey_share("csat", 4, touchpoint="support"),
        description="Seed 001: 'CSAT (support): Customer satisfaction score specific to support interactions "
        "… 80%+ is solid.'",
    ),
]
