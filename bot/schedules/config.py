"""Settings for digests and alerts, read from the environment once per service."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, not {raw!r}") from exc


@dataclass(frozen=True)
class Config:
    #: A slot missed while the bot was down is still posted (marked late) within this.
    grace: timedelta = timedelta(hours=6)
    #: Survey KPIs (NPS, CSAT, CES) need this many responses in a window before an alert.
    min_sample: int = 30
    #: Time zone when neither the command nor the user's Slack profile gives one.
    default_timezone: str = "UTC"
    #: How often alert rules are evaluated.
    alert_interval: timedelta = timedelta(hours=1)
    #: How often failed deliveries are retried and the schedule re-read from the state DB.
    housekeeping_interval: timedelta = timedelta(minutes=5)
    #: A digest posted this long after its slot carries a "late" line.
    late_after: timedelta = timedelta(minutes=10)
    #: A claim not finished within this is taken to belong to a process that died.
    stale_claim: timedelta = timedelta(minutes=15)
    #: A post still ``sending`` after this was cut off mid-call (a live one ends in ~1 min).
    stale_sending: timedelta = timedelta(minutes=3)
    #: How far back missed slots are looked for (older ones are not even logged).
    lookback: timedelta = timedelta(days=35)
    rules_file: str | None = None
    #: Floods: at most this many alert rules (and, separately, digests) per channel and per
    #: user, added from Slack (the terminal and the rules file are the operator's: uncapped).
    max_per_channel: int = 20
    max_per_user: int = 10

    @classmethod
    def from_env(cls) -> Config:
        tz = os.environ.get("KPI_TIMEZONE") or "UTC"
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"KPI_TIMEZONE={tz!r} is not a time zone (try Europe/Berlin)") from exc
        return cls(
            grace=timedelta(hours=_float("KPI_GRACE_HOURS", 6)),
            min_sample=int(_float("KPI_ALERT_MIN_SAMPLE", 30)),
            default_timezone=tz,
            alert_interval=timedelta(minutes=_float("KPI_ALERT_INTERVAL_MINUTES", 60)),
            housekeeping_interval=timedelta(minutes=_float("KPI_RETRY_MINUTES", 5)),
            rules_file=os.environ.get("KPI_RULES_FILE") or None,
            max_per_channel=max(1, int(_float("KPI_MAX_RULES_PER_CHANNEL", 20))),
            max_per_user=max(1, int(_float("KPI_MAX_RULES_PER_USER", 10))),
        )
