"""Cross-sell and up-sell (seed 003, '5/ Cross & Up Selling Metrics').

'Potential: Total amount of Cross & Upselling opportunities, total amount of converted
opportunities. Adoption: Total penetration of users converted to value-added service X (Y or Z).'
"""

from __future__ import annotations

from sqlalchemy import Integer, and_, func, literal, select, union_all

from metrics.kpis import packaged
from metrics.kpis.common import alive_at, div
from metrics.spec import Measure, Metric, active_at
from storage.schema import customers, subscriptions


def _penetration(w):
    """Per window, two kinds of rows: every (customer active at its end, product held by
    anyone then) pair with has = 0, and every pair actually held with has = 1. Grouped by
    product, the first count is all active customers and the second those holding it."""
    s, c = subscriptions, customers
    held = (
        select(w.c.w, s.c.customer_id, s.c.product)
        .select_from(s.join(w, active_at(s, "started_at", "ended_at", w.c.we)))
        .where(s.c.product.is_not(None))
        .group_by(w.c.w, s.c.customer_id, s.c.product)
        .cte("held")
    )
    alive = select(w.c.w, c.c.customer_id).select_from(c.join(w, alive_at(c, w.c.we))).subquery("alive")
    products = select(held.c.w, held.c.product).group_by(held.c.w, held.c.product).subquery("products")
    every_pair = select(alive.c.w, alive.c.customer_id, products.c.product, literal(0, Integer).label("has")).select_from(
        alive.join(products, products.c.w == alive.c.w)
    )
    # Held pairs of customers no longer active (ended at the instant they churned) are left out.
    pairs_held = (
        select(held.c.w, held.c.customer_id, held.c.product, literal(1, Integer).label("has"))
        .select_from(held.join(alive, and_(alive.c.w == held.c.w, alive.c.customer_id == held.c.customer_id)))
    )
    return union_all(every_pair, pairs_held).subquery("penetration")


METRICS = [
    *packaged.load("upsell.yml"),  # upsell_opportunities, upsell_conversion: data
    Metric(
        id="addon_penetration",
        label="Add-on penetration",
        group="upsell",
        unit="percent",
        formula="customers active at the period's end holding a product (active subscription) ÷ customers active at "
        "the end × 100; by product: that product's penetration; overall: the mean over products held",
        direction="higher",
        synonyms=("add-on penetration", "add on penetration", "addon adoption", "attach rate", "product penetration",
                  "penetration"),
        tables=("subscriptions", "customers"),
        dimensions=("product",),
        snapshot=True,
        split="mean",
        measure=Measure(
            table=_penetration,
            join=lambda t, w: t.c.w == w.c.w,
            aggregates={
                "pairs": lambda t, w: func.sum(1 - t.c.has),
                "holding": lambda t, w: func.sum(t.c.has),
            },
            finalize=lambda a: {"value": div(a.get("holding"), a.get("pairs"), 100.0), "holding": a.get("holding")},
            n="pairs",
        ),
        description="Seed 003: 'Total penetration of users converted to value-added service X (Y or Z)'. "
        "Ask `addon_penetration by product`.",
        extras_doc={"holding": "customer-product pairs held by customers active at the end"},
    ),
]
