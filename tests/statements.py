"""The statements kpibot sends to a database, recorded at the cursor (what the tests count)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, event

from storage import database


@contextmanager
def sent_statements(target: str | Engine, keep: Callable[[str], bool] = lambda statement: True) -> Iterator[list[str]]:
    """Every statement sent to ``target`` (an engine, or a URL's engine) inside that ``keep`` accepts."""
    engine = target if isinstance(target, Engine) else database.get_engine(target)
    sent: list[str] = []

    def record(conn, cursor, statement, *args):
        if keep(statement):
            sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)
