"""A metric's rows as a union of sources (``rows: {name:, union:}``): the statement is the
one a hand-built union sends, the answer is computed by hand, and a bad part is a load error
with file and line while the rest of the model loads."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from metrics import model
from metrics.api import ask
from metrics.model.document import parse
from metrics.model.load import load_model
from storage import database
from storage.schema import costs, orders

MODEL = """
version: 1
metrics:
  net_amount:
    type: simple
    rows:
      name: net_rows
      union:
        - {source: orders, columns: {customer_id: customer_id, at: ordered_at, inflow: amount, outflow: 0}}
        - {source: costs, columns: {customer_id: customer_id, at: incurred_at, inflow: 0, outflow: amount}}
    time: at
    aggregates:
      revenue: {agg: sum, expr: inflow}
      cost: {agg: sum, expr: outflow}
    finalize: profit
    unit: currency
  bad_order:
    type: simple
    rows:
      name: bad_rows
      union:
        - {source: orders, columns: {at: ordered_at, x: amount}}
        - {source: costs, columns: {x: amount, at: incurred_at}}
    time: at
    aggregates: {revenue: {agg: sum, expr: x}, cost: {agg: sum, expr: x}}
    finalize: profit
  ghost:
    type: simple
    rows:
      name: ghost_rows
      union:
        - {source: orders, columns: {at: ordered_at}}
        - {source: ordrs, columns: {at: ordered_at}}
    time: at
    aggregates: {revenue: {agg: count}, cost: {agg: count}}
    finalize: profit
"""


def test_a_union_of_orders_and_costs_answers_the_hand_computed_profit(tmp_path):
    doc, errors = parse(MODEL, "team.yml")
    assert errors == [] and doc is not None
    loaded = load_model([("team.yml", doc)])
    assert sorted(str(e).split(" (")[0] for e in loaded.errors) == [
        "team.yml:23: metric `bad_order`: union part `costs`: columns must be at, x, in that order",
        "team.yml:33: metric `ghost`: union part: unknown source `ordrs`",
    ]
    metric = loaded.metrics["net_amount"]
    assert metric.tables == ("orders", "costs") and metric.measure.customer_key == "customer_id"
    url = f"duckdb:///{tmp_path / 'own.duckdb'}"
    engine = database.get_engine(url)
    with engine.begin() as conn:
        conn.execute(orders.insert(), [
            {"order_id": "o1", "customer_id": "c1", "ordered_at": datetime(2026, 3, 2), "amount": Decimal("120.10")},
            {"order_id": "o2", "customer_id": "c2", "ordered_at": datetime(2026, 3, 9), "amount": Decimal("79.95")},
            {"order_id": "o3", "customer_id": "c2", "ordered_at": datetime(2026, 4, 9), "amount": Decimal("1000")},
        ])
        conn.execute(costs.insert(), [
            {"cost_id": "k1", "customer_id": "c1", "incurred_at": datetime(2026, 3, 5), "amount": Decimal("50.05")},
        ])
    model.configure(loaded, url)
    try:
        answer = ask("net amount march 2026", url=url, as_of=datetime(2026, 4, 20).date())
    finally:
        model.configure(None)
    # March: revenue 120.10 + 79.95 = 200.05, cost 50.05, profit exactly 150.00
    assert answer.value == pytest.approx(150.0, abs=1e-9)
    assert answer.extras == {"revenue": pytest.approx(200.05), "cost": pytest.approx(50.05),
                             "profit": pytest.approx(150.0)}
