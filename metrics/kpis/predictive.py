"""Predictive KPIs: lifetime value from the BG/NBD and Gamma-Gamma models (metrics/clv_model.py).

``predicted_clv`` is data (metrics/kpis/data/predictive.yml) naming the model ``predicted_clv``
(metrics/kpis/rows.py), which computes it here: fits per window end, kept for reuse.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime

from metrics.kpis import packaged
from metrics.periods import to_utc

HORIZON_MONTHS = 12
ANNUAL_DISCOUNT = 0.10

_cache: OrderedDict[tuple, object] = OrderedDict()
_lock = threading.Lock()
#: What a fit gives per window (and segment), small: a 2-year monthly trend needs 50 fits, more
#: than the full fits kept (each holds its per-customer table), so a trend asked again reuses these.
_cells: OrderedDict[tuple, dict] = OrderedDict()
CELLS_KEPT = 1024
FITS_KEPT = 16


def _data_version(engine) -> tuple:
    """What a fit depends on, cheaply: a new, changed or removed order changes it, so a fit is
    never served from before an import (one small aggregate per question, not per window)."""
    from sqlalchemy import func, select

    from storage import database
    from storage.schema import customers, orders

    stmt = select(
        select(func.count()).select_from(orders).scalar_subquery(),
        select(func.max(orders.c.ordered_at)).scalar_subquery(),
        select(func.sum(orders.c.amount)).scalar_subquery(),
        select(func.count()).select_from(customers).scalar_subquery(),
        select(func.max(customers.c.signed_up_at)).scalar_subquery(),
    )
    with database.query(engine) as conn:
        return tuple(conn.execute(stmt).one())


def _fit(engine, end: datetime, filters, version: tuple = ()) -> object:
    """Fits are costly (≈1-2 s on 100k customers) and change only with new orders: keep a few."""
    key = (str(engine.url), end, tuple(filters), version)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    # NumPy's fits and SciPy load only when a CLV is asked for, not with the catalogue
    from metrics.clv_model import predict_clv

    result = predict_clv(
        engine, end, horizon_months=HORIZON_MONTHS, annual_discount=ANNUAL_DISCOUNT,
        customer_filter=list(filters) or None, include_recurring=False,
    )
    with _lock:
        _cache[key] = result
        while len(_cache) > FITS_KEPT:
            _cache.popitem(last=False)
    return result


def predicted(engine, windows, settings, dimension, filters):
    """The model's cells per (window, segment), as :class:`metrics.spec.Custom` gives them."""
    out = {}
    version = _data_version(engine)
    for i, (_start, end) in enumerate(windows):
        at = to_utc(end, settings)
        key = (str(engine.url), at, tuple(filters), version, dimension)
        with _lock:
            cells = _cells.get(key)
            if cells is not None:
                _cells.move_to_end(key)
        if cells is None:
            cells = _window_cells(_fit(engine, at, filters, version), engine, dimension)
            with _lock:
                _cells[key] = cells
                while len(_cells) > CELLS_KEPT:
                    _cells.popitem(last=False)
        out.update({(i, group): dict(fields) for group, fields in cells.items()})
    return out


def _window_cells(result, engine, dimension) -> dict:
    """One window's cells by segment (None: the whole) from a fit."""
    value, extras, top = result.kpi(top_n=10)
    if dimension:
        return {} if value is None else {g: c for (_, g), c in _by_segment(engine, result, 0, dimension).items()}
    flat = {k: v for k, v in extras.items() if not isinstance(v, dict)}
    return {None: {"value": value, "n": result.n_customers, **flat, "top_customers": top}}


def _by_segment(engine, result, window: int, dimension: str) -> dict:
    """Mean predicted CLV per customer segment: the per-customer table joined to one attribute."""
    from sqlalchemy import select

    from storage import database
    from storage.schema import customers

    table = result.customers
    with database.query(engine) as conn:
        attrs = dict(conn.execute(select(customers.c.customer_id, customers.c[dimension])).all())
    groups: dict[str, list[float]] = {}
    for cid, clv in zip(table["customer_id"].tolist(), table["clv"].tolist(), strict=True):
        groups.setdefault(attrs.get(cid) or "(not set)", []).append(float(clv))
    return {(window, g): {"value": sum(v) / len(v), "n": len(v)} for g, v in groups.items()}


METRICS = packaged.load("predictive.yml")
