"""Structured log lines (one JSON object per line on stderr), with secrets scrubbed.

Every line goes through :func:`redact`, so a Slack token, signing secret or the legacy
verification token that slipped into a message (an SDK debug line, a request body) is
masked before it is written. Use :func:`event` for kpibot's own lines::

    log = get_logger(__name__)
    event(log, "answer", surface="slash", kpi="nps", ms=42)
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

_SECRET_PATTERNS = [
    # Slack tokens: bot, user, app-level, refresh, config, legacy workspace tokens
    (re.compile(r"\b(xox[abeoprs]|xapp|xoxe\.xox[bp])-[A-Za-z0-9\-._]+"), r"\1-***"),
    # form bodies / query strings carrying the legacy verification token or a bearer token
    (re.compile(r"(?i)\b(token|signing_secret|client_secret)=([^&\s\"']+)"), r"\1=***"),
    (re.compile(r"(?i)(\"(?:token|signing_secret|client_secret)\"\s*:\s*\")([^\"]*)(\")"), r"\1***\3"),
    (re.compile(r"(?i)('(?:token|signing_secret|client_secret)'\s*:\s*')([^']*)(')"), r"\1***\3"),
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?bearer\s+)([^\s'\"]+)"), r"\1***"),
    # response_url / incoming webhook URLs are bearer capabilities: keep the host, drop the key
    (re.compile(r"(hooks\.slack\.com(?:%2F|/)(?:commands|services|actions)(?:%2F|/))[^\s&\"']+"), r"\1***"),
]
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "fields", "color_message"}
_configured = False


def redact(text: str) -> str:
    """``text`` with every token-shaped secret masked."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    for name in ("SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_CLIENT_SECRET"):
        secret = os.environ.get(name)
        if secret and len(secret) >= 8 and secret in text:
            text = text.replace(secret, "***")
    return text


class JsonFormatter(logging.Formatter):
    """``{"ts": …, "level": …, "logger": …, "event": …, …fields}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_") and key not in line:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(line, default=str, ensure_ascii=False))


class RedactingFilter(logging.Filter):
    """For handlers with another formatter: scrub the rendered message in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string must not kill logging
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def setup(level: str | int | None = None, stream=None) -> None:
    """Send all logging to ``stream`` (stderr) as JSON lines; idempotent."""
    global _configured
    level = level or os.environ.get("KPI_LOG_LEVEL", "INFO")
    root = logging.getLogger()
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
        if not isinstance(level, int):
            level = logging.INFO
    root.setLevel(level)
    if _configured:
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    # The SDK logs every request and response body at DEBUG; keep them out unless asked.
    if level > logging.DEBUG:
        logging.getLogger("slack_sdk").setLevel(logging.INFO)
        logging.getLogger("slack_bolt").setLevel(logging.INFO)
    _configured = True


def get_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger


def event(logger: logging.Logger, name: str, *, level: int = logging.INFO, exc_info=None, **fields: Any) -> None:
    """One structured line: ``name`` plus ``fields`` (None values dropped)."""
    clean = {k: v for k, v in fields.items() if v is not None}
    logger.log(level, name, extra={"fields": clean}, exc_info=exc_info)


def new_error_id() -> str:
    """A short id shown to the user and written in the log line of an internal error."""
    return uuid.uuid4().hex[:10]
