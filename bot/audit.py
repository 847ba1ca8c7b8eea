"""The audit log: who asked what, where, when, whether it was allowed, and how it ended.

One row per question that reaches the bot from Slack (``/kpi``, mentions, DMs) and per
digest or alert delivery, in the ``audit_log`` table of the state database
(``KPI_STATE_URL``, :mod:`storage.state`). ``kpibot audit [--limit N]`` prints the latest.

What a row holds::

    at          when it finished (naive UTC)
    source      slack | schedule
    surface     slash | mention | dm | digest | preview | alert_fire | alert_followup | …
    team_id, user_id, channel_id
    command     question | help | list | define | digest | alert | delivery
    kpi         the KPI asked about (or delivered), when known
    question    the text as asked (secrets masked, at most 500 characters)
    allowed     False when the policy or a rate limit refused it
    outcome     answered | refused-policy | rate-limited | bad-question | error
                (deliveries: delivered | failed | refused-policy)
    error_id    the id shown to the user and written in the log line, for errors
    detail      a short reason (e.g. "database", a Slack error code), never a value
    elapsed_ms  from arrival to the reply being handed to Slack

Never stored: tokens (the text goes through :func:`bot.logging.redact`), answer values of
any kind (so nothing of a refused question's numbers can leak through the log).

Most writes are off the answer path: :func:`record` only puts the row on a bounded
in-memory queue (it never blocks and never raises); one background thread writes batches.
If the state database is down the batch is kept and retried with backoff; rows beyond the
queue's bound are dropped and counted. Every failure is logged and opens the ``audit``
problem in :mod:`bot.health` (``/healthz`` answers 503) until a write succeeds again.

A restricted answer (one the KPI policy governs) is different: its row is written by
:func:`write_before`, synchronously, *before* the answer is posted, so no restricted
number reaches Slack without a row (a kill between post and write cannot lose it). If that
write fails the answer is withheld. The row says ``answered``; :func:`amend` corrects it if
the post then fails. ``KPI_AUDIT=0`` turns the log off (and the withholding with it).

``kpibot audit`` prints control and format characters (terminal escapes, bidi overrides)
as visible ``\x1b`` / ``\u202e`` codes, so a question cannot forge or hide rows.
"""

from __future__ import annotations

import atexit
import os
import queue
import sys
import threading
import time
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError

from bot import health
from bot.logging import event, get_logger, redact

log = get_logger("kpibot.audit")

MAX_QUESTION = 500
MAX_DETAIL = 300
QUEUE_SIZE = 10_000
BATCH = 200

#: Outcomes of a question from Slack.
ANSWERED, REFUSED_POLICY, RATE_LIMITED, BAD_QUESTION, ERROR = (
    "answered", "refused-policy", "rate-limited", "bad-question", "error",
)
#: Outcomes of a scheduled delivery.
DELIVERED, FAILED = "delivered", "failed"

audit_metadata = MetaData()

audit_log = Table(
    "audit_log",
    audit_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime, nullable=False),
    Column("source", String(16), nullable=False),
    Column("surface", String(24)),
    Column("team_id", String(64)),
    Column("user_id", String(64)),
    Column("channel_id", String(64)),
    Column("command", String(24)),
    Column("kpi", String(64)),
    Column("question", Text),
    Column("allowed", Boolean, nullable=False),
    Column("outcome", String(24), nullable=False),
    Column("error_id", String(32)),
    Column("detail", Text),
    Column("elapsed_ms", Float),
)
Index("ix_audit_log_at", audit_log.c.at)

_COLUMNS = {c.name for c in audit_log.columns} - {"id"}


def enabled() -> bool:
    return os.environ.get("KPI_AUDIT", "1").lower() not in ("0", "false", "no", "off")


def _state_url() -> str:
    from storage.state import state_url

    return state_url()


_tables_ready: set[str] = set()
_tables_lock = threading.Lock()


def engine_for(url: str | None = None) -> Engine:
    """The state database's engine, with ``audit_log`` created on first use."""
    from storage.state import get_state_engine

    url = url or _state_url()
    engine = get_state_engine(url)
    if url not in _tables_ready:
        with _tables_lock:
            if url not in _tables_ready:
                try:
                    audit_metadata.create_all(engine, checkfirst=True)
                except (IntegrityError, ProgrammingError, OperationalError):
                    # another process created it at the same moment
                    audit_metadata.create_all(engine, checkfirst=True)
                _tables_ready.add(url)
    return engine


def _clip(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    text = redact(str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _row(fields: dict[str, Any]) -> dict[str, Any]:
    # every column in every row: one executemany batch needs the same keys throughout
    row = dict.fromkeys(_COLUMNS)
    row.update((k, v) for k, v in fields.items() if k in _COLUMNS)
    row["at"] = row["at"] or datetime.now(UTC).replace(tzinfo=None)
    row["question"] = _clip(row.get("question"), MAX_QUESTION)
    row["detail"] = _clip(row.get("detail"), MAX_DETAIL)
    for key in ("surface", "command", "outcome", "source"):
        if row.get(key) is not None:
            row[key] = str(row[key])[:24]
    for key in ("team_id", "user_id", "channel_id", "kpi", "error_id"):
        if row.get(key) is not None:
            row[key] = str(row[key])[:64 if key != "error_id" else 32]
    if row.get("elapsed_ms") is not None:
        row["elapsed_ms"] = round(float(row["elapsed_ms"]), 1)  # type: ignore[arg-type]  # not None: checked
    row["outcome"] = row["outcome"] or ERROR
    row["source"] = row["source"] or "slack"
    allowed = fields.get("allowed")
    row["allowed"] = bool(allowed) if allowed is not None else row["outcome"] not in (REFUSED_POLICY, RATE_LIMITED)
    return row


class AuditWriter:
    """A bounded queue and one daemon thread that writes it in batches."""

    def __init__(self, maxsize: int = QUEUE_SIZE, batch: int = BATCH):
        self._queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue(maxsize)
        self._batch = batch
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._pending = 0  # rows taken from the queue, not yet written or given up
        self.written = 0
        self.dropped = 0
        self.failures = 0
        self._last_drop_log = 0.0

    # ---- the caller's side: never blocks, never raises ------------------------------------

    def put(self, url: str, row: dict[str, Any]) -> bool:
        try:
            self._ensure_thread()
            self._queue.put_nowait((url, row))
            return True
        except queue.Full:
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_drop_log > 10:
                self._last_drop_log = now
                event(log, "audit_dropped", level=30, dropped=self.dropped, reason="queue full")
            return False
        except Exception:  # noqa: BLE001 - the audit must never break an answer
            self.dropped += 1
            event(log, "audit_record_failed", level=30, exc_info=True)
            return False

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="kpibot-audit", daemon=True)
                self._thread.start()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything recorded so far is written (or given up); True if so."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._queue.unfinished_tasks or self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.05))
        return True

    @property
    def backlog(self) -> int:
        return self._queue.qsize() + self._pending

    # ---- the writer thread -----------------------------------------------------------------

    def _take(self) -> list[tuple[str, dict[str, Any]]]:
        items = [self._queue.get()]
        while len(items) < self._batch:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _run(self) -> None:
        while True:
            items = self._take()
            with self._idle:
                self._pending = len(items)
            try:
                by_url: dict[str, list[dict[str, Any]]] = {}
                for url, row in items:
                    by_url.setdefault(url, []).append(row)
                for url, rows in by_url.items():
                    self._write(url, rows)
            except Exception:  # noqa: BLE001 - the thread must outlive any bad batch
                self.dropped += len(items)
                event(log, "audit_write_failed", level=40, exc_info=True, rows=len(items))
            finally:
                for _ in items:
                    self._queue.task_done()
                with self._idle:
                    self._pending = 0
                    self._idle.notify_all()

    def _write(self, url: str, rows: list[dict[str, Any]]) -> None:
        """Insert ``rows``; while the database is down, retry with backoff (up to ~30 s),
        unless newer rows are piling up, then give the batch up and say so."""
        pause, deadline = 0.25, time.monotonic() + float(os.environ.get("KPI_AUDIT_RETRY_SECONDS", "30"))
        while True:
            try:
                engine = engine_for(url)
                with engine.begin() as conn:
                    conn.execute(insert(audit_log), rows)
                self.written += len(rows)
                health.clear("audit")
                return
            except Exception as exc:  # noqa: BLE001 - any failure: log, retry, maybe drop
                self.failures += 1
                first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
                transient = isinstance(exc, OperationalError | DBAPIError | OSError)
                give_up = (not transient or time.monotonic() + pause > deadline
                           or self._queue.qsize() > self._queue.maxsize // 2)
                event(log, "audit_write_failed", level=30 if transient else 40, rows=len(rows),
                      error=redact(first[:200]), retrying=not give_up)
                if not transient and len(rows) > 1:
                    for row in rows:  # one bad row must not take the whole batch with it
                        self._write(url, [row])
                    return
                if give_up:
                    self.dropped += len(rows)
                    health.report("audit", f"audit rows could not be written ({type(exc).__name__})")
                    return
                time.sleep(pause)
                pause = min(pause * 2, 5.0)


_writer = AuditWriter()


def writer() -> AuditWriter:
    return _writer


def record(**fields: Any) -> None:
    """Queue one audit row (see the module docstring for the fields). Never blocks or raises."""
    try:
        if not enabled():
            return
        url = fields.pop("url", None) or _state_url()
        _writer.put(url, _row(fields))
    except Exception:  # noqa: BLE001 - the audit must never break an answer
        event(log, "audit_record_failed", level=30, exc_info=True)


def write_before(
    *,
    surface: str,
    text: str,
    user_id: str | None,
    channel_id: str | None,
    team_id: str | None,
    kpi: str | None,
    command: str | None = "question",
) -> int | None:
    """The row of a restricted answer, written now, before it is posted: its id (0 when the
    audit log is off), or None when it could not be written: then the answer must be withheld."""
    if not enabled():
        return 0
    url = _state_url()
    row = _row({"source": "slack", "surface": surface, "team_id": team_id, "user_id": user_id,
                "channel_id": channel_id, "command": command, "kpi": kpi, "question": text,
                "outcome": ANSWERED, "allowed": True, "detail": "written before posting"})
    try:
        with engine_for(url).begin() as conn:
            key = conn.execute(insert(audit_log).values(**row)).inserted_primary_key
            assert key is not None
            row_id = key[0]
    except Exception as exc:  # noqa: BLE001 - any failure means: no row, so no answer
        first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
        event(log, "audit_write_failed", level=40, rows=1, error=redact(first[:200]), before_post=True)
        health.report("audit", f"audit rows could not be written ({type(exc).__name__}); restricted answers withheld")
        return None
    health.clear("audit")
    return int(row_id or 0)


def amend(row_id: int, *, outcome: str, error_id: str | None = None, detail: str | None = None,
          elapsed_ms: float | None = None) -> None:
    """Correct a :func:`write_before` row once the post is done (or failed). Never raises."""
    if not row_id:
        return
    try:
        values: dict[str, Any] = {"outcome": outcome, "error_id": error_id, "detail": _clip(detail, MAX_DETAIL)}
        if elapsed_ms is not None:
            values["elapsed_ms"] = round(float(elapsed_ms), 1)
        with engine_for(_state_url()).begin() as conn:
            conn.execute(update(audit_log).where(audit_log.c.id == row_id).values(**values))
    except Exception:  # noqa: BLE001 - the row already says who asked what, where
        event(log, "audit_amend_failed", level=30, exc_info=True, row_id=row_id)


def question_outcome(reply: Any, *, limited: bool = False, delivery_failed: bool = False) -> str:
    """The audit outcome of a :class:`bot.router.Reply`."""
    reason = getattr(reply, "reason", None)
    if limited or getattr(reply, "command", None) == "rate_limited":
        return RATE_LIMITED
    if reason == REFUSED_POLICY:
        return REFUSED_POLICY
    if delivery_failed or reason in ("error", "database"):
        return ERROR
    if reason == BAD_QUESTION:  # e.g. a schedules command that failed: never "answered"
        return BAD_QUESTION
    if reply.kind in ("answer", "info"):
        return ANSWERED
    if getattr(reply, "error_id", None) or reason in ("error", "database"):
        return ERROR
    return BAD_QUESTION


def record_question(
    *,
    surface: str,
    text: str,
    user_id: str | None,
    channel_id: str | None,
    team_id: str | None,
    reply: Any,
    kpi: str | None = None,
    elapsed_ms: float | None = None,
    limited: bool = False,
    delivery_error_id: str | None = None,
) -> None:
    """One question from Slack, after its reply was handed over (or failed to be)."""
    try:
        outcome = question_outcome(reply, limited=limited, delivery_failed=delivery_error_id is not None)
        result = getattr(reply, "result", None)
        detail = None
        if delivery_error_id:
            detail = "the reply could not be delivered to Slack"
        elif getattr(reply, "reason", None) == "database":
            detail = "database"
        record(
            source="slack",
            surface=surface,
            team_id=team_id,
            user_id=user_id,
            channel_id=channel_id,
            command="rate_limited" if limited else getattr(reply, "command", None),
            kpi=kpi or (result.metric.id if result is not None else None),
            question=text,
            outcome=outcome,
            allowed=outcome not in (REFUSED_POLICY, RATE_LIMITED),
            error_id=delivery_error_id or getattr(reply, "error_id", None),
            detail=detail,
            elapsed_ms=elapsed_ms,
        )
    except Exception:  # noqa: BLE001
        event(log, "audit_record_failed", level=30, exc_info=True)


def record_delivery(
    *,
    kind: str,
    channel_id: str | None,
    outcome: str,
    ref_id: int | None = None,
    kpis: Iterable[str] = (),
    user_id: str | None = None,
    detail: str | None = None,
    elapsed_ms: float | None = None,
    url: str | None = None,
) -> None:
    """One digest or alert delivery (or a refusal to deliver one). Never blocks or raises."""
    try:
        kpis = [str(k) for k in kpis if k]
    except Exception:  # noqa: BLE001
        kpis = []
    record(
        url=url,
        source="schedule",
        surface=kind,
        user_id=user_id,
        channel_id=channel_id,
        command="delivery",
        kpi=",".join(kpis)[:64] or None,
        question=f"{kind} #{ref_id}" if ref_id is not None else kind,
        outcome=outcome,
        allowed=outcome != REFUSED_POLICY,
        detail=detail,
        elapsed_ms=elapsed_ms,
    )


def flush(timeout: float = 5.0) -> bool:
    return _writer.flush(timeout)


atexit.register(lambda: _writer.flush(2.0))


# ---- reading --------------------------------------------------------------------------------


def latest(limit: int = 50, *, url: str | None = None) -> list[dict[str, Any]]:
    """The newest ``limit`` rows, newest first."""
    engine = engine_for(url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(audit_log).order_by(audit_log.c.id.desc()).limit(max(1, int(limit)))
        ).mappings()
        return [dict(r) for r in rows]


def printable(value: Any) -> str:
    """``value`` for a terminal: control and format characters (ESC, CR, bidi overrides…)
    shown as visible codes, so text from Slack cannot move the cursor or forge a row."""
    out = []
    for ch in str(value):
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


HEADER = ("when (UTC)", "source", "where", "who", "outcome", "kpi", "ms", "question / detail")


def format_rows(rows: list[dict[str, Any]]) -> str:
    lines = []
    for r in rows:
        when = r["at"].strftime("%Y-%m-%d %H:%M:%S") if r["at"] else "?"
        source = r["source"] + (f"/{r['surface']}" if r["surface"] else "")
        outcome = r["outcome"] + (f" ({r['error_id']})" if r["error_id"] else "")
        ms = "" if r["elapsed_ms"] is None else f"{r['elapsed_ms']:.0f}"
        said = r["question"] or ""
        if r["detail"]:
            said = f"{said} — {r['detail']}" if said else r["detail"]
        said = printable(said.replace("\n", " "))
        lines.append(tuple(printable(v) for v in (when, source, r["channel_id"] or "-", r["user_id"] or "-",
                                                  outcome, r["kpi"] or "-", ms)) + (said[:100],))
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(HEADER[:-1])]
    out = ["  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=False)) + "  " + HEADER[-1]]
    for line in lines:
        out.append("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=False)) + "  " + line[-1])
    return "\n".join(out)


def print_latest(limit: int = 50, *, url: str | None = None, stream: TextIO | None = None) -> int:
    """``kpibot audit``: the latest entries, oldest first; 0, or 1 if the log cannot be read."""
    stream = stream or sys.stdout
    try:
        rows = latest(limit, url=url)
    except Exception as exc:  # noqa: BLE001 - a terminal command: one clear line
        first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"The audit log (KPI_STATE_URL) could not be read: {redact(first[:200])}", file=sys.stderr)
        return 1
    if not rows:
        print("The audit log is empty.", file=stream)
        return 0
    print(format_rows(list(reversed(rows))), file=stream)
    return 0


__all__ = [
    "audit_log", "audit_metadata", "record", "record_question", "record_delivery", "question_outcome",
    "flush", "latest", "print_latest", "writer", "engine_for", "AuditWriter", "write_before", "amend",
    "printable",
]
