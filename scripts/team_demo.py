#!/usr/bin/env python3
"""The demo company as another team would keep it: its own schemas, table and column names,
money in cents, and a model file (kpibot.yml) mapping it back. kpibot did not create this
database, so it only reads it (no kpibot tables, no DDL).

    .venv/bin/python scripts/team_demo.py DIR [--scale 0.3]   # writes DIR/team.duckdb, DIR/kpibot.yml
    KPI_DATABASE_URL=duckdb:///DIR/team.duckdb KPI_MODEL=DIR/kpibot.yml kpibot ask "retail nps last quarter"

scripts/eval_questions.py --team-demo scores the question sets with the filter values read
through this model, so the understanding is measured on a database described by a model file.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: team relation -> (kpibot's table, {team column: SQL over kpibot's columns})
TEAM_TABLES: dict[str, tuple[str, dict[str, str]]] = {
    "crm.accounts": ("customers", {
        "id": "customer_id", "company": "name", "created": "signed_up_at", "closed": "churned_at",
        "vertical": "industry", "segment": "size_band", "geo": "region", "tier": "plan",
        "came_from": "acquisition_channel", "paying": "is_paying",
    }),
    "billing.invoices": ("orders", {
        "id": "order_id", "account": "customer_id", "issued": "ordered_at",
        "amount_cents": "CAST(round(amount * 100) AS BIGINT)", "sku": "product", "recurring": "is_recurring",
    }),
    "billing.plans": ("subscriptions", {
        "id": "subscription_id", "account": "customer_id", "began": "started_at", "ended": "ended_at",
        "mrr_cents": "CAST(round(mrr * 100) AS BIGINT)", "seats": "seats", "sku": "product",
    }),
    "feedback.answers": ("survey_responses", {
        "id": "response_id", "account": "customer_id", "submitted": "responded_at", "kind": "survey",
        "rating": "score", "step": "touchpoint", "remark": "comment",
    }),
    "support.cases": ("tickets", {
        "id": "ticket_id", "account": "customer_id", "opened": "opened_at", "first_reply": "first_response_at",
        "closed": "resolved_at", "reopened": "reopened", "escalated": "escalated", "replies": "agent_replies",
        "topic": "category", "urgency": "priority", "via": "channel",
    }),
    "sales.prospects": ("leads", {
        "id": "lead_id", "created": "created_at", "origin": "source", "mql": "mql_at", "sql_stage": "sql_at",
        "won": "converted_at", "account": "customer_id", "value_cents": "CAST(round(potential_value * 100) AS BIGINT)",
    }),
    "product.events": ("usage_events", {
        "account": "customer_id", "person": "user_id", "ts": "occurred_at", "event": "action",
        "core": "is_core", "seconds": "session_seconds",
    }),
}

#: team columns in cents: kpibot reads them as money through a scale
CENTS = {"amount_cents": "amount", "mrr_cents": "mrr", "value_cents": "potential_value"}


def model_file() -> str:
    """The kpibot.yml mapping the team's tables back onto kpibot's logical ones."""
    lines = ["version: 1", "sources:"]
    for relation, (logical, columns) in TEAM_TABLES.items():
        lines += [f"  {logical}:", f"    relation: {relation}", "    columns:"]
        for team, source in columns.items():
            if team in CENTS:
                lines.append(f"      {CENTS[team]}: {{column: {team}, scale: 0.01}}")
            else:
                lines.append(f"      {source}: {team}")
    return "\n".join(lines) + "\n"


def build(folder: Path, scale: float = 0.3, today: date | None = None) -> tuple[str, Path]:
    """The team's database and its model file in ``folder``; returns (database URL, model path)."""
    import duckdb

    from storage.database import dispose_all, get_engine
    from storage.demo import build_demo

    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "kpibot-demo.duckdb"
    team = folder / "team.duckdb"
    for path in (source, team):
        path.unlink(missing_ok=True)
    build_demo(get_engine(f"duckdb:///{source}"), scale=scale, today=today)
    dispose_all()  # let go of the demo file before DuckDB attaches it
    with duckdb.connect(str(team)) as con:
        con.execute(f"ATTACH '{source}' AS kpibot (READ_ONLY)")
        for relation, (logical, columns) in TEAM_TABLES.items():
            schema = relation.split(".")[0]
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            select = ", ".join(f"{expr} AS {name}" for name, expr in columns.items())
            # names and expressions are this file's constants, never user text
            con.execute(f"CREATE TABLE {relation} AS SELECT {select} FROM kpibot.main.{logical}")  # noqa: S608
        con.execute("DETACH kpibot")
    source.unlink()
    model = folder / "kpibot.yml"
    model.write_text(model_file())
    return f"duckdb:///{team}", model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--scale", type=float, default=0.3)
    args = ap.parse_args(argv)
    url, model = build(args.folder, args.scale)
    print(f"KPI_DATABASE_URL={url}\nKPI_MODEL={model}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
