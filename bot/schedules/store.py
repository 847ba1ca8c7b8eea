"""Reading and writing digests and alert rules in the state database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, RowMapping, func, select, update

from storage.state import alert_rules, alert_states, deliveries, digests

from .clock import aware, naive_utc
from .parse import AlertSpec, DigestSpec


@dataclass(frozen=True)
class Digest:
    id: int
    channel_id: str
    frequency: str
    weekday: int | None
    day_of_month: str | None
    at_time: str
    timezone: str
    metrics: tuple[str, ...]
    created_by: str | None
    created_at: datetime  # aware UTC
    removed_at: datetime | None
    source: str
    source_key: str | None

    @property
    def spec(self) -> DigestSpec:
        return DigestSpec(
            self.frequency, self.weekday, self.day_of_month, self.at_time, self.timezone, self.metrics
        )

    @classmethod
    def from_row(cls, row: RowMapping) -> Digest:
        return cls(
            id=row["id"],
            channel_id=row["channel_id"],
            frequency=row["frequency"],
            weekday=row["weekday"],
            day_of_month=row["day_of_month"],
            at_time=row["at_time"],
            timezone=row["timezone"],
            metrics=tuple(m for m in row["metrics"].split(",") if m),
            created_by=row["created_by"],
            created_at=aware(row["created_at"]),
            removed_at=aware(row["removed_at"]) if row["removed_at"] else None,
            source=row["source"],
            source_key=row["source_key"],
        )


@dataclass(frozen=True)
class Rule:
    id: int
    channel_id: str
    owner: str | None
    metric: str
    dimension: str | None
    condition: str
    threshold: float
    relative: bool
    window_days: int
    consecutive: int
    min_sample: int | None
    timezone: str
    text: str
    snoozed_until: datetime | None
    created_at: datetime
    removed_at: datetime | None
    source: str
    source_key: str | None

    @property
    def spec(self) -> AlertSpec:
        return AlertSpec(
            metric=self.metric,
            condition=self.condition,
            threshold=self.threshold,
            relative=self.relative,
            window_days=self.window_days,
            consecutive=self.consecutive,
            min_sample=self.min_sample,
            dimension=self.dimension,
            timezone=self.timezone,
        )

    def snoozed(self, now: datetime) -> bool:
        return self.snoozed_until is not None and self.snoozed_until > aware(now)

    @classmethod
    def from_row(cls, row: RowMapping) -> Rule:
        return cls(
            id=row["id"],
            channel_id=row["channel_id"],
            owner=row["owner"],
            metric=row["metric"],
            dimension=row["dimension"],
            condition=row["condition"],
            threshold=float(row["threshold"]),
            relative=bool(row["relative"]),
            window_days=int(row["window_days"]),
            consecutive=int(row["consecutive"]),
            min_sample=row["min_sample"],
            timezone=row["timezone"],
            text=row["text"],
            snoozed_until=aware(row["snoozed_until"]) if row["snoozed_until"] else None,
            created_at=aware(row["created_at"]),
            removed_at=aware(row["removed_at"]) if row["removed_at"] else None,
            source=row["source"],
            source_key=row["source_key"],
        )


# ---- digests ----------------------------------------------------------------------------------


def digest_values(spec: DigestSpec, *, channel_id: str, created_by: str | None, now: datetime,
                  source: str, source_key: str | None = None) -> dict:
    return {
        "channel_id": channel_id,
        "frequency": spec.frequency,
        "weekday": spec.weekday,
        "day_of_month": spec.day_of_month,
        "at_time": spec.at_time,
        "timezone": spec.timezone,
        "metrics": ",".join(spec.metrics),
        "created_by": created_by,
        "created_at": naive_utc(now),
        "source": source,
        "source_key": source_key,
    }


def add_digest(engine: Engine, spec: DigestSpec, *, channel_id: str, created_by: str | None,
               now: datetime, source: str = "slack") -> Digest:
    values = digest_values(spec, channel_id=channel_id, created_by=created_by, now=now, source=source)
    with engine.begin() as conn:
        new_id = conn.execute(digests.insert().values(**values).returning(digests.c.id)).scalar_one()
        row = conn.execute(select(digests).where(digests.c.id == new_id)).mappings().one()
    return Digest.from_row(row)


def get_digest(engine: Engine, digest_id: int, *, include_removed: bool = False) -> Digest | None:
    stmt = select(digests).where(digests.c.id == digest_id)
    if not include_removed:
        stmt = stmt.where(digests.c.removed_at.is_(None))
    with engine.connect() as conn:
        row = conn.execute(stmt).mappings().first()
    return Digest.from_row(row) if row else None


def active_digests(engine: Engine, channel_id: str | None = None) -> list[Digest]:
    stmt = select(digests).where(digests.c.removed_at.is_(None)).order_by(digests.c.id)
    if channel_id:
        stmt = stmt.where(digests.c.channel_id == channel_id)
    with engine.connect() as conn:
        return [Digest.from_row(r) for r in conn.execute(stmt).mappings()]


def remove_digest(engine: Engine, digest_id: int, now: datetime) -> bool:
    with engine.begin() as conn:
        done = conn.execute(
            update(digests)
            .where(digests.c.id == digest_id, digests.c.removed_at.is_(None))
            .values(removed_at=naive_utc(now))
        )
    return done.rowcount == 1


# ---- alert rules ------------------------------------------------------------------------------


def rule_values(spec: AlertSpec, text: str, *, channel_id: str, owner: str | None, now: datetime,
                source: str, source_key: str | None = None) -> dict:
    return {
        "channel_id": channel_id,
        "owner": owner,
        "metric": spec.metric,
        "dimension": spec.dimension,
        "condition": spec.condition,
        "threshold": spec.threshold,
        "relative": spec.relative,
        "window_days": spec.window_days,
        "consecutive": spec.consecutive,
        "min_sample": spec.min_sample,
        "timezone": spec.timezone,
        "text": text,
        "created_by": owner,
        "created_at": naive_utc(now),
        "source": source,
        "source_key": source_key,
    }


def add_rule(engine: Engine, spec: AlertSpec, text: str, *, channel_id: str, owner: str | None,
             now: datetime, source: str = "slack") -> Rule:
    values = rule_values(spec, text, channel_id=channel_id, owner=owner, now=now, source=source)
    with engine.begin() as conn:
        new_id = conn.execute(alert_rules.insert().values(**values).returning(alert_rules.c.id)).scalar_one()
        row = conn.execute(select(alert_rules).where(alert_rules.c.id == new_id)).mappings().one()
    return Rule.from_row(row)


def get_rule(engine: Engine, rule_id: int, *, include_removed: bool = False) -> Rule | None:
    stmt = select(alert_rules).where(alert_rules.c.id == rule_id)
    if not include_removed:
        stmt = stmt.where(alert_rules.c.removed_at.is_(None))
    with engine.connect() as conn:
        row = conn.execute(stmt).mappings().first()
    return Rule.from_row(row) if row else None


def active_rules(engine: Engine, channel_id: str | None = None) -> list[Rule]:
    stmt = select(alert_rules).where(alert_rules.c.removed_at.is_(None)).order_by(alert_rules.c.id)
    if channel_id:
        stmt = stmt.where(alert_rules.c.channel_id == channel_id)
    with engine.connect() as conn:
        return [Rule.from_row(r) for r in conn.execute(stmt).mappings()]


def remove_rule(engine: Engine, rule_id: int, now: datetime) -> bool:
    with engine.begin() as conn:
        done = conn.execute(
            update(alert_rules)
            .where(alert_rules.c.id == rule_id, alert_rules.c.removed_at.is_(None))
            .values(removed_at=naive_utc(now))
        )
    return done.rowcount == 1


def snooze_rule(engine: Engine, rule_id: int, until: datetime | None) -> bool:
    with engine.begin() as conn:
        done = conn.execute(
            update(alert_rules)
            .where(alert_rules.c.id == rule_id, alert_rules.c.removed_at.is_(None))
            .values(snoozed_until=naive_utc(until) if until else None)
        )
    return done.rowcount == 1


def breaching_segments(engine: Engine, rule_id: int) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(alert_states.c.segment).where(
                alert_states.c.rule_id == rule_id, alert_states.c.status == "breaching"
            )
        )
        return [r[0] for r in rows]


# ---- the delivery log, for listings -------------------------------------------------------------


def last_deliveries(engine: Engine, kind: str, ref_ids: list[int]) -> dict[int, RowMapping]:
    """The latest delivery per ``ref_id`` of ``kind``."""
    if not ref_ids:
        return {}
    latest = (
        select(deliveries.c.ref_id, func.max(deliveries.c.id).label("id"))
        .where(deliveries.c.kind == kind, deliveries.c.ref_id.in_(ref_ids))
        .group_by(deliveries.c.ref_id)
        .subquery()
    )
    stmt = select(deliveries).join(latest, deliveries.c.id == latest.c.id)
    with engine.connect() as conn:
        return {r["ref_id"]: r for r in conn.execute(stmt).mappings()}
