"""Who may see which data, where: a small policy file (TOML or YAML) at ``KPI_POLICY``.

```toml
admins = ["U0ADMIN"]              # may change or remove any digest or alert

[sensitivity.money]               # anything that reads a money column (revenue, MRR, costs, spend…)
channels = ["C0FINANCE"]          # channel IDs where it may be posted ("*" = everywhere)
users = ["U0CFO"]                 # people who may see it in a DM (or group DM of only such people)

[sensitivity.per_customer]        # rows per named customer (the profitability ranking)
channels = ["C0FINANCE"]

[groups.support]                  # optional: a KPI group, restricted further
channels = ["C0SUPPORT"]

[kpis.revenue]                    # optional: one KPI, replacing its group's rule and the
channels = ["C0EXEC"]             #   rules of the data it reads itself (a breakdown or filter
                                  #   that adds a sensitivity still needs that rule)
```

Access is decided by the data a question reads (:mod:`metrics.access` derives it from the
SQL), never by a label: every sensitivity a question reads must allow the place. Deny by
default: a sensitivity the file says nothing about stays closed (money and per-customer data
go nowhere until a rule names where), and so does the default policy when ``KPI_POLICY`` is
unset. The file is re-read when it changes (:class:`PolicyFile`); a file that became unreadable
closes everything restricted until it is fixed. The terminal (`kpibot ask`) is not subject to
the policy: whoever runs it already holds the database.

Slack user groups are not supported (a ``usergroups`` key is an error): list the users.
"""

from __future__ import annotations

import os
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bot.logging import event, get_logger
from metrics.access import Needs
from metrics.catalogue import CATALOGUE
from storage.sensitivity import REACH

log = get_logger(__name__)


@dataclass(frozen=True)
class Place:
    """Where an answer would be seen: a channel, a DM with the bot, or a group DM.

    ``members``: the people in a DM or group DM (the bot not counted); a DM or group DM may
    show restricted data only if every one of them may see it.
    """

    channel_id: str
    kind: str = "channel"  # channel | im | mpim
    members: frozenset[str] = frozenset()

    @property
    def private(self) -> bool:
        return self.kind in ("im", "mpim")


@dataclass(frozen=True)
class Rule:
    channels: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()

    def allows(self, place: Place) -> bool:
        if "*" in self.channels or place.channel_id in self.channels:
            return True
        return place.private and bool(place.members) and place.members <= self.users


CLOSED = Rule()


@dataclass(frozen=True)
class Policy:
    sensitivities: dict[str, Rule] = field(default_factory=dict)
    kpis: dict[str, Rule] = field(default_factory=dict)
    groups: dict[str, Rule] = field(default_factory=dict)
    admins: frozenset[str] = frozenset()
    source: str = "default"

    def rules_for(self, needs: Needs) -> list[Rule]:
        """Every rule the place must pass; a sensitivity without a rule is closed."""
        required = set(needs.sensitivities)
        rules: list[Rule] = []
        if needs.metric and needs.metric in self.kpis:
            from metrics.access import of_metric

            rules.append(self.kpis[needs.metric])
            required -= of_metric(needs.metric)  # what the KPI itself reads, not its cut
        else:
            group = needs.group or REPORT_GROUPS.get(needs.report or "")
            if group in self.groups:
                rules.append(self.groups[group])
        rules += [self.sensitivities.get(name, CLOSED) for name in sorted(required)]
        return rules

    def allows(self, needs: Needs, place: Place) -> bool:
        return all(rule.allows(place) for rule in self.rules_for(needs))

    def can_see_rule(self, needs: Needs, place: Place, rule_channel: str) -> bool:
        """Whether a digest or alert posting to ``rule_channel`` may be listed at ``place``:
        its own channel, or a place where its data may be shown anyway."""
        return rule_channel == place.channel_id or self.allows(needs, place)

    def is_admin(self, user_id: str | None) -> bool:
        return user_id is not None and user_id in self.admins


#: Reports follow the group rule of the KPIs they reveal (their data decides the rest).
REPORT_GROUPS = {
    "profitability": "financial",
    "acquisition": "funnel",
    "complaints": "support",
    "before-churn": "retention",
}

DEFAULT = Policy(source="default (money and per-customer data restricted, no channel or person listed)")


class PolicyError(Exception):
    pass


def _rule(data: dict, where: str) -> Rule:
    if not isinstance(data, dict):
        raise PolicyError(f"{where}: expected a table with channels/users")
    if "usergroups" in data:
        raise PolicyError(f"{where}.usergroups: Slack user groups are not supported; list the user IDs in `users`")
    unknown = set(data) - {"channels", "users"}
    if unknown:
        raise PolicyError(f"{where}: unknown keys {sorted(unknown)}")

    def ids(key: str) -> frozenset[str]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise PolicyError(f"{where}.{key}: expected a list of IDs")
        return frozenset(value)

    return Rule(ids("channels"), ids("users"))


def parse_policy(data: dict, source: str) -> Policy:
    from metrics.catalogue import GROUPS

    if not isinstance(data, dict):
        raise PolicyError(f"{source}: expected a table")
    unknown = set(data) - {"admins", "sensitivity", "groups", "kpis"}
    if unknown:
        raise PolicyError(f"unknown sections {sorted(unknown)} (known: admins, sensitivity, groups, kpis)")
    sensitivities = {}
    for name, rule in (data.get("sensitivity") or {}).items():
        if name not in REACH:
            raise PolicyError(f"sensitivity.{name}: unknown sensitivity (known: {', '.join(REACH)})")
        sensitivities[name] = _rule(rule, f"sensitivity.{name}")
    groups = {}
    for name, rule in (data.get("groups") or {}).items():
        if name not in GROUPS:
            raise PolicyError(f"groups.{name}: unknown KPI group (known: {', '.join(GROUPS)})")
        groups[name] = _rule(rule, f"groups.{name}")
    kpis = {}
    for name, rule in (data.get("kpis") or {}).items():
        if name not in CATALOGUE:
            raise PolicyError(f"kpis.{name}: unknown KPI")
        kpis[name] = _rule(rule, f"kpis.{name}")
    admins = data.get("admins", [])
    if not isinstance(admins, list):
        raise PolicyError("admins: expected a list of user IDs")
    return Policy(sensitivities=sensitivities, kpis=kpis, groups=groups, admins=frozenset(admins), source=source)


def load_policy(path: str | None = None) -> Policy:
    """The policy from ``path`` / ``KPI_POLICY``, or the default. A broken file is an error."""
    path = path or os.environ.get("KPI_POLICY")
    if not path:
        return DEFAULT
    text = Path(path).read_text()
    try:
        data = yaml.safe_load(text) if path.endswith((".yml", ".yaml")) else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise PolicyError(f"{path}: {exc}") from exc
    return parse_policy(data or {}, path)


class PolicyFile:
    """The policy at ``KPI_POLICY``, re-read whenever the file changes (size or mtime).

    Questions, digests and alerts all ask :func:`current`, so a revoked channel is revoked
    for all of them at the next question. A file that cannot be read or parsed any more
    closes everything restricted (the default) until it is fixed, and says so in the log.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[object, ...] | None = None
        self._policy: Policy = DEFAULT

    def current(self) -> Policy:
        path = os.environ.get("KPI_POLICY") or ""
        if not path:
            return DEFAULT
        try:
            st = os.stat(path)
            key: tuple[object, ...] = (path, st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            key = (path, None)
        with self._lock:
            if key == self._key:
                return self._policy
            try:
                policy = load_policy(path)
            except (OSError, PolicyError, UnicodeDecodeError) as exc:
                event(log, "policy_unreadable", level=40, path=path, error=str(exc)[:200])
                policy = DEFAULT
            else:
                if self._key is not None:
                    event(log, "policy_reloaded", path=path)
            self._key, self._policy = key, policy
            return policy


_file = PolicyFile()


def current() -> Policy:
    """The policy in force now (``KPI_POLICY``, re-read on change; the default when unset)."""
    return _file.current()


def refusal(needs: Needs, place: Place) -> str:
    """The private line for a refused question: names the data, never a value."""
    what = f"the `{needs.report}` report" if needs.report else f"`{needs.metric}`"
    if needs.dimension and not needs.report:
        what += f" by {needs.dimension}"
    data = " and ".join(s.replace("_", "-") for s in sorted(needs.sensitivities)) or f"{needs.group} KPIs"
    where = {"im": "in a DM", "mpim": "in this group DM (every member must be allowed)"}.get(place.kind, "in this channel")
    return (f"I can't share {what} {where}: it reads {data} data, which the KPI policy keeps to approved "
            "channels and people. An admin can allow it in the policy file (`KPI_POLICY`).")


def schedule_place(channel_id: str, owner: str | None) -> Place:
    """Where a digest or alert posts: a ``D…`` channel is the owner's DM with the bot (the bot
    can post in no other DM); anything else — a group DM included — needs a channel rule."""
    if channel_id.startswith("D") and owner:
        return Place(channel_id, "im", frozenset({owner}))
    return Place(channel_id)


def allows_schedule(metric_id: str, channel_id: str, owner: str | None, dimension: str | None = None) -> bool:
    """Whether a digest or alert on ``metric_id`` may post in ``channel_id`` (policy in force now)."""
    from metrics.access import for_metric

    return current().allows(for_metric(metric_id, dimension), schedule_place(channel_id, owner))


def may_list(metric_ids, dimension: str | None, rule_channel: str, here: str | None, user_id: str | None) -> bool:
    """Whether a rule posting to ``rule_channel`` may be listed from ``here`` (``list all``):
    rules of this place, and rules whose data could be posted here anyway; never a finance
    channel's thresholds in a public one."""
    if here is None or rule_channel == here:
        return True
    from metrics.access import for_metric

    place = schedule_place(here, user_id)
    policy = current()
    return all(policy.allows(for_metric(m, dimension), place) for m in metric_ids)
