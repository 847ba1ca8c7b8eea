"""Who may see which KPI, where: a small policy file (TOML or YAML) at ``KPI_POLICY``.

```toml
admins = ["U0ADMIN"]              # may change or remove any digest or alert

[groups.financial]                # a KPI group (financial, customers, satisfaction, …)
channels = ["C0FINANCE"]          # channel IDs where these KPIs may be posted
users = ["U0CFO"]                 # users who may see them in a DM with the bot
usergroups = ["S0LEADS"]          # Slack user groups, same as users

[kpis.nps]                        # a single KPI; overrides its group's rule
channels = ["*"]                  # "*" = everywhere
```

A KPI with no rule (neither its id nor its group) is open. The default policy, used when
``KPI_POLICY`` is unset, restricts the financial group and per-customer answers to listed
channels and users — and lists none, so revenue, margin, CAC and profit per customer stay
out of Slack until an admin names where they may go. The terminal (`kpibot ask`) is not
subject to the policy: whoever runs it already holds the database.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from metrics.catalogue import CATALOGUE

#: Per-customer answers: ranked customers by profit or value follow the financial rules.
PER_CUSTOMER_DIMENSIONS = ("customer", "customer_id", "name")
FINANCIAL = "financial"


@dataclass(frozen=True)
class Rule:
    channels: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    usergroups: frozenset[str] = frozenset()

    def allows(self, *, channel_id: str | None, user_id: str | None, is_dm: bool, user_groups: Iterable[str] = ()) -> bool:
        if "*" in self.channels:
            return True
        if is_dm:
            return user_id in self.users or bool(self.usergroups & set(user_groups))
        return channel_id in self.channels


@dataclass(frozen=True)
class Policy:
    kpis: dict[str, Rule] = field(default_factory=dict)
    groups: dict[str, Rule] = field(default_factory=dict)
    admins: frozenset[str] = frozenset()
    source: str = "default"

    def rule_for(self, metric_id: str, dimension: str | None = None) -> Rule | None:
        if metric_id in self.kpis:
            return self.kpis[metric_id]
        metric = CATALOGUE.get(metric_id)
        group = metric.group if metric else None
        if dimension in PER_CUSTOMER_DIMENSIONS:
            group = FINANCIAL
        return self.groups.get(group) if group else None

    def allows(
        self,
        metric_id: str,
        *,
        channel_id: str | None,
        user_id: str | None,
        is_dm: bool = False,
        dimension: str | None = None,
        user_groups: Iterable[str] = (),
    ) -> bool:
        rule = self.rule_for(metric_id, dimension)
        if rule is None:
            return True
        return rule.allows(channel_id=channel_id, user_id=user_id, is_dm=is_dm, user_groups=user_groups)

    def allows_group(self, group: str | None, *, channel_id: str | None, user_id: str | None, is_dm: bool = False) -> bool:
        rule = self.groups.get(group) if group else None
        return rule is None or rule.allows(channel_id=channel_id, user_id=user_id, is_dm=is_dm)

    def is_admin(self, user_id: str | None) -> bool:
        return user_id is not None and user_id in self.admins


#: Reports follow the rules of the KPI group they reveal.
REPORT_GROUPS = {
    "profitability": FINANCIAL,
    "acquisition": "funnel",
    "complaints": "support",
    "before-churn": "retention",
}

DEFAULT = Policy(groups={FINANCIAL: Rule()}, source="default (financial KPIs restricted, none listed)")


class PolicyError(Exception):
    pass


def _rule(data: dict, where: str) -> Rule:
    if not isinstance(data, dict):
        raise PolicyError(f"{where}: expected a table with channels/users/usergroups")
    unknown = set(data) - {"channels", "users", "usergroups"}
    if unknown:
        raise PolicyError(f"{where}: unknown keys {sorted(unknown)}")

    def ids(key: str) -> frozenset[str]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise PolicyError(f"{where}.{key}: expected a list of IDs")
        return frozenset(value)

    return Rule(ids("channels"), ids("users"), ids("usergroups"))


def parse_policy(data: dict, source: str) -> Policy:
    from metrics.catalogue import GROUPS

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
    return Policy(kpis=kpis, groups=groups, admins=frozenset(admins), source=source)


def load_policy(path: str | None = None) -> Policy:
    """The policy from ``path`` / ``KPI_POLICY``, or the default. A broken file is an error at start."""
    path = path or os.environ.get("KPI_POLICY")
    if not path:
        return DEFAULT
    text = Path(path).read_text()
    try:
        data = yaml.safe_load(text) if path.endswith((".yml", ".yaml")) else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise PolicyError(f"{path}: {exc}") from exc
    return parse_policy(data or {}, path)
