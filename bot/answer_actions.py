"""The buttons under an answer, and what a click asks.

A click must never carry text we would trust: each button's ``value`` (and each "by …"
option's) is a tiny JSON object of ids and enums: the KPI id (checked against the
catalogue), the period as a canonical token (``2026-Q3``, ``2026-07``, ``2026`` or
``2026-07-01..2026-09-30``, checked by pattern), a dimension and filter dimensions (checked
against the KPI's own dimensions), filter values (checked by a strict pattern, then read by
the parser as bound values like any typed ``where``). :func:`decode` refuses anything else.
From those it rebuilds a typed question (:meth:`AskState.question`), which then goes through
exactly the same path as a typed one: rate limits, the policy gate, the audit log.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

from bot import mrkdwn
from metrics.result import Result

BY = "answer_by"
TREND = "answer_trend"
YOY = "answer_yoy"
MOVED = "answer_moved"
DIGEST = "answer_digest"
ALERT = "answer_alert"
ANSWER_ACTIONS = (BY, TREND, YOY, MOVED, DIGEST, ALERT)
IN_PLACE = {BY, TREND, YOY}  # the message itself changes; "what moved it" answers in the thread
VALUE_MAX = 150  # an option's value (Slack's limit; buttons allow 2000)

_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")  # then it must be in the catalogue
_PERIOD = re.compile(r"^\d{4}(-Q[1-4]|-(0[1-9]|1[0-2]))?$|^\d{4}-\d{2}-\d{2}\.\.\d{4}-\d{2}-\d{2}$")
_VALUE = re.compile(r"^[\w .&/+-]{1,60}$")


class BadAction(ValueError):
    """A click whose value is not one we made (or no longer valid): refused, nothing asked."""


@dataclass(frozen=True)
class AskState:
    kpi: str
    period: str
    dimension: str | None = None
    filters: tuple[tuple[str, str], ...] = field(default=())

    def encode(self) -> str:
        data: dict[str, Any] = {"k": self.kpi, "p": self.period}
        if self.dimension:
            data["d"] = self.dimension
        if self.filters:
            data["f"] = [list(f) for f in self.filters]
        return json.dumps(data, separators=(",", ":"))

    def question(self, action: str, dimension: str | None = None) -> str:
        """The typed question a click stands for (shown to the user too: it teaches the syntax)."""
        period = self.period
        if ".." in period:
            start, end = period.split("..")
            period = f"from {start} to {end}"
        text = f"{self.kpi} {period}"
        by = dimension or self.dimension
        if action == TREND:
            text += " trend"
        elif action == YOY:
            text += (f" by {by}" if by else "") + " yoy"
        elif action in (BY, MOVED) and by:
            text += f" by {by}"
        for dim, value in self.filters:
            text += f" where {dim}={value}"
        return text


def period_token(start: date, end: date, unit: str) -> str:
    """``end`` exclusive. Named periods keep their name, so the comparison stays "previous quarter"."""
    if unit == "quarter" and start.day == 1 and start.month in (1, 4, 7, 10):
        return f"{start.year}-Q{(start.month - 1) // 3 + 1}"
    if unit == "month" and start.day == 1:
        return f"{start.year}-{start.month:02d}"
    if unit == "year" and (start.month, start.day) == (1, 1):
        return f"{start.year}"
    return f"{start.isoformat()}..{(end - timedelta(days=1)).isoformat()}"


def state_of(result: Result) -> AskState:
    p = result.period
    return AskState(result.metric.id, period_token(p.start, p.end, p.unit), result.query.dimension,
                    tuple(result.query.filters))


def dimensions(kpi: str) -> list[str]:
    from metrics import catalogue

    metric = catalogue.CATALOGUE.get(kpi)
    return catalogue.dimensions_for(metric) if metric else []


def decode(value: str | None, *, dimension: str | None = None) -> AskState:
    """Parse and check a click's value; raise :class:`BadAction` unless every part is valid."""
    from metrics import catalogue

    try:
        data = json.loads(value or "")
    except ValueError as exc:
        raise BadAction("not JSON") from exc
    if not isinstance(data, dict) or set(data) - {"k", "p", "d", "f"}:
        raise BadAction("unexpected keys")
    kpi, period = data.get("k"), data.get("p")
    if not isinstance(kpi, str) or not _ID.match(kpi) or kpi not in catalogue.CATALOGUE:
        raise BadAction("unknown KPI")
    if not isinstance(period, str) or not _PERIOD.match(period):
        raise BadAction("bad period")
    if ".." in period:
        try:
            start, end = (date.fromisoformat(x) for x in period.split(".."))
        except ValueError as exc:
            raise BadAction("bad dates") from exc
        if end < start:
            raise BadAction("bad dates")
    dims = set(dimensions(kpi))
    dim = data.get("d")
    if dim is not None and (not isinstance(dim, str) or dim not in dims):
        raise BadAction("bad dimension")
    if dimension is not None and dimension not in dims:
        raise BadAction("bad dimension")
    filters: list[tuple[str, str]] = []
    raw = data.get("f") or []
    if not isinstance(raw, list) or len(raw) > 4:
        raise BadAction("bad filters")
    for item in raw:
        if (not isinstance(item, list) or len(item) != 2 or not all(isinstance(x, str) for x in item)
                or item[0] not in dims or not _VALUE.match(item[1])):
            raise BadAction("bad filter")
        filters.append((item[0], item[1]))
    state = AskState(kpi, period, dim, tuple(filters))
    return replace(state, dimension=dimension) if dimension else state


def human(name: str) -> str:
    """``size_band`` → "size band": people read labels, not column names."""
    return name.replace("_", " ")


def actions_block(result: Result) -> dict[str, Any] | None:
    """``by …`` select and the buttons; None when the answer cannot be re-asked (no KPI)."""
    state = state_of(result)
    if any(not _VALUE.match(v) for _, v in state.filters):
        return None  # a value a click could not carry safely: no buttons rather than a wrong re-ask
    value = state.encode()
    if len(value) > 2000:
        return None
    elements: list[dict[str, Any]] = []
    options = []
    for dim in dimensions(state.kpi)[:100]:
        option_value = replace(state, dimension=dim).encode()
        if len(option_value) <= VALUE_MAX:
            options.append({"text": {"type": "plain_text", "text": human(dim)[:75]}, "value": option_value})
    if options:
        elements.append({"type": "static_select", "action_id": BY, "options": options,
                         "placeholder": {"type": "plain_text", "text": "by …"}})

    def button(action_id: str, label: str) -> dict[str, Any]:
        return {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": label},
                "value": value}

    elements += [button(TREND, "trend"), button(YOY, "vs last year")]
    if options:
        elements.append(button(MOVED, "what moved it"))
    elements += [button(DIGEST, "add to a digest"), button(ALERT, "alert me when…")]
    return {"type": "actions", "block_id": "answer_actions", "elements": elements[:25]}


def image_block(file_id: str, alt_text: str, title: str) -> dict[str, Any]:
    """The chart, shown from the uploaded file (not shared anywhere: the message shows it)."""
    # alt text is plain, but it names data (segments): no "<…>" reaches Slack from it
    alt = mrkdwn.plain(alt_text).replace("<", "‹").replace(">", "›")[:2000]
    return {"type": "image", "slack_file": {"id": file_id}, "alt_text": alt,
            "title": {"type": "plain_text", "text": mrkdwn.plain(title)[:2000]}}
