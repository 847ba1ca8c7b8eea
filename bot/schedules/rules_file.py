"""Digests and alert rules kept in a YAML file (``KPI_RULES_FILE``), for teams that keep them in git.

Example::

    timezone: Europe/Berlin            # default for the entries below (else KPI_TIMEZONE)
    digests:
      - name: exec-weekly              # optional; a stable name for logs and listings
        channel: C0123456789
        schedule: weekly mon 09:00     # the words of `/kpi digest add …`
        kpis: [nps, csat, churn_rate, revenue]
        owner: U0456                   # optional: told if the channel cannot be posted to
    alerts:
      - name: nps-floor
        channel: C0123456789
        rule: nps below 30 by industry # the words of `/kpi alert add …`
        owner: U0456

The file is the source of truth for its entries: each sync adds new ones, and removes
those no longer in it. An entry's identity is its name plus a hash of its definition, so
editing an entry replaces it (its alert state starts afresh). A file with any error changes
nothing, and the errors are logged and shown by ``digest list`` / ``alert list``. Entries
from the file cannot be removed with commands (edit the file); they can be snoozed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, select, update

from bot.logging import event, get_logger
from metrics.catalogue import CATALOGUE
from storage.state import alert_rules, digests, insert_unique

from .clock import naive_utc
from .parse import (
    AlertSpec,
    CommandError,
    DigestSpec,
    check_zone,
    parse_alert,
    parse_digest,
    tokenize,
)
from .store import digest_values, rule_values

log = get_logger("kpibot.schedules")


@dataclass
class Entry:
    kind: str  # digest | alert
    key: str
    channel: str
    owner: str | None
    spec: DigestSpec | AlertSpec
    text: str


@dataclass
class Loaded:
    entries: list[Entry] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class Synced:
    added: int = 0
    removed: int = 0
    kept: int = 0
    errors: list[str] = field(default_factory=list)


def _words(value: Any) -> list[str]:
    if isinstance(value, list):
        return tokenize([str(v) for v in value])
    return tokenize(str(value))


def _key(kind: str, name: str | None, channel: str, canonical: str) -> str:
    digest = hashlib.sha1(f"{kind}|{channel}|{canonical}".encode()).hexdigest()[:12]  # noqa: S324
    return f"file:{kind}:{(name or '')[:60]}:{digest}"


def load(path: str | Path, *, default_tz: str) -> Loaded:
    out = Loaded()
    p = Path(path)
    name = p.name
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        out.errors.append(f"{name}: the rules file {p} does not exist")
        return out
    except (OSError, yaml.YAMLError) as exc:
        out.errors.append(f"{name}: cannot be read: {str(exc).splitlines()[0]}")
        return out
    if not isinstance(data, dict):
        out.errors.append(f"{name}: expected a mapping with `digests:` and/or `alerts:`")
        return out
    unknown = set(data) - {"timezone", "digests", "alerts"}
    if unknown:
        out.errors.append(f"{name}: unknown top-level keys: {', '.join(sorted(map(str, unknown)))}")
    file_tz = data.get("timezone") or default_tz
    if not check_zone(str(file_tz)):
        out.errors.append(f"{name}: `timezone: {file_tz}` is not a time zone (try Europe/Berlin)")
        file_tz = default_tz
    for kind in ("digests", "alerts"):
        items = data.get(kind) or []
        if not isinstance(items, list):
            out.errors.append(f"{name}: `{kind}:` must be a list")
            continue
        for i, item in enumerate(items):
            where = f"{name}: {kind}[{i}]"
            if not isinstance(item, dict):
                out.errors.append(f"{where}: must be a mapping")
                continue
            if item.get("name"):
                where += f" ({item['name']})"
            try:
                out.entries.append(_entry(kind[:-1], item, str(file_tz)))
            except CommandError as exc:
                out.errors.append(f"{where}: {exc}")
    keys = [e.key for e in out.entries]
    if len(keys) != len(set(keys)):
        out.errors.append(f"{name}: the same entry appears twice")
    return out


def _entry(kind: str, item: dict[str, Any], file_tz: str) -> Entry:
    allowed = {"name", "channel", "owner", "timezone"} | ({"schedule", "kpis"} if kind == "digest" else {"rule"})
    extra = set(item) - allowed
    if extra:
        raise CommandError(f"unknown keys: {', '.join(sorted(map(str, extra)))} (allowed: {', '.join(sorted(allowed))})")
    channel = str(item.get("channel") or "").strip()
    if not channel:
        raise CommandError("needs `channel:` (a channel ID such as C0123456789)")
    tz = str(item.get("timezone") or file_tz)
    if not check_zone(tz):
        raise CommandError(f"`timezone: {tz}` is not a time zone (try Europe/Berlin)")
    owner = str(item["owner"]) if item.get("owner") else None
    name = str(item["name"]) if item.get("name") else None
    if kind == "digest":
        if not item.get("schedule"):
            raise CommandError("needs `schedule:` (e.g. `weekly mon 09:00`)")
        words = _words(item["schedule"]) + (_words(item["kpis"]) if item.get("kpis") else [])
        spec = parse_digest(words, default_tz=tz)
        return Entry("digest", _key("digest", name, channel, spec.command_text()), channel, owner, spec,
                     " ".join(words))
    if not item.get("rule"):
        raise CommandError("needs `rule:` (e.g. `nps below 30`)")
    words = _words(item["rule"])
    alert = parse_alert(words, default_tz=tz)
    text = alert.describe(CATALOGUE[alert.metric])
    return Entry("alert", _key("alert", name, channel, repr(alert)), channel, owner, alert, text)


_reported: dict[str, str] = {}


def sync(engine: Engine, path: str | Path, *, now: datetime, default_tz: str) -> Synced:
    """Make the file's entries the active file-sourced rows; nothing changes if it has errors."""
    loaded = load(path, default_tz=default_tz)
    result = Synced(errors=loaded.errors)
    if loaded.errors:
        signature = "\n".join(loaded.errors)
        if _reported.get(str(path)) != signature:
            _reported[str(path)] = signature
            event(log, "rules_file_invalid", level=40, path=str(path), errors=loaded.errors)
        return result
    _reported.pop(str(path), None)
    stamp = naive_utc(now)
    with engine.begin() as conn:
        for table, kind in ((digests, "digest"), (alert_rules, "alert")):
            wanted = {e.key: e for e in loaded.entries if e.kind == kind}
            rows = conn.execute(
                select(table.c.id, table.c.source_key, table.c.removed_at).where(table.c.source == "file")
            ).all()
            have = {r.source_key: r for r in rows}
            for key, entry in wanted.items():
                row = have.get(key)
                if row is None:
                    if kind == "digest":
                        values = digest_values(entry.spec, channel_id=entry.channel, created_by=entry.owner,  # type: ignore[arg-type]  # a digest entry's spec
                                               now=now, source="file", source_key=key)
                    else:
                        values = rule_values(entry.spec, entry.text, channel_id=entry.channel, owner=entry.owner,  # type: ignore[arg-type]  # an alert's
                                             now=now, source="file", source_key=key)
                    if insert_unique(conn, table, values) is not None:
                        result.added += 1
                elif row.removed_at is not None:
                    # back in the file: active again, as if new (no catch-up of its absence)
                    conn.execute(update(table).where(table.c.id == row.id).values(removed_at=None, created_at=stamp))
                    result.added += 1
                else:
                    result.kept += 1
            stale = [r.id for key, r in have.items() if key not in wanted and r.removed_at is None]
            if stale:
                conn.execute(update(table).where(table.c.id.in_(stale)).values(removed_at=stamp))
                result.removed += len(stale)
    if result.added or result.removed:
        event(log, "rules_file_synced", path=str(path), added=result.added, removed=result.removed,
              kept=result.kept)
    return result
