"""Predicted CLV says what it left out ($0 orders and the customers who had only those) and
cautions when the purchase model's fit is near-degenerate."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
from sqlalchemy import insert

from metrics.api import ask
from metrics.clv_model import BGNBDParams, near_degenerate, predict_clv
from storage import database
from storage.schema import orders

END = datetime(2026, 1, 1)


def _orders(n: int, seed: int, dropout: float | None = None) -> list[tuple[str, datetime, float]]:
    """n customers buying during 2025: Poisson purchases with Gamma rates; after each repeat
    purchase they stop with a Beta(1.5, 6) probability, or with ``dropout`` for everyone."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        first = rng.uniform(0, 300)
        lam = rng.gamma(2.0, 1 / 30.0)
        p = dropout if dropout is not None else rng.beta(1.5, 6.0)
        nu = rng.gamma(5.0, 1 / 100.0)
        t = first
        times = [t]
        while True:
            t += rng.exponential(1 / lam)
            if t >= 365:
                break
            times.append(t)
            if rng.random() < p:
                break
        for t in times:
            amount = round(float(rng.gamma(4.0, 1 / nu)), 2)
            rows.append((f"c{i:04d}", datetime(2025, 1, 1) + timedelta(days=float(t)), amount))
    return rows


def _load(url: str, rows) -> None:
    with database.get_engine(url).begin() as conn:
        conn.execute(
            insert(orders),
            [
                {"order_id": f"o{i}", "customer_id": c, "ordered_at": ts.replace(microsecond=0), "amount": amt}
                for i, (c, ts, amt) in enumerate(rows)
            ],
        )


def test_zero_orders_and_zero_only_customers_are_counted_and_said(db_url):
    rows = _orders(300, seed=5)
    rows += [
        ("c0000", datetime(2025, 6, 1), 0.0),  # a free order of a paying customer
        ("c0001", datetime(2025, 6, 2), -5.0),  # a refund
        ("z1", datetime(2025, 3, 1), 0.0),  # z1 and z2 never paid: not buyers for the model
        ("z1", datetime(2025, 4, 1), 0.0),
        ("z2", datetime(2025, 5, 1), 0.0),
    ]
    _load(db_url, rows)
    res = predict_clv(database.get_engine(db_url), END)
    assert res.excluded_orders == 5 and res.excluded_customers == 2
    assert res.n_customers == 300  # z1 and z2 are not in the fit
    assert "Left out of the model: 5 orders of 0 or less, and with them 2 customers who had no other order" in res.note
    answer = ask("predicted clv 2025", as_of=date(2026, 1, 15), url=db_url)
    assert answer.value is not None
    assert any("5 orders of 0 or less" in n and "2 customers" in n for n in answer.notes)
    assert answer.extras["excluded_orders"] == 5


def test_no_note_when_nothing_is_left_out(duck_url):
    _load(duck_url, _orders(300, seed=5))
    res = predict_clv(database.get_engine(duck_url), END)
    assert res.value is not None and res.excluded_orders == 0
    assert not any("Left out" in n for n in res.notes)


def test_near_degenerate_fit_is_recognised_and_explained():
    cdnow = BGNBDParams(r=0.243, alpha=4.414, a=0.793, b=2.426)  # Fader, Hardie & Lee 2005
    assert not near_degenerate(cdnow)
    issue = BGNBDParams(r=0.24, alpha=4.4, a=4.8e5, b=1.0e6)
    assert near_degenerate(issue)


def test_an_answer_from_a_near_degenerate_fit_carries_a_caution(duck_url):
    # Everyone stops with the same probability 0.3: no heterogeneity for Beta(a, b) to fit, so
    # a and b run off together (their ratio stays near 0.3 / 0.7)
    _load(duck_url, _orders(2000, seed=5, dropout=0.3))
    res = predict_clv(database.get_engine(duck_url), END)
    assert res.value is not None and res.bgnbd.a + res.bgnbd.b > 1000, res.bgnbd
    caution = [n for n in res.notes if "near-degenerate" in n]
    assert len(caution) == 1
    share = 100 * res.bgnbd.a / (res.bgnbd.a + res.bgnbd.b)
    assert f"({share:.0f}% after each repeat purchase)" in caution[0]
    assert 20 <= share <= 40
    answer = ask("predicted clv 2025", as_of=date(2026, 1, 15), url=duck_url)
    assert any("near-degenerate" in n for n in answer.notes)
