"""Modals for digests and alerts: built here, read back from a ``view_submission`` and turned
into the typed command they stand for, so a form and ``/kpi digest add …`` are one path.

Every field is checked before the modal closes; what is wrong is shown under its field
(``response_action: errors``). The command itself then goes through the same gate as a typed
one (rate limits, the KPI policy, caps, the audit log); its reply comes as an ephemeral
message in the chosen channel.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from bot import mrkdwn

DIGEST_VIEW = "digest_modal"
ALERT_VIEW = "alert_modal"
ASK_VIEW = "ask_modal"
FREQUENCIES = {"daily": "Every day", "weekly": "Every week", "monthly": "Every month"}
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
CONDITIONS = {"below": "falls below", "above": "rises above", "drops": "drops by", "rises": "rises by"}
WINDOWS = (1, 7, 14, 28)
_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{2,40}$")
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _text(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:150]}


def _option(label: str, value: str) -> dict[str, Any]:
    return {"text": _text(label[:75]), "value": value}


def kpi_option_groups() -> list[dict[str, Any]]:
    """The catalogue (the team's own KPIs included) by group, as Slack's option groups."""
    from metrics.catalogue import CATALOGUE, GROUPS

    groups: dict[str, list[dict[str, Any]]] = {}
    for metric in CATALOGUE.values():
        groups.setdefault(metric.group, []).append(_option(metric.label, metric.id))
    order = [g for g in GROUPS if g in groups] + sorted(g for g in groups if g not in GROUPS)
    return [{"label": _text(g.capitalize()), "options": groups[g][:100]} for g in order][:100]


def _input(block_id: str, label: str, element: dict[str, Any], *, optional: bool = False,
           hint: str | None = None) -> dict[str, Any]:
    block = {"type": "input", "block_id": block_id, "label": _text(label), "element": element,
             "optional": optional}
    if hint:
        block["hint"] = _text(hint)
    return block


def _select(action_id: str, options: list[dict[str, Any]], initial: str | None) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "static_select", "action_id": action_id, "options": options}
    chosen = [o for o in options if o["value"] == initial]
    if chosen:
        element["initial_option"] = chosen[0]
    return element


def _kpi_option(kpi: str) -> dict[str, Any] | None:
    from metrics.catalogue import CATALOGUE

    metric = CATALOGUE.get(kpi)
    return _option(metric.label, metric.id) if metric else None


def _channel_select(channel: str | None) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "conversations_select", "action_id": "channel",
                               "filter": {"include": ["public", "private"], "exclude_bot_users": True}}
    if channel and _CHANNEL.match(channel):
        element["initial_conversation"] = channel
    else:
        element["default_to_current_conversation"] = True
    return element


def digest_view(*, kpis: list[str], channel: str | None, tz: str, digest_id: int | None = None,
                frequency: str = "weekly", day: str = "mon", at_time: str = "09:00") -> dict[str, Any]:
    kpi_element: dict[str, Any] = {"type": "multi_static_select", "action_id": "kpis",
                                   "option_groups": kpi_option_groups(), "max_selected_items": 20}
    initial = [o for o in (_kpi_option(k) for k in kpis) if o]
    if initial:
        kpi_element["initial_options"] = initial
    day_options = [_option(name, d) for d, name in zip(DAYS, DAY_NAMES, strict=True)]
    day_options += [_option(f"Day {n} of the month", str(n)) for n in range(1, 29)]
    day_options.append(_option("Last day of the month", "last"))
    return {
        "type": "modal",
        "callback_id": DIGEST_VIEW,
        "private_metadata": json.dumps({"id": digest_id}),
        "title": _text("Edit digest" if digest_id else "New digest"),
        "submit": _text("Save"),
        "close": _text("Cancel"),
        "blocks": [
            _input("channel", "Post in", _channel_select(channel)),
            _input("kpis", "KPIs", kpi_element),
            _input("frequency", "How often", _select("frequency", [_option(v, k) for k, v in FREQUENCIES.items()],
                                                      frequency)),
            _input("day", "On", _select("day", day_options, day), optional=True,
                   hint="Weekly: a weekday. Monthly: a day of the month. Daily: leave empty."),
            _input("time", "At", {"type": "timepicker", "action_id": "time", "initial_time": at_time}),
            _input("tz", "Time zone", {"type": "plain_text_input", "action_id": "tz", "initial_value": tz,
                                       "max_length": 64}, hint="An IANA name, e.g. Europe/Berlin."),
        ],
    }


def alert_view(*, kpi: str | None, channel: str | None, tz: str, rule_id: int | None = None,
               condition: str = "below", threshold: str = "", window: int = 7,
               keep: dict[str, Any] | None = None) -> dict[str, Any]:
    """``keep``: what the form does not show but an edit must not lose (``by`` a dimension,
    ``for`` N windows in a row, ``min`` responses), carried in private_metadata."""
    kpi_element: dict[str, Any] = {"type": "static_select", "action_id": "kpi", "option_groups": kpi_option_groups()}
    option = _kpi_option(kpi) if kpi else None
    if option:
        kpi_element["initial_option"] = option
    value: dict[str, Any] = {"type": "plain_text_input", "action_id": "threshold", "max_length": 20}
    if threshold:
        value["initial_value"] = threshold
    windows = [_option(f"{d} day{'s' if d > 1 else ''}", str(d)) for d in sorted({*WINDOWS, window})]
    return {
        "type": "modal",
        "callback_id": ALERT_VIEW,
        "private_metadata": json.dumps({"tz": tz, "id": rule_id, **(keep or {})}),
        "title": _text("Edit alert" if rule_id else "New alert"),
        "submit": _text("Save"),
        "close": _text("Cancel"),
        "blocks": [
            _input("kpi", "KPI", kpi_element),
            _input("condition", "When it", _select("condition", [_option(v, k) for k, v in CONDITIONS.items()],
                                                     condition)),
            _input("threshold", "Value", value,
                   hint="In the KPI's own unit: 30 (a score), 5% (a rate), 1h (a time); for drops/rises the size "
                        "of the change, e.g. 10 or 10%."),
            _input("window", "Over", _select("window", windows, str(window))),
            _input("channel", "Post in", _channel_select(channel)),
        ],
    }


@dataclass
class Submission:
    """A checked form: the typed command it stands for and the channel it applies to, or errors."""

    command: str | None
    channel: str | None
    errors: dict[str, str]
    digest_id: int | None = None  # an edit: the digest this one replaces
    replaces: int | None = None  # an alert edit: the rule this one replaces


def _value(values: dict, block: str, action: str) -> Any:
    return ((values.get(block) or {}).get(action) or {})


def read_digest(view: dict[str, Any], default_tz: str) -> Submission:
    from bot.schedules.parse import CommandError, check_zone, parse_digest
    from metrics.catalogue import CATALOGUE

    values = (view.get("state") or {}).get("values") or {}
    errors: dict[str, str] = {}
    channel = _value(values, "channel", "channel").get("selected_conversation")
    if not isinstance(channel, str) or not _CHANNEL.match(channel):
        errors["channel"] = "Pick the channel to post in."
    kpis = [o.get("value") for o in _value(values, "kpis", "kpis").get("selected_options") or []]
    if not kpis:
        errors["kpis"] = "Pick at least one KPI."
    elif any(k not in CATALOGUE for k in kpis):
        errors["kpis"] = "One of these is not a KPI in the catalogue any more; pick again."
    frequency = (_value(values, "frequency", "frequency").get("selected_option") or {}).get("value")
    if frequency not in FREQUENCIES:
        errors["frequency"] = "Pick how often."
    day = (_value(values, "day", "day").get("selected_option") or {}).get("value")
    if frequency == "weekly" and day not in DAYS:
        errors["day"] = "A weekly digest needs a weekday."
    elif frequency == "monthly" and day not in [str(n) for n in range(1, 29)] + ["last"]:
        errors["day"] = "A monthly digest needs a day of the month (1-28 or the last)."
    at_time = _value(values, "time", "time").get("selected_time")
    if not isinstance(at_time, str) or not _TIME.match(at_time):
        errors["time"] = "Pick a time."
    tz = (_value(values, "tz", "tz").get("value") or default_tz).strip()
    if not check_zone(tz):
        errors["tz"] = "Not a time zone I know; use an IANA name such as Europe/Berlin or UTC."
    meta = _metadata(view)
    digest_id = meta.get("id") if isinstance(meta.get("id"), int) else None
    if errors:
        return Submission(None, None, errors)
    words = [str(w) for w in (frequency, *([day] if frequency != "daily" else []), at_time, tz, *kpis)]
    try:
        parse_digest(list(words), default_tz=default_tz)  # the typed command's own checks, nothing saved
    except CommandError as exc:
        return Submission(None, None, {"kpis": mrkdwn.plain(str(exc))[:150]})
    return Submission("digest add " + " ".join(words), channel, {}, digest_id)


def read_alert(view: dict[str, Any], default_tz: str) -> Submission:
    from bot.schedules.parse import CommandError, check_zone, parse_alert
    from metrics.catalogue import CATALOGUE

    values = (view.get("state") or {}).get("values") or {}
    errors: dict[str, str] = {}
    kpi = (_value(values, "kpi", "kpi").get("selected_option") or {}).get("value")
    if kpi not in CATALOGUE:
        errors["kpi"] = "Pick a KPI."
    condition = (_value(values, "condition", "condition").get("selected_option") or {}).get("value")
    if condition not in CONDITIONS:
        errors["condition"] = "Pick a condition."
    raw = (_value(values, "threshold", "threshold").get("value") or "").strip()
    threshold = raw.replace(" ", "")
    if not re.fullmatch(r"-?\d{1,12}(\.\d{1,6})?(%|pp|h|d|m|min|s|k|points?)?", threshold):
        errors["threshold"] = "Give a number, e.g. 30, 5% or 1h."
    window = (_value(values, "window", "window").get("selected_option") or {}).get("value")
    if not isinstance(window, str) or not window.isdigit() or not 1 <= int(window) <= 90:
        errors["window"] = "Pick a window."
    channel = _value(values, "channel", "channel").get("selected_conversation")
    if not isinstance(channel, str) or not _CHANNEL.match(channel):
        errors["channel"] = "Pick the channel to post in."
    meta = _metadata(view)
    tz = str(meta.get("tz") or default_tz)
    tz = tz if check_zone(tz) else default_tz
    rule_id = meta.get("id") if isinstance(meta.get("id"), int) else None
    if errors:
        return Submission(None, None, errors)
    amount = re.sub(r"(\d)(points?|pp|%)$", r"\1 \2", threshold)
    words = [str(kpi), str(condition), *amount.split(), "over", f"{window}d", tz]
    from metrics.catalogue import dimensions_for

    by, times, least = meta.get("by"), meta.get("for"), meta.get("min")
    if isinstance(by, str) and by in dimensions_for(CATALOGUE[str(kpi)]):
        words += ["by", by]
    if isinstance(times, int) and 1 < times <= 30:
        words += ["for", str(times), "windows"]
    if isinstance(least, int) and 0 < least <= 100_000:
        words += ["min", str(least)]
    try:
        parse_alert(list(words), default_tz=default_tz)
    except CommandError as exc:
        return Submission(None, None, {"threshold": mrkdwn.plain(str(exc))[:150]})
    return Submission("alert add " + " ".join(words), channel, {}, replaces=rule_id)


def ask_view(question: str = "") -> dict[str, Any]:
    """The global shortcut's "Ask kpibot": a question and where to post the answer."""
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": "question", "max_length": 500,
                               "placeholder": _text("nps for SMB customers last quarter")}
    if question:
        element["initial_value"] = question[:500]
    return {
        "type": "modal",
        "callback_id": ASK_VIEW,
        "title": _text("Ask kpibot"),
        "submit": _text("Ask"),
        "close": _text("Cancel"),
        "blocks": [
            _input("question", "Question", element),
            _input("channel", "Answer in", {"type": "conversations_select", "action_id": "channel",
                                            "default_to_current_conversation": True,
                                            "response_url_enabled": True}),
        ],
    }


def read_ask(view: dict[str, Any]) -> Submission:
    values = (view.get("state") or {}).get("values") or {}
    question = (_value(values, "question", "question").get("value") or "").strip()
    channel = _value(values, "channel", "channel").get("selected_conversation")
    errors = {}
    if not question:
        errors["question"] = "Type a question, e.g. nps last quarter."
    if not isinstance(channel, str) or not _CHANNEL.match(channel):
        errors["channel"] = "Pick where to answer."
    return Submission(question if not errors else None, channel if not errors else None, errors)


def _metadata(view: dict[str, Any]) -> dict[str, Any]:
    try:
        data = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
