"""A user's favourite questions (App Home): saved from their recent questions, asked again
with one click. Kept in the state database, in a table created on first use."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    select,
)
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

MAX_PER_USER = 10

fav_metadata = MetaData()
favourites = Table(
    "favourites",
    fav_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", String(64), nullable=False),
    Column("question", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
)  # no UNIQUE on a TEXT column (MariaDB refuses it): add() checks inside its transaction

_ready: set[str] = set()
_lock = threading.Lock()


def engine_for(url: str | None = None) -> Engine:
    from storage.state import get_state_engine, state_url

    url = url or state_url()
    engine = get_state_engine(url)
    if url not in _ready:
        with _lock:
            if url not in _ready:
                try:
                    fav_metadata.create_all(engine, checkfirst=True)
                except (IntegrityError, ProgrammingError, OperationalError):  # created at the same moment
                    fav_metadata.create_all(engine, checkfirst=True)
                _ready.add(url)
    return engine


def of(user_id: str) -> list[tuple[int, str]]:
    with engine_for().connect() as conn:
        rows = conn.execute(select(favourites.c.id, favourites.c.question)
                            .where(favourites.c.user_id == user_id).order_by(favourites.c.id)).all()
    return [(r.id, r.question) for r in rows]


def add(user_id: str, question: str) -> bool:
    """Save it (once); False when the user already has MAX_PER_USER."""
    engine = engine_for()
    with engine.begin() as conn:
        mine = conn.execute(select(favourites.c.question).where(favourites.c.user_id == user_id)).scalars().all()
        if question in mine:
            return True
        if len(mine) >= MAX_PER_USER:
            return False
        conn.execute(favourites.insert().values(user_id=user_id, question=question[:500],
                                                created_at=datetime.now(UTC).replace(tzinfo=None)))
    return True


def question(fav_id: int, user_id: str) -> str | None:
    """Only the user's own favourite."""
    with engine_for().connect() as conn:
        row = conn.execute(select(favourites.c.question).where(favourites.c.id == fav_id,
                                                               favourites.c.user_id == user_id)).first()
    return row[0] if row else None


def remove(fav_id: int, user_id: str) -> None:
    with engine_for().begin() as conn:
        conn.execute(delete(favourites).where(favourites.c.id == fav_id, favourites.c.user_id == user_id))
