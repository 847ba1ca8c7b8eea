"""Summaries per entity (``summarize:``), every (entity, item) pair (``pairs:``) and a named row
function (``rows: {function: outages}``) in a team's model file, over the team's own schema
(an ``app`` schema on PostgreSQL and DuckDB, name prefixes on SQLite, money in cents): the
team's KPIs and the built-in MRR movements and downtime over the mapped tables equal what the
small fixture gives by hand, cut by a dimension too; a bad summary is a load error naming file
and line while the rest loads."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from metrics.api import ask
from metrics.model.document import parse
from metrics.model.load import load_model
from storage import database
from tests.pg_team import team_database
from tests.test_model_file import _model as model_file
from tests.test_model_file import configured  # noqa: F401 - the fixture

AS_OF = date(2026, 4, 15)

SCHEMA = [
    "CREATE TABLE {app}accounts (id VARCHAR(10), created_at TIMESTAMP, closed_at TIMESTAMP, vertical VARCHAR(20))",
    "CREATE TABLE {app}plans (id VARCHAR(10), account_id VARCHAR(10), started_at TIMESTAMP, ended_at TIMESTAMP, "
    "mrr_cents BIGINT, addon VARCHAR(10))",
    "CREATE TABLE {app}events (id VARCHAR(10), account_id VARCHAR(10), member VARCHAR(10), happened_at TIMESTAMP, "
    "feature VARCHAR(10))",
    "CREATE TABLE {app}outages (id VARCHAR(10), began TIMESTAMP, finished TIMESTAMP, sev VARCHAR(10), "
    "what VARCHAR(12))",
]
ROWS = [
    "INSERT INTO {app}accounts VALUES ('a1', '2026-01-05 10:00:00', NULL, 'Retail'), "
    "('a2', '2026-01-10 10:00:00', '2026-03-10 09:00:00', 'Tech'), ('a3', '2026-02-03 10:00:00', NULL, 'Retail'), "
    "('a4', '2026-03-15 10:00:00', NULL, 'Tech')",
    # a1 grows 49.00 -> 59.00, a2 leaves (19.00), a3 shrinks 49.00 -> 29.00, a4 is new (19.00)
    "INSERT INTO {app}plans VALUES ('p1', 'a1', '2026-01-05 10:00:00', NULL, 4900, 'core'), "
    "('p2', 'a1', '2026-03-20 10:00:00', NULL, 1000, 'sso'), "
    "('p3', 'a2', '2026-01-10 10:00:00', '2026-03-10 09:00:00', 1900, 'core'), "
    "('p4', 'a3', '2026-02-03 10:00:00', '2026-03-05 10:00:00', 4900, 'core'), "
    "('p5', 'a3', '2026-03-05 10:00:00', NULL, 2900, 'core'), "
    "('p6', 'a4', '2026-03-15 10:00:00', NULL, 1900, 'core')",
    "INSERT INTO {app}events VALUES ('e1', 'a1', 'u1', '2026-03-30 10:00:00', 'export'), "
    "('e2', 'a1', 'u1', '2026-03-31 09:00:00', 'export'), ('e3', 'a1', 'u2', '2026-03-26 12:00:00', 'search'), "
    "('e4', 'a3', 'u1', '2026-03-28 08:00:00', 'search'), ('e5', 'a3', 'u9', '2026-03-20 08:00:00', 'export'), "
    "('e6', 'a4', 'u1', '2026-04-02 08:00:00', 'export'), ('e7', 'a2', 'u1', '2026-03-03 08:00:00', 'search'), "
    "('e8', 'a4', 'u3', '2026-03-29 08:00:00', 'search')",
    # o1 and o2 overlap (10:00-12:00 down once), o3 is a degradation, o4 runs 30 minutes into April
    "INSERT INTO {app}outages VALUES ('o1', '2026-03-02 10:00:00', '2026-03-02 11:00:00', 'sev1', 'outage'), "
    "('o2', '2026-03-02 10:30:00', '2026-03-02 12:00:00', 'sev2', 'outage'), "
    "('o3', '2026-03-20 08:00:00', '2026-03-20 08:30:00', 'sev2', 'degradation'), "
    "('o4', '2026-03-31 23:30:00', '2026-04-01 00:30:00', 'sev1', 'outage')",
]

MODEL = """\
version: 1
sources:
  customers:
    relation: {app}accounts
    columns: {{customer_id: id, signed_up_at: created_at, churned_at: closed_at, industry: vertical}}
  subscriptions:
    relation: {app}plans
    columns: {{subscription_id: id, customer_id: account_id, started_at: started_at, ended_at: ended_at,
               mrr: {{column: mrr_cents, scale: 0.01}}, product: addon}}
  events:
    relation: {app}events
    columns: {{event_id: id, customer_id: account_id, member: member, used_at: happened_at, feature: feature}}
    time: used_at
    customer_key: customer_id
  incidents:
    relation: {app}outages
    columns: {{incident_id: id, started_at: began, ended_at: finished, severity: sev, kind: what}}
metrics:
  outage_hours:
    type: simple
    rows: {{function: outages}}
    aggregates: {{down: {{agg: sum, expr: down_seconds, empty: 0}}}}
    finalize: {{function: arithmetic, expr: down / 3600}}
    dimensions: [severity]
    customer_dimensions: false
    unit: hours
  weekly_members:
    type: simple
    source: events
    in_window: "used_at >= days_before(period_end, 7) and used_at < period_end"
    summarize:
      by: [customer_id, member]
      columns: {{uses: {{agg: count}}}}
    aggregates:
      members: {{agg: count}}
      accounts: {{agg: count_distinct, expr: customer_id}}
      heavy: {{agg: count, filter: uses >= 2}}
    finalize: {{function: value, of: members, show: [accounts, heavy]}}
    split: sum
  mrr_gained:
    type: simple
    source: subscriptions
    in_window: "started_at < period_end and (ended_at is null or ended_at >= period_start)"
    summarize:
      name: team_mrr
      by: [customer_id]
      columns:
        at_start: {{agg: sum, expr: mrr, filter: "started_at < period_start and (ended_at is null or ended_at >= period_start)"}}
        at_end: {{agg: sum, expr: mrr, filter: "started_at < period_end and (ended_at is null or ended_at >= period_end)"}}
    aggregates:
      won: {{agg: sum, expr: at_end, filter: "at_start <= 0 and at_end > 0"}}
      grown: {{agg: sum, expr: at_end - at_start, filter: "at_start > 0 and at_end > at_start"}}
    finalize: {{function: arithmetic, expr: won + grown, amounts: [won, grown]}}
    unit: currency
  accounts_with_plans:
    type: cumulative
    source: subscriptions
    start: started_at
    summarize:
      by: [customer_id]
      columns: {{live: {{agg: count, filter: "ended_at is null or ended_at >= period_end"}}}}
    aggregates:
      holders: {{agg: count, filter: live > 0}}
      ever: {{agg: count}}
    finalize: {{function: value, of: holders, show: [ever]}}
  feature_reach:
    type: simple
    source: events
    pairs: {{entity: customer_id, item: feature, flag: used}}
    aggregates: {{pairs: {{agg: sum, expr: 1 - used}}, used: {{agg: sum, expr: used}}}}
    finalize: {{function: ratio, num: used, den: pairs, scale: 100}}
    n: pairs
    dimensions: [feature]
    unit: percent
  feature_share:
    type: simple
    source: events
    pairs: {{entity: customer_id, item: feature, flag: used}}
    aggregates: {{share: {{agg: avg, expr: used}}, accounts: {{agg: count_distinct, expr: customer_id}}}}
    finalize: {{function: value, of: share, show: [accounts]}}
    unit: ratio
  addon_reach:
    type: simple
    source: subscriptions
    in_window: "started_at < period_end and (ended_at is null or ended_at >= period_end)"
    filter: product is not null
    pairs:
      entity: customer_id
      item: product
      flag: has
      population: {{source: customers, in_window: "signed_up_at < period_end and (churned_at is null or churned_at >= period_end)"}}
    aggregates: {{pairs: {{agg: sum, expr: 1 - has}}, holding: {{agg: sum, expr: has}}}}
    finalize: {{function: ratio, num: holding, den: pairs, scale: 100}}
    dimensions: [product]
    unit: percent
"""


def _ask(question: str, url: str):
    return ask(question, as_of=AS_OF, url=url)


def _assert_answers(url: str) -> None:
    """Every number computed by hand from ROWS (March 2026; the last 7 days: from 25 March)."""
    # users (account, member) with an event from 25 March: (a1, u1) twice, (a1, u2), (a3, u1), (a4, u3)
    weekly = _ask("weekly members march 2026", url)
    assert weekly.value == 4 and weekly.extras == {"accounts": 3, "heavy": 1}
    by_industry = {g.group: g.value for g in _ask("weekly members by industry march 2026", url).breakdown}
    assert by_industry == {"Retail": 3, "Tech": 1}
    # each account's MRR at the start and end of March: a1 49 -> 59, a2 19 -> 0, a3 49 -> 29, a4 0 -> 19
    gained = _ask("mrr gained march 2026", url)
    assert gained.value == pytest.approx(19.00 + 10.00, abs=1e-9)
    assert gained.extras == {"won": pytest.approx(19.00), "grown": pytest.approx(10.00)}
    # the built-in movements over the team's plans: start 117, end 107, kept (of those at the start) 59 + 29
    assert _ask("nrr march 2026", url).value == pytest.approx(100 * 88 / 117)
    assert _ask("grr march 2026", url).value == pytest.approx(100 * (117 - 20 - 19) / 117)
    assert _ask("net new mrr march 2026", url).value == pytest.approx(107.00 - 117.00, abs=1e-9)
    nrr = {g.group: g.value for g in _ask("nrr by industry march 2026", url).breakdown}
    assert nrr == pytest.approx({"Retail": 100 * 88 / 98, "Tech": 0.0})
    # plans started by the end of March: a1, a2, a3, a4 have some; a2's ended on the 10th
    held = _ask("accounts with plans march 2026", url)
    assert held.value == 3 and held.extras == {"ever": 4}
    # March events: a1 export + search, a2 search, a3 search + export, a4 search -> 6 of 4 × 2 pairs
    assert _ask("feature reach march 2026", url).value == pytest.approx(75.0)
    reach = {g.group: g.value for g in _ask("feature reach by feature march 2026", url).breakdown}
    assert reach == pytest.approx({"export": 50.0, "search": 100.0})
    # counted pairs (a row per account, weighted by the 2 features), cut by the accounts' vertical:
    # Retail a1 + a3 use 4 of 2 × 2, Tech a2 + a4 use 2 of 2 × 2
    reach = {g.group: g.value for g in _ask("feature reach by industry march 2026", url).breakdown}
    assert reach == pytest.approx({"Retail": 100.0, "Tech": 50.0})
    # an average and a distinct count do not add up from counted rows: the pairs are listed, the
    # 8 pairs with used 0 and the 6 used with 1, so the mean is 6 of 14 (counted rows: 6 of 4 + 6)
    share = _ask("feature share march 2026", url)
    assert share.value == pytest.approx(6 / 14) and share.extras == {"accounts": 4}
    # outages in March: 10:00-12:00 on the 2nd (o1 and o2 overlap), 23:30-24:00 on the 31st (o4, clipped)
    assert _ask("outage hours march 2026", url).value == pytest.approx(2.5)
    hours = {g.group: g.value for g in _ask("outage hours by severity march 2026", url).breakdown}
    assert hours == pytest.approx({"sev1": 1.0 + 0.5, "sev2": 1.0})  # o2's first half hour is o1's
    down = _ask("downtime march 2026", url)
    assert down.value == pytest.approx(150.0) and down.extras == {"incidents": 3, "longest": pytest.approx(90.0)}
    assert _ask("uptime march 2026", url).value == pytest.approx(100 * (1 - 150 / (31 * 24 * 60)))
    # accounts alive at the end: a1, a3, a4; held then: a1 core + sso, a3 core, a4 core -> 4 of 3 × 2
    assert _ask("addon reach march 2026", url).value == pytest.approx(100 * 4 / 6)
    addons = {g.group: g.value for g in _ask("addon reach by product march 2026", url).breakdown}
    assert addons == pytest.approx({"core": 100.0, "sso": 100 / 3})
    # Retail a1 (core, sso) + a3 (core): 3 of 2 × 2; Tech a4 (core): 1 of 1 × 2 (a2 closed on the 10th)
    addons = {g.group: g.value for g in _ask("addon reach by industry march 2026", url).breakdown}
    assert addons == pytest.approx({"Retail": 75.0, "Tech": 50.0})


def _model(tmp_path: Path, prefix: dict[str, str]):
    return model_file(tmp_path, prefix, MODEL)


@pytest.mark.parametrize("backend", ["duckdb", "sqlite"])
def test_summaries_and_pairs_over_the_teams_tables_equal_hand_computed(backend, tmp_path, configured):  # noqa: F811
    if backend == "duckdb":
        url, prefix, setup = f"duckdb:///{tmp_path / 'team.duckdb'}", {"app": "app."}, ["CREATE SCHEMA app"]
    else:
        url, prefix, setup = f"sqlite:///{tmp_path / 'team.sqlite'}", {"app": "app_"}, []
    engine = create_engine(url)
    with engine.begin() as conn:
        for sql in setup + [s.format(**prefix) for s in SCHEMA + ROWS]:
            conn.execute(text(sql))
    engine.dispose()
    configured(_model(tmp_path, prefix), url)
    _assert_answers(url)


def test_summaries_and_pairs_on_postgres_with_a_select_only_role(tmp_path, configured):  # noqa: F811
    with team_database("kpibot_summary") as db:
        owner = create_engine(db.owner_url)
        with owner.begin() as conn:
            conn.execute(text("CREATE SCHEMA app"))
            for sql in SCHEMA + ROWS:
                conn.execute(text(sql.format(app="app.")))
            conn.execute(text(f'GRANT USAGE ON SCHEMA app TO "{db.role}"'))
            conn.execute(text(f'GRANT SELECT ON ALL TABLES IN SCHEMA app TO "{db.role}"'))
            conn.execute(text(f'GRANT CONNECT ON DATABASE "{db.name}" TO "{db.role}"'))
        owner.dispose()
        configured(_model(tmp_path, {"app": "app."}), db.reader_url)
        assert not database.ownership_of(database.get_engine(db.reader_url)).owned
        _assert_answers(db.reader_url)


BAD = """\
version: 1
metrics:
  good:
    type: simple
    source: usage_events
    time: occurred_at
    summarize: {by: [customer_id, user_id]}
    aggregates: {users: {agg: count}}
    finalize: {function: value, of: users}
  unknown_key:
    type: simple
    source: usage_events
    summarize:
      by: [customer_id]
      group_by: [user_id]
    aggregates: {users: {agg: count}}
    finalize: {function: value, of: users}
  unknown_by:
    type: simple
    source: usage_events
    summarize:
      by: [customer_id, usr_id]
    aggregates: {users: {agg: count}}
    finalize: {function: value, of: users}
  unknown_column_key:
    type: simple
    source: usage_events
    summarize:
      by: [customer_id]
      columns:
        core: {agg: count, filtr: is_core}
    aggregates: {users: {agg: count}}
    finalize: {function: value, of: users}
  unknown_source_column:
    type: simple
    source: usage_events
    summarize:
      by: [customer_id]
      columns:
        core: {agg: count, filter: is_cor = true}
    aggregates: {users: {agg: count}}
    finalize: {function: value, of: users}
  unknown_summary_column:
    type: simple
    source: usage_events
    summarize:
      by: [customer_id]
      columns: {core: {agg: count}}
    aggregates:
      busy: {agg: count, filter: cores > 2}
    finalize: {function: value, of: busy}
  bounds_by_time:
    type: simple
    source: subscriptions
    time: started_at
    summarize:
      by: [customer_id]
      columns:
        live: {agg: count, filter: ended_at >= period_end}
    aggregates: {n: {agg: count}}
    finalize: {function: value, of: n}
  pairs_item:
    type: simple
    source: usage_events
    pairs: {entity: customer_id, item: acton}
    aggregates: {n: {agg: count}}
    finalize: {function: value, of: n}
  pairs_names:
    type: simple
    source: usage_events
    pairs: {entity: customer_id, item: action, names: {hold: x}}
    aggregates: {n: {agg: count}}
    finalize: {function: value, of: n}
  costs:
    type: simple
    source: usage_events
    summarize: {by: [customer_id]}
    aggregates: {n: {agg: count}}
    finalize: {function: value, of: n}
"""


def test_a_bad_summary_is_a_load_error_naming_its_line_and_the_rest_loads():
    doc, errors = parse(BAD, "team.yml")
    assert errors == [] and doc is not None
    loaded = load_model([("team.yml", doc)])
    assert "good" in loaded.metrics
    found = [str(e) for e in loaded.errors]
    assert found == [
        "team.yml:15: metric `unknown_key`: summarize: unknown key `group_by` (did you mean `by`?)",
        "team.yml:22: metric `unknown_by`: summarize: by `usr_id`: unknown column `usr_id` of the source "
        "(did you mean `user_id`?)",
        "team.yml:31: metric `unknown_column_key`: summarize: column `core`: unknown key `filtr` "
        "(did you mean `filter`?)",
        "team.yml:40: metric `unknown_source_column`: summarize: column `core`: unknown column `is_cor` of the "
        "source (did you mean `is_core`?)",
        "team.yml:50: metric `unknown_summary_column`: aggregate `busy`: unknown column `cores` of the summary "
        "`unknown_summary_column` (customer_id, core) (did you mean `core`?)",
        "team.yml:59: metric `bounds_by_time`: summarize: column `live`: period_start/period_end need `in_window` "
        "(rows picked by `time` are not joined to the windows)",
        "team.yml:65: metric `pairs_item`: pairs: item: unknown column `acton` of `usage_events` "
        "(did you mean `action`?)",
        "team.yml:71: metric `pairs_names`: pairs: `names` gives the inner subqueries' names in the SQL "
        "(held, entities, items: words)",
        "team.yml:77: metric `costs`: summarize: `costs` is a source's name; name the rows otherwise (`name:`)",
    ]
