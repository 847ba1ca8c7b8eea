"""Access policy and rate limits, as pure logic (the Slack path is covered end to end elsewhere)."""

from __future__ import annotations

import pytest

from bot.policy import DEFAULT, Place, PolicyError, PolicyFile, load_policy
from bot.ratelimit import RateLimiter
from metrics.access import for_metric, for_report


def _chan(cid: str) -> Place:
    return Place(cid)


def _dm(user: str) -> Place:
    return Place("D" + user, "im", frozenset({user}))


def test_default_policy_keeps_money_and_per_customer_data_out_and_the_rest_open():
    assert not DEFAULT.allows(for_metric("revenue"), _chan("C1"))
    assert not DEFAULT.allows(for_metric("revenue"), _dm("U1"))
    assert DEFAULT.allows(for_metric("nps"), _chan("C1"))
    assert not DEFAULT.allows(for_report("profitability"), _chan("C1"))
    assert DEFAULT.allows(for_report("complaints"), _chan("C1"))


def test_policy_file_lists_channels_users_and_kpi_overrides(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text(
        """
admins = ["UADMIN"]
[sensitivity.money]
channels = ["CFIN"]
users = ["UCFO"]
[groups.satisfaction]
channels = ["CCX"]
[kpis.nps]
channels = ["*"]
"""
    )
    policy = load_policy(str(path))
    assert policy.allows(for_metric("revenue"), _chan("CFIN"))
    assert not policy.allows(for_metric("revenue"), _chan("CGEN"))  # a channel post exposes it to all
    assert policy.allows(for_metric("revenue"), _dm("UCFO"))
    assert not policy.allows(for_metric("revenue"), _dm("U7"))
    assert not policy.allows(for_metric("csat"), _chan("CGEN"))
    assert policy.allows(for_metric("csat"), _chan("CCX"))
    assert policy.allows(for_metric("nps"), _chan("CGEN"))  # the KPI rule overrides its group
    # a group DM is private only if every member may see it
    assert policy.allows(for_metric("revenue"), Place("G1", "mpim", frozenset({"UCFO"})))
    assert not policy.allows(for_metric("revenue"), Place("G1", "mpim", frozenset({"UCFO", "U7"})))
    assert not policy.allows(for_metric("revenue"), Place("G1", "mpim", frozenset()))  # members unknown
    # per-customer data was not mentioned: it stays closed, even in the finance channel
    assert not policy.allows(for_report("profitability"), _chan("CFIN"))
    assert policy.is_admin("UADMIN") and not policy.is_admin("U1")


def test_a_policy_that_says_nothing_about_money_keeps_it_closed(tmp_path):
    path = tmp_path / "admins-only.toml"
    path.write_text('admins = ["UADMIN"]\n')
    policy = load_policy(str(path))
    for kpi in ("revenue", "new_mrr", "nrr", "marketing_roi", "leads"):
        assert not policy.allows(for_metric(kpi), _chan("CGEN")), kpi
        assert not policy.allows(for_metric(kpi), _dm("UADMIN")), kpi
    assert policy.allows(for_metric("nps"), _chan("CGEN"))


def test_yaml_policy_and_errors(tmp_path):
    good = tmp_path / "p.yaml"
    good.write_text("groups:\n  support:\n    channels: [CSUP]\n")
    assert not load_policy(str(good)).allows(for_metric("tickets"), _chan("C1"))
    bad = tmp_path / "bad.toml"
    bad.write_text('[groups.money]\nchannels = ["C1"]\n')
    with pytest.raises(PolicyError, match="unknown KPI group"):
        load_policy(str(bad))
    bad.write_text('[kpis.nps]\nchannels = "C1"\n')
    with pytest.raises(PolicyError, match="list of IDs"):
        load_policy(str(bad))
    bad.write_text('[sensitivity.mony]\nchannels = ["C1"]\n')
    with pytest.raises(PolicyError, match="unknown sensitivity"):
        load_policy(str(bad))
    bad.write_text('[sensitivity.money]\nusergroups = ["S1"]\n')
    with pytest.raises(PolicyError, match="not supported"):
        load_policy(str(bad))


def test_the_policy_file_is_reread_when_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "policy.toml"
    path.write_text('[sensitivity.money]\nchannels = ["CFIN"]\n')
    monkeypatch.setenv("KPI_POLICY", str(path))
    source = PolicyFile()
    assert source.current().allows(for_metric("revenue"), _chan("CFIN"))
    path.write_text('[sensitivity.money]\nchannels = ["CFIN2"]\n')  # revoked
    assert not source.current().allows(for_metric("revenue"), _chan("CFIN"))
    path.write_text("this is not toml [")  # broken: everything restricted closes
    assert not source.current().allows(for_metric("revenue"), _chan("CFIN2"))


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
