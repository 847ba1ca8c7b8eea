"""The canonical data model every KPI reads.

Columns with ``nullable=False`` are the required ones (the importer checks them).
Times are naive UTC timestamps; ``marketing_spend.spent_on`` is a calendar date.
Money columns are :data:`MONEY`, exact to the cent (see there).
``info["key"]`` on a table names the columns that identify a row, so that a re-import
updates instead of duplicating; ``info["choices"]`` on a column lists its allowed values;
``info["sensitivity"]`` on a column (money, per_customer) restricts where anything reading it
may be shown (storage/sensitivity.py, bot/policy.py).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    TypeDecorator,
    false,
    true,
)

from storage.sensitivity import check_declarations

metadata = MetaData()

SURVEYS = ("nps", "csat", "ces", "ppr")
#: Inclusive score range per survey kind (NPS 0-10, CSAT 1-5, CES 1-7, post-purchase 1-5).
SURVEY_SCALES: dict[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7), "ppr": (1, 5)}

#: Customer attributes that every customer-linked KPI can be broken down and filtered by.
CUSTOMER_DIMENSIONS = ("industry", "size_band", "region", "plan", "acquisition_channel")


class Money(TypeDecorator):
    """Money: ``DECIMAL(18, 2)``, exact to the cent on DuckDB and PostgreSQL, so sums in SQL
    are exact (a 4-byte FLOAT turned 1234567.89 into 1234567.875). SQLite has no decimal type:
    there the column holds 8-byte doubles, each the nearest to its cent value, and a total
    stays within a small fraction of a cent of exact (answers show cents). Values are read back
    as float, on every driver: the KPI arithmetic after the SQL is ratios and rounding."""

    impl = Numeric(18, 2, asdecimal=False)
    cache_ok = True

    def process_result_value(self, value, dialect):
        return None if value is None else float(value)


MONEY = Money()

#: Column sensitivities (storage.sensitivity): whatever reads such a column inherits its restriction.
SENSITIVE_MONEY = {"sensitivity": "money"}  # amounts of money: revenue, MRR, costs, spend, pipeline
PER_CUSTOMER = {"sensitivity": "per_customer"}  # who a customer is: rows per customer


def is_money(sql_type) -> bool:
    """A money column."""
    return isinstance(sql_type, Money)


def _ts(name: str, required: bool = False, after: str | None = None, planned: bool = False) -> Column:
    """A timestamp column. ``after``: the column of the same row it cannot precede (a churn
    before the sign-up is a mistake); ``planned``: it may lie in the future (a contract's
    agreed end), where an event cannot. The importer enforces both."""
    info: dict = {"planned": planned}
    if after:
        info["after"] = after
    return Column(name, DateTime(), nullable=not required, info=info)


customers = Table(
    "customers",
    metadata,
    Column("customer_id", String, primary_key=True, info=PER_CUSTOMER),
    Column("name", String, info=PER_CUSTOMER),
    _ts("signed_up_at", True),
    _ts("churned_at", after="signed_up_at", planned=True),
    Column("industry", String),
    Column("size_band", String),
    Column("region", String),
    Column("plan", String),
    Column("acquisition_channel", String),
    Column("is_paying", Boolean, nullable=False, server_default=true(), default=True),
    info={"key": ("customer_id",)},
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("subscription_id", String, primary_key=True),
    Column("customer_id", String, nullable=False),
    _ts("started_at", True),
    _ts("ended_at", after="started_at", planned=True),
    Column("mrr", MONEY, nullable=False, info=SENSITIVE_MONEY),
    Column("seats", Integer),
    Column("product", String),
    info={"key": ("subscription_id",)},
)

orders = Table(
    "orders",
    metadata,
    Column("order_id", String, primary_key=True),
    Column("customer_id", String, nullable=False),
    _ts("ordered_at", True),
    Column("amount", MONEY, nullable=False, info=SENSITIVE_MONEY),
    Column("product", String),
    Column("is_recurring", Boolean, nullable=False, server_default=false(), default=False),
    info={"key": ("order_id",)},
)

costs = Table(
    "costs",
    metadata,
    Column("customer_id", String, nullable=False),
    _ts("incurred_at", True),
    Column("amount", MONEY, nullable=False, info=SENSITIVE_MONEY),
    Column("category", String),
    info={"key": ("customer_id", "incurred_at", "category")},
)

survey_responses = Table(
    "survey_responses",
    metadata,
    Column("response_id", String, primary_key=True),
    Column("customer_id", String),
    _ts("responded_at", True),
    Column("survey", String, nullable=False, info={"choices": SURVEYS}),
    Column("score", Integer, nullable=False),
    Column("touchpoint", String),
    Column("comment", String),
    info={"key": ("response_id",)},
)

tickets = Table(
    "tickets",
    metadata,
    Column("ticket_id", String, primary_key=True),
    Column("customer_id", String),
    _ts("opened_at", True),
    _ts("first_response_at", after="opened_at"),
    _ts("resolved_at", after="opened_at"),
    Column("reopened", Boolean, nullable=False, server_default=false(), default=False),
    Column("escalated", Boolean, nullable=False, server_default=false(), default=False),
    Column("agent_replies", Integer),
    Column("category", String),
    Column("priority", String),
    Column("channel", String),
    info={"key": ("ticket_id",)},
)

leads = Table(
    "leads",
    metadata,
    Column("lead_id", String, primary_key=True),
    _ts("created_at", True),
    Column("source", String, nullable=False),
    _ts("mql_at", after="created_at"),
    _ts("sql_at", after="created_at"),
    _ts("converted_at", after="created_at"),
    Column("customer_id", String),
    Column("potential_value", MONEY, info=SENSITIVE_MONEY),
    info={"key": ("lead_id",)},
)

marketing_spend = Table(
    "marketing_spend",
    metadata,
    Column("spent_on", Date, nullable=False),
    Column("channel", String, nullable=False),
    Column("amount", MONEY, nullable=False, info=SENSITIVE_MONEY),
    info={"key": ("spent_on", "channel")},
)

usage_events = Table(
    "usage_events",
    metadata,
    Column("customer_id", String, nullable=False),
    Column("user_id", String, nullable=False),
    _ts("occurred_at", True),
    Column("action", String, nullable=False),
    Column("is_core", Boolean, nullable=False, server_default=false(), default=False),
    Column("session_seconds", Float),
    info={"key": ("customer_id", "user_id", "occurred_at", "action")},
)

incidents = Table(
    "incidents",
    metadata,
    Column("incident_id", String, primary_key=True),
    _ts("started_at", True),
    _ts("ended_at", after="started_at"),
    Column("severity", String),
    Column("kind", String),
    info={"key": ("incident_id",)},
)

defects = Table(
    "defects",
    metadata,
    Column("defect_id", String, primary_key=True),
    _ts("opened_at", True),
    _ts("resolved_at", after="opened_at"),
    Column("severity", String),
    info={"key": ("defect_id",)},
)

opportunities = Table(
    "opportunities",
    metadata,
    Column("opportunity_id", String, primary_key=True),
    Column("customer_id", String, nullable=False),
    _ts("created_at", True),
    Column("kind", String),
    Column("product", String),
    Column("amount", MONEY, info=SENSITIVE_MONEY),
    _ts("won_at", after="created_at"),
    _ts("lost_at", after="created_at"),
    info={"key": ("opportunity_id",)},
)

TABLES: dict[str, Table] = {t.name: t for t in metadata.sorted_tables}
check_declarations(TABLES.values())

#: Secondary indexes for row-store databases (PostgreSQL, SQLite). DuckDB scans with
#: zone maps and its ART indexes only slow bulk loads, so they are not created there.
ROW_STORE_INDEXES = [
    Index("ix_customers_signed_up_at", customers.c.signed_up_at),
    Index("ix_subscriptions_customer", subscriptions.c.customer_id),
    Index("ix_orders_ordered_at", orders.c.ordered_at),
    Index("ix_costs_incurred_at", costs.c.incurred_at),
    Index("ix_survey_responses_responded_at", survey_responses.c.responded_at),
    Index("ix_tickets_opened_at", tickets.c.opened_at),
    Index("ix_leads_created_at", leads.c.created_at),
    Index("ix_usage_events_occurred_at", usage_events.c.occurred_at),
    Index("ix_opportunities_created_at", opportunities.c.created_at),
]
for _ix in ROW_STORE_INDEXES:
    _ix.table.indexes.discard(_ix)  # type: ignore[union-attr]  # (made on a column: has a table) database.create_tables creates them for row stores only
