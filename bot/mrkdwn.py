"""Slack mrkdwn that data and users cannot write: the one escaping step for everything posted.

Slack reads ``<…>`` in mrkdwn as control sequences (``<!channel>`` notifies everyone,
``<https://evil|Slack session expired>`` is a disguised link, ``<@U…>`` pings someone), so
every text kpibot posts as mrkdwn goes through :func:`escape` at the last step (the block
builders in :mod:`bot.blocks`, the fallback ``text`` of every message, and the scheduled
posts in :mod:`bot.schedules.delivery`): ``&``, ``<`` and ``>`` become ``&amp;``, ``&lt;``
and ``&gt;`` whatever their origin (a KPI's explanation naming a survey touchpoint, a
breakdown group, an alert's segment, the question echoed back).

The bot's own references to a channel or a user are written with :func:`channel` and
:func:`user`, which return a token carrying a random per-process key; :func:`escape` turns
exactly those tokens back into ``<#C…>`` / ``<@U…>``. Text from data cannot forge one, as it
cannot know the key. :func:`plain` renders the tokens as ``#C…`` / ``@U…`` for plain_text
fields and the terminal.
"""

from __future__ import annotations

import re
import secrets

_KEY = secrets.token_hex(8)
_MARK = "\x1a"  # SUBSTITUTE: never part of a message
_ID = re.compile(r"[A-Z0-9]{1,40}")
_REF = re.compile(re.escape(_MARK + _KEY) + r"([#@])([A-Z0-9]{1,40})" + re.escape(_MARK))


def channel(channel_id: str | None) -> str:
    """A link to a channel, kept through :func:`escape` (an odd id stays literal text)."""
    cid = str(channel_id or "")
    return f"{_MARK}{_KEY}#{cid}{_MARK}" if _ID.fullmatch(cid) else f"#{cid}"


def user(user_id: str | None) -> str:
    """A mention of a user, kept through :func:`escape` (an odd id stays literal text)."""
    uid = str(user_id or "")
    return f"{_MARK}{_KEY}@{uid}{_MARK}" if _ID.fullmatch(uid) else f"@{uid}"


def escape(text: str | None) -> str:
    """``text`` as safe mrkdwn: only the references made by :func:`channel` / :func:`user` link."""
    if not text:
        return ""
    text = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _REF.sub(r"<\1\2>", text)
    return text.replace(_MARK, "")  # a forged or stale token is left as harmless text


def plain(text: str | None) -> str:
    """``text`` for a plain_text field or a terminal: references as ``#C…`` / ``@U…``."""
    if not text:
        return ""
    return _REF.sub(r"\1\2", str(text)).replace(_MARK, "")
