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


PER_WINDOW = """
version: 1
metrics:
  spend_per_signup:
    type: simple
    rows:
      name: spend_signups
      per_window: true
      union:
        - {source: marketing_spend, time: spent_on, columns: {acquisition_channel: channel, spend: {agg: sum, expr: amount}, new: 0}}
        - {source: customers, time: signed_up_at, columns: {acquisition_channel: acquisition_channel, spend: 0, new: {agg: count}}}
    aggregates: {spend: {agg: sum, expr: spend}, new: {agg: sum, expr: new}}
    finalize: acquisition_cost
    dimensions: [acquisition_channel]
    customer_dimensions: false
  no_time:
    type: simple
    rows:
      name: no_time_rows
      per_window: true
      union:
        - {source: marketing_spend, columns: {spend: {agg: sum, expr: amount}, new: 0}}
        - {source: customers, time: signed_up_at, columns: {spend: 0, new: {agg: count}}}
    aggregates: {spend: {agg: sum, expr: spend}, new: {agg: sum, expr: new}}
    finalize: acquisition_cost
"""


def test_a_per_window_union_answers_by_channel(tmp_path):
    from datetime import date

    from storage.schema import customers, marketing_spend

    doc, errors = parse(PER_WINDOW, "team.yml")
    assert errors == [] and doc is not None
    loaded = load_model([("team.yml", doc)])
    assert [str(e).split(" (")[0] for e in loaded.errors] == [
        "team.yml:22: metric `no_time`: union part `marketing_spend`: per window, give its `time` column"]
    url = f"duckdb:///{tmp_path / 'own.duckdb'}"
    engine = database.get_engine(url)
    with engine.begin() as conn:
        conn.execute(marketing_spend.insert(), [
            {"spend_id": "m1", "spent_on": date(2026, 3, 1), "channel": "ads", "amount": Decimal("300.00")},
            {"spend_id": "m2", "spent_on": date(2026, 3, 31), "channel": "ads", "amount": Decimal("150.50")},
            {"spend_id": "m3", "spent_on": date(2026, 3, 15), "channel": "events", "amount": Decimal("99.50")},
            {"spend_id": "m4", "spent_on": date(2026, 4, 1), "channel": "ads", "amount": Decimal("1000")},
        ])
        conn.execute(customers.insert(), [
            {"customer_id": f"c{i}", "signed_up_at": datetime(2026, 3, 3 + i), "acquisition_channel": ch}
            for i, ch in enumerate(["ads", "ads", "ads", "events", "organic"])
        ])
    model.configure(loaded, url)
    try:
        answer = ask("spend per signup march 2026", url=url, as_of=date(2026, 4, 20))
        by = {g.group: g.value for g in ask("spend per signup by acquisition channel march 2026", url=url,
                                            as_of=date(2026, 4, 20)).breakdown}
    finally:
        model.configure(None)
    # March: 300 + 150.50 + 99.50 = 550 spent, 5 sign-ups: 110; ads 450.50 / 3, events 99.50 / 1,
    # organic: no spend, 1 sign-up -> 0 / 1 = 0 (spend is summed as 0 there)
    assert answer.value == pytest.approx(110.0)
    assert by == pytest.approx({"ads": 450.50 / 3, "events": 99.50, "organic": 0.0})


COMBINED = """
version: 1
metrics:
  return_on_spend:
    type: simple
    rows:
      name: channel_money
      per_window: true
      combine: channel_money_rows
      union:
        - source: orders
          join: {source: customers, using: customer_id}
          time: ordered_at
          columns: {acquisition_channel: acquisition_channel, revenue: {agg: sum, expr: amount}, spend: 0}
        - {source: marketing_spend, time: spent_on, columns: {acquisition_channel: channel, revenue: 0, spend: {agg: sum, expr: amount}}}
    aggregates:
      earned: {agg: sum, expr: revenue, filter: spend > 0, empty: null}
      spend: {agg: sum, expr: spend}
      revenue: {agg: sum, expr: revenue}
    finalize: marketing_return
    dimensions: [acquisition_channel]
    customer_dimensions: false
  bad_join:
    type: simple
    rows:
      name: bad_join_rows
      per_window: true
      union:
        - {source: orders, join: {source: customers, on: customer_id}, time: ordered_at, columns: {n: {agg: count}}}
        - {source: costs, time: incurred_at, columns: {n: {agg: count}}}
    aggregates: {spend: {agg: sum, expr: n}, new: {agg: sum, expr: n}}
    finalize: acquisition_cost
"""


def test_a_joined_and_combined_union_counts_only_channels_with_spend(tmp_path):
    from datetime import date

    from storage.schema import customers, marketing_spend

    doc, errors = parse(COMBINED, "team.yml")
    assert errors == [] and doc is not None
    loaded = load_model([("team.yml", doc)])
    assert [str(e).split(" (")[0] for e in loaded.errors] == [
        "team.yml:29: metric `bad_join`: union part join: {source:, using: a column both sources have}"]
    assert loaded.metrics["return_on_spend"].tables == ("orders", "customers", "marketing_spend")
    url = f"duckdb:///{tmp_path / 'own.duckdb'}"
    engine = database.get_engine(url)
    with engine.begin() as conn:
        conn.execute(customers.insert(), [
            {"customer_id": "c1", "signed_up_at": datetime(2026, 3, 1), "acquisition_channel": "ads"},
            {"customer_id": "c2", "signed_up_at": datetime(2026, 3, 30), "acquisition_channel": "organic"},
        ])
        conn.execute(orders.insert(), [
            {"order_id": "o1", "customer_id": "c1", "ordered_at": datetime(2026, 3, 2), "amount": Decimal("600.00")},
            {"order_id": "o2", "customer_id": "c2", "ordered_at": datetime(2026, 3, 30), "amount": Decimal("400.00")},
        ])
        conn.execute(marketing_spend.insert(), [
            {"spend_id": "m1", "spent_on": date(2026, 3, 30), "channel": "ads", "amount": Decimal("200.00")},
        ])
    model.configure(loaded, url)
    try:
        answer = ask("return on spend march 2026", url=url, as_of=date(2026, 4, 20))
    finally:
        model.configure(None)
    # only ads has spend: 600 earned on 200 spent = 3; organic's 400 is revenue, not return
    assert answer.value == pytest.approx(3.0)
    assert answer.extras["revenue_all_channels"] == pytest.approx(1000.0)
