"""Slack Web API clients with kpibot's retry policy.

* ``SLACK_API_URL`` overrides the API base (``https://slack.com/api/``), e.g. to point the
  bot at a fake Slack in tests or at a corporate proxy.
* Rate limits (HTTP 429) are retried after the ``Retry-After`` seconds Slack sends;
  500/503 answers and connection errors are retried with exponential backoff and jitter
  (0.3-0.6 s, then 0.6-1.2 s).
  The policy lives in the SDK's own ``RetryHandler`` classes, so every Web API call made
  through these clients (and Bolt's per-request copies of them) gets it.
"""

from __future__ import annotations

import os
import random

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.jitter import Jitter
from slack_sdk.webhook import WebhookClient

DEFAULT_API_URL = "https://slack.com/api/"
DEFAULT_TIMEOUT = 15  # seconds per HTTP attempt


def api_url(value: str | None = None) -> str:
    """The Web API base URL, always ending in ``/`` (the SDK joins method names onto it)."""
    url = (value or os.environ.get("SLACK_API_URL") or DEFAULT_API_URL).strip()
    return url if url.endswith("/") else url + "/"


class ProportionalJitter(Jitter):
    """Up to +100% of the interval (the SDK's default adds up to a whole second each time)."""

    def recalculate(self, duration: float) -> float:
        return duration + random.uniform(0, duration)  # noqa: S311 - spreading retries, not crypto


def retry_handlers(
    *,
    rate_limit_retries: int = 3,
    server_error_retries: int = 2,
    connection_retries: int = 2,
    backoff_factor: float = 0.3,
) -> list[RetryHandler]:
    """Fresh handler instances (they keep per-client state, so never share a list)."""
    backoff = BackoffRetryIntervalCalculator(backoff_factor=backoff_factor, jitter=ProportionalJitter())
    return [
        ConnectionErrorRetryHandler(max_retry_count=connection_retries, interval_calculator=backoff),
        RateLimitErrorRetryHandler(max_retry_count=rate_limit_retries),
        ServerErrorRetryHandler(max_retry_count=server_error_retries, interval_calculator=backoff),
    ]


def make_client(
    token: str | None = None,
    *,
    base_url: str | None = None,
    timeout: int = DEFAULT_TIMEOUT,
) -> WebClient:
    """A :class:`WebClient` for ``token`` (default ``SLACK_BOT_TOKEN``) with the retry policy."""
    return WebClient(
        token=token if token is not None else os.environ.get("SLACK_BOT_TOKEN"),
        base_url=api_url(base_url),
        timeout=timeout,
        retry_handlers=retry_handlers(),
    )


def make_webhook(url: str, *, timeout: int = DEFAULT_TIMEOUT) -> WebhookClient:
    """A client for a ``response_url`` (or incoming webhook) with the same retry policy."""
    return WebhookClient(url=url, timeout=timeout, retry_handlers=retry_handlers())
