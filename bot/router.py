"""What a line of text asks for, and the answer to it, independent of how it is delivered.

``/kpi …``, ``@kpibot …`` and DMs all land in :func:`route`, which returns a :class:`Reply`:

* ``answer``: a computed :class:`metrics.result.Result`, posted where the team sees it;
* ``info``: help, the KPI list, a definition, a schedules confirmation (shown to the asker);
* ``error``: the core's user-facing message for a bad question, a database problem, or
  one line with an error id for anything unexpected (the id is in the log line too).

Nothing here talks to Slack, so the same routing is testable without a network.
"""

from __future__ import annotations

import html
import importlib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.logging import event, get_logger, new_error_id
from metrics import render
from metrics.access import AccessDenied, Authorize
from metrics.errors import QueryError
from metrics.result import Result
from storage.database import DatabaseError

log = get_logger(__name__)

MAX_TEXT = 500
HELP_WORDS = {"", "help", "?", "-h", "--help", "usage", "hi", "hello", "hey"}
LIST_WORDS = {"list", "kpis", "metrics", "catalogue", "catalog", "all"}
DEFINE_WORDS = {"define", "definition", "explain", "meaning"}
SCHEDULE_WORDS = {"digest": "digest", "digests": "digest", "alert": "alert", "alerts": "alert"}
SCHEDULES_MODULE = "bot.schedules.commands"

SLACK_HELP = (
    "*In Slack:* `/kpi <question>` posts the answer in the channel; mention me "
    "(`@kpibot nps last-quarter`) for an answer in a thread; or send me a direct message."
)


@dataclass(frozen=True)
class Context:
    """Who asked, where, and when; ``user_tz`` (IANA name) makes "this week" theirs."""

    user_id: str | None = None
    channel_id: str | None = None
    user_tz: str | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    database_url: str | None = None
    client: Any = field(default=None, compare=False, repr=False)  # Web API client, for schedules previews
    # the access policy, shown what a question reads before any work (may raise AccessDenied)
    authorize: Authorize | None = field(default=None, compare=False, repr=False)

    def today(self) -> date | None:
        """The asker's local date, or None to let the metrics settings decide."""
        if not self.user_tz:
            return None
        try:
            zone = ZoneInfo(self.user_tz)
        except (ZoneInfoNotFoundError, ValueError):
            return None
        now = self.now if self.now.tzinfo else self.now.replace(tzinfo=UTC)
        return now.astimezone(zone).date()


@dataclass
class Reply:
    kind: str  # answer | info | error
    text: str = ""
    result: Result | None = None
    report: Any = None  # a metrics.reports report (acquisition, complaints, before-churn, …)
    command: str = "question"  # question | help | list | define | digest | alert
    error_id: str | None = None
    reason: str | None = None  # errors: bad-question | database | error | refused-policy (for the audit log)
    kpi: str | None = None  # what a refused question asked for (for the audit log)

    @property
    def public(self) -> bool:
        return self.kind == "answer"


Ask = Callable[..., Any]  # metrics.api.answer: a Result, or a report for the report words


def clean_text(text: str | None, bot_user_id: str | None = None) -> str:
    """Slack's markup to plain words: drop mentions of the bot, unescape ``&amp;`` etc."""
    text = text or ""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", " ", text)
    # a mention at the very start addresses the bot even if we do not know its id yet
    text = re.sub(r"^\s*<@[UW][A-Z0-9]+(\|[^>]*)?>", " ", text)
    # <https://x|label>, <#C123|name>, <@U123|name>, <!here> -> the readable part
    text = re.sub(r"<([^<>|]*)\|([^<>]*)>", r"\2", text)
    text = re.sub(r"<[#@!]([^<>]*)>", r"\1", text)
    text = re.sub(r"<([^<>]*)>", r"\1", text)
    text = html.unescape(text).replace("`", " ").replace("\u00a0", " ")
    text = " ".join(text.split())
    if text.lower().startswith("/kpi "):
        text = text[5:]
    elif text.lower() == "/kpi":
        text = ""
    return text.strip()


def is_instant(text: str) -> bool:
    """Help, the list and a definition: answered from the catalogue, no query, so not counted
    in a user's questions in flight; so is a digest or alert command other than a preview (it
    reads and writes the state database only; rate limits still apply)."""
    words = (text or "").split()
    head = words[0].lower().rstrip(":") if words else ""
    if head in SCHEDULE_WORDS:
        return len(words) < 2 or words[1].lower() not in ("preview", "test")
    return (head in HELP_WORDS and len(words) <= 1) or (head in LIST_WORDS and len(words) == 1) or head in DEFINE_WORDS


def route(text: str, ctx: Context | None = None, *, ask: Ask | None = None) -> Reply:
    """Dispatch one (already cleaned) line and never raise."""
    ctx = ctx or Context()
    text = (text or "").strip()
    words = text.split()
    head = words[0].lower().rstrip(":") if words else ""
    command = "question"
    try:
        if len(text) > MAX_TEXT:
            return Reply("error", f"That question is {len(text)} characters long; please keep it under {MAX_TEXT}.")
        if head in HELP_WORDS and len(words) <= 1:
            return Reply("info", help_text(), command="help")
        if head in LIST_WORDS and len(words) == 1:
            return Reply("info", render.catalogue_list(), command="list")
        if head in DEFINE_WORDS:
            command = "define"
            word = " ".join(words[1:]).strip(" ?")
            if not word:
                return Reply("error", "Which KPI? Try `/kpi define nps`, or `/kpi list` to see them all.", command=command)
            return Reply("info", render.define(word), command=command)
        if head in SCHEDULE_WORDS:
            command = SCHEDULE_WORDS[head]
            return _schedules(command, words[1:], ctx)
        ask = ask or _default_ask()
        extra = {"authorize": ctx.authorize} if ctx.authorize is not None else {}
        result = ask(text, as_of=ctx.today(), url=ctx.database_url, **extra)
        if isinstance(result, Result):
            return Reply("answer", result=result)
        return Reply("answer", report=result, command="report")
    except AccessDenied as exc:
        return Reply("error", str(exc), command=command, reason="refused-policy", kpi=getattr(exc, "kpi", None))
    except QueryError as exc:
        return Reply("error", str(exc), command=command, reason="bad-question")
    except DatabaseError as exc:
        event(log, "database_error", level=30, command=command, error=str(exc), kind=type(exc).__name__)
        return Reply("error", f":hourglass: {exc}" if "refresh" in str(exc) else str(exc), command=command,
                     reason="database")
    except Exception:  # noqa: BLE001 - the user gets an id, the log gets the traceback
        return internal_error(command=command, user=ctx.user_id, channel=ctx.channel_id)


def internal_error(**fields) -> Reply:
    """A one-line apology with an error id; the traceback goes to the log under the same id."""
    error_id = new_error_id()
    event(log, "internal_error", level=40, exc_info=True, error_id=error_id, **fields)
    return Reply(
        "error",
        f"Sorry, something went wrong on my side (error id `{error_id}`). "
        "The team can find the details in the logs.",
        command=fields.get("command", "question"),
        error_id=error_id,
        reason="error",
    )


def help_text() -> str:
    return render.help_text(prefix="/kpi") + "\n" + SLACK_HELP


def _default_ask() -> Ask:
    from functools import partial

    from metrics.api import answer

    return partial(answer, draw=True)  # every Slack answer shows its chart


def schedules_module():
    """``bot.schedules.commands`` if it is installed, else None (errors inside it propagate)."""
    try:
        return importlib.import_module(SCHEDULES_MODULE)
    except ModuleNotFoundError as exc:
        # only "the module itself is not there"; a missing dependency inside it is a bug
        if exc.name and (exc.name == SCHEDULES_MODULE or SCHEDULES_MODULE.startswith(exc.name + ".")):
            return None
        raise


def _schedules(kind: str, args: list[str], ctx: Context) -> Reply:
    module = schedules_module()
    if module is None or not hasattr(module, "handle"):
        return Reply("info", f"Scheduled {kind}s are not available in this installation.", command=kind)
    extra = {}
    if ctx.client is not None and "client" in inspect.signature(module.handle).parameters:
        extra["client"] = ctx.client  # lets `digest preview` post into the channel
    text = module.handle(
        [kind, *args],
        channel_id=ctx.channel_id or "",
        user_id=ctx.user_id or "",
        user_tz=ctx.user_tz,
        now=ctx.now,
        **extra,
    )
    return Reply("info", str(text), command=kind, reason=getattr(text, "reason", None))
