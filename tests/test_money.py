"""Money is exact to the cent on every engine: import, storage, SQL sums and answers.

Hand-computed: 0.10 + 0.10 + 0.10 + 1234567.89 = 1234568.19. A 4-byte FLOAT (DuckDB's
``FLOAT``, what kpibot used to store) keeps 1234567.89 as 1234567.875, and the total
drifts to 1234568.175.
"""

from __future__ import annotations

from datetime import date

import duckdb
import pytest
from sqlalchemy import Column, MetaData, Table, func, select

from metrics import api
from storage import database
from storage.importer import ImportFailed, import_file
from storage.schema import metadata, orders

#: The money columns, listed by hand.
MONEY = {("subscriptions", "mrr"), ("orders", "amount"), ("costs", "amount"), ("leads", "potential_value"),
         ("marketing_spend", "amount"), ("opportunities", "amount")}


def _orders_csv(tmp_path, *amounts: str) -> str:
    path = tmp_path / "orders.csv"
    lines = ["order_id,customer_id,ordered_at,amount"]
    lines += [f"o{i},C{i},2026-03-{i + 1:02d}T12:00:00Z,{a}" for i, a in enumerate(amounts)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_sum_of_cents_and_a_large_amount_is_exact_on_every_engine(db_url, tmp_path):
    engine = database.get_engine(db_url)
    import_file(engine, "orders", _orders_csv(tmp_path, "0.10", "0.10", "0.10", "1234567.89"))
    with engine.connect() as conn:
        stored = dict(conn.execute(select(orders.c.order_id, orders.c.amount)).all())
        total = conn.scalar(select(func.sum(orders.c.amount)))
    assert stored["o3"] == 1234567.89  # not 1234567.875
    assert stored["o0"] == 0.10
    assert f"{total:.2f}" == "1234568.19"
    assert abs(total - 1234568.19) < 1e-6  # within a millionth of a cent-exact total
    result = api.ask("revenue in march 2026", as_of=date(2026, 4, 15), url=db_url)
    assert f"{result.value:.2f}" == "1234568.19"


def test_amounts_are_rounded_to_the_cent_half_away_from_zero(db_url, tmp_path):
    engine = database.get_engine(db_url)
    import_file(engine, "orders", _orders_csv(tmp_path, "12.345", "-0.125", "1e3", "19.99"))
    with engine.connect() as conn:
        stored = dict(conn.execute(select(orders.c.order_id, orders.c.amount)).all())
    assert stored == {"o0": 12.35, "o1": -0.13, "o2": 1000.0, "o3": 19.99}


def test_an_amount_too_large_for_cents_is_refused(duck_url, tmp_path):
    engine = database.get_engine(duck_url)
    with pytest.raises(ImportFailed) as caught:
        import_file(engine, "orders", _orders_csv(tmp_path, "1.00", "20000000000000"))
    assert "orders.csv:3: amount: amount out of range" in str(caught.value)


def _old_kpibot_file(path: str, *, extra_column: bool = False) -> None:
    """A DuckDB file laid out as older kpibot versions created it: money as 4-byte FLOAT."""
    from sqlalchemy import Float, create_engine

    old = MetaData()
    for table in metadata.sorted_tables:
        cols = [Column(c.name, Float() if (table.name, c.name) in MONEY else c.type,
                       primary_key=c.primary_key, nullable=c.nullable) for c in table.columns]
        if extra_column and table.name == "orders":
            from sqlalchemy import String

            cols.append(Column("note", String))
        Table(table.name, old, *cols)
    engine = create_engine(f"duckdb:///{path}")
    old.create_all(engine)
    engine.dispose()
    con = duckdb.connect(path)
    con.execute("INSERT INTO orders (order_id, customer_id, ordered_at, amount, is_recurring) VALUES "
                "('a', 'C1', '2026-03-01 12:00:00', 0.10, false), ('b', 'C1', '2026-03-02 12:00:00', 1234567.89, false)")
    assert con.execute("SELECT amount FROM orders WHERE order_id = 'b'").fetchone()[0] == 1234567.875
    con.close()


def _column_type(path: str, table: str, column: str) -> str:
    con = duckdb.connect(path)
    try:
        return con.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_name = ? AND column_name = ?",
            [table, column],
        ).fetchone()[0]
    finally:
        con.close()


def test_an_older_kpibot_duckdb_file_is_migrated_to_decimal(tmp_path):
    path = str(tmp_path / "old.duckdb")
    _old_kpibot_file(path)
    url = f"duckdb:///{path}"
    engine = database.get_engine(url)
    with engine.connect() as conn:
        stored = dict(conn.execute(select(orders.c.order_id, orders.c.amount)).all())
    database.dispose_all()
    for table, column in MONEY:
        assert _column_type(path, table, column) == "DECIMAL(18,2)"
    # the FLOAT's 0.100000001… is 0.10 again; 1234567.875 can only become the nearest cent
    assert stored == {"a": 0.10, "b": 1234567.88}


def test_a_duckdb_file_kpibot_did_not_create_is_left_alone(tmp_path):
    path = str(tmp_path / "theirs.duckdb")
    _old_kpibot_file(path, extra_column=True)
    database.get_engine(f"duckdb:///{path}")
    database.dispose_all()
    assert _column_type(path, "orders", "amount") == "FLOAT"
