"""Access policy and rate limits, as pure logic (the Slack path is covered end to end elsewhere)."""

from __future__ import annotations

import pytest

from bot.policy import DEFAULT, PolicyError, load_policy
from bot.ratelimit import RateLimiter


def test_default_policy_keeps_financial_kpis_out_and_the_rest_open():
    assert not DEFAULT.allows("revenue", channel_id="C1", user_id="U1")
    assert not DEFAULT.allows("revenue", channel_id="D1", user_id="U1", is_dm=True)
    assert DEFAULT.allows("nps", channel_id="C1", user_id="U1")
    # per-customer answers follow the financial rules whatever the KPI
    assert not DEFAULT.allows("nps", channel_id="C1", user_id="U1", dimension="customer")


def test_policy_file_lists_channels_users_and_kpi_overrides(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text(
        """
admins = ["UADMIN"]
[groups.financial]
channels = ["CFIN"]
users = ["UCFO"]
usergroups = ["SLEADS"]
[groups.satisfaction]
channels = ["CCX"]
[kpis.nps]
channels = ["*"]
"""
    )
    policy = load_policy(str(path))
    assert policy.allows("revenue", channel_id="CFIN", user_id="U9")
    assert not policy.allows("revenue", channel_id="CGEN", user_id="UCFO")  # a channel post exposes it to all
    assert policy.allows("revenue", channel_id="D1", user_id="UCFO", is_dm=True)
    assert policy.allows("revenue", channel_id="D1", user_id="U7", is_dm=True, user_groups=["SLEADS"])
    assert not policy.allows("revenue", channel_id="D1", user_id="U7", is_dm=True)
    assert not policy.allows("csat", channel_id="CGEN", user_id="U1")
    assert policy.allows("nps", channel_id="CGEN", user_id="U1")  # the KPI rule overrides its group
    assert policy.is_admin("UADMIN") and not policy.is_admin("U1")


def test_yaml_policy_and_errors(tmp_path):
    good = tmp_path / "p.yaml"
    good.write_text("groups:\n  support:\n    channels: [CSUP]\n")
    assert not load_policy(str(good)).allows("tickets", channel_id="C1", user_id="U1")
    bad = tmp_path / "bad.toml"
    bad.write_text('[groups.money]\nchannels = ["C1"]\n')
    with pytest.raises(PolicyError, match="unknown KPI group"):
        load_policy(str(bad))
    bad.write_text('[kpis.nps]\nchannels = "C1"\n')
    with pytest.raises(PolicyError, match="list of IDs"):
        load_policy(str(bad))


def test_rate_limiter_refills_on_the_injected_clock():
    now = [0.0]
    limiter = RateLimiter(capacity=3, per_minute=6, clock=lambda: now[0])
    assert [limiter.take("u") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("u")
    assert wait == pytest.approx(10.0)  # one token per 10 s
    assert limiter.take("other") == 0.0  # keys are independent
    now[0] = 10.0
    assert limiter.take("u") == 0.0
    assert limiter.take("u") > 0
