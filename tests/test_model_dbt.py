"""dbt semantic manifest → kpibot model document (metrics/model/dbt.py).

The fixture is the dbt project tests/data/dbt_shop (its committed target/semantic_manifest.json);
the expected document is written by hand from the project's YAML and the mapping in
MODEL_FORMAT.md. Error cases use small hand-made manifests.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from metrics.model.dbt import manifest_to_document, read_dbt

SHOP = Path(__file__).parent / "data" / "dbt_shop"
MANIFEST = SHOP / "target" / "semantic_manifest.json"

EXPECTED_SOURCES = {
    "accounts": {
        "relation": "analytics.accounts",
        "description": "The shop's customer accounts.",
        "columns": {
            "account": {"column": "id", "type": "text"},
            "created_at": {"column": "created_at", "type": "timestamp"},
            "accounts_created": {"expr": "id", "type": "text"},
        },
        "time": "created_at",
        "customer_key": "account",
    },
    "invoices": {
        "relation": "analytics.invoices",
        "description": "Invoices, amounts in cents.",
        "columns": {
            "invoice": {"column": "id", "type": "text"},
            "account": {"column": "account_id", "type": "text"},
            "issued_at": {"column": "issued_at", "type": "timestamp"},
            "invoice_amount": {"expr": "amount_cents / 100.0", "type": "number"},
            "invoices_issued": {"expr": "id", "type": "text"},
            "invoicing_accounts": {"expr": "account_id", "type": "text"},
            "invoice_amount_p50": {"expr": "amount_cents / 100.0", "type": "number"},
        },
        "time": "issued_at",
        "customer_key": "account",
        "sensitivity": {"invoice_amount": "money"},  # invoiced_amount is currency
    },
    # `survey_responses` is one of kpibot's own tables: the dbt one is kept apart
    "dbt_survey_responses": {
        "relation": "analytics.survey_export",
        "description": "The survey tool's export; NPS ratings 0-10 in `rating`.",
        "columns": {
            "response": {"column": "id", "type": "text"},
            "account": {"column": "account_id", "type": "text"},
            "submitted_at": {"column": "submitted_at", "type": "timestamp"},
            "responses": {"expr": "id", "type": "text"},
            "promoters": {"expr": "case when rating >= 9 then 1 else 0 end", "type": "number"},
            "detractors": {"expr": "case when (rating <= 6) then 1 else 0 end", "type": "number"},
            "average_rating": {"expr": "rating", "type": "number"},
        },
        "time": "submitted_at",
        "customer_key": "account",
    },
    "trials": {
        "relation": "analytics.trials",
        "description": "Free trials started.",
        "columns": {
            "trial": {"column": "id", "type": "text"},
            "account": {"column": "account_id", "type": "text"},
            "started_at": {"column": "started_at", "type": "timestamp"},
            "trials_started": {"expr": "id", "type": "text"},
        },
        "time": "started_at",
        "customer_key": "account",
    },
}

EXPECTED_DIMENSIONS = {
    "plan": {"source": "accounts", "column": "plan_name", "label": "Plan"},
    "vertical": {"source": "accounts", "column": "vertical", "label": "Vertical"},
    "country": {"source": "accounts", "column": "country", "label": "Country"},
    "status": {"source": "accounts", "column": "status", "label": "Status"},
    "invoice_status": {"source": "invoices", "column": "status", "label": "Invoice status"},
}


def _simple(label, source, agg, expr, time, **more):
    return {"type": "simple", "label": label, "source": source, "agg": agg, "expr": expr, "time": time, **more}


EXPECTED_METRICS = {
    "accounts_opened": _simple("Accounts opened", "accounts", "count", "accounts_created", "created_at",
                            description="Accounts opened in the period.", unit="count"),
    "invoiced_amount": _simple("Invoiced amount", "invoices", "sum", "invoice_amount", "issued_at",
                               description="Paid invoices, in money (the table keeps cents).",
                               filter="invoice_status = 'paid'", unit="currency", direction="higher",
                               synonyms=["billings", "invoiced revenue"]),
    "paid_invoices": _simple("Paid invoices", "invoices", "count", "invoices_issued", "issued_at",
                             filter="invoice_status = 'paid'", unit="count"),
    "early_invoicing": _simple("Invoicing up to 10 February", "invoices", "sum", "invoice_amount", "issued_at",
                               description="Every invoice issued on or before 10 February 2026 (a filter on "
                                           "metric_time).",
                               filter="date_trunc('day', issued_at) <= '2026-02-10'", unit="currency"),
    "invoices_count": _simple("Invoices", "invoices", "count", "invoices_issued", "issued_at", unit="count"),
    "survey_responses_count": _simple("Survey responses", "dbt_survey_responses", "count", "responses",
                                      "submitted_at", unit="count"),
    "survey_promoters": _simple("Promoters", "dbt_survey_responses", "sum", "promoters", "submitted_at"),
    "survey_detractors": _simple("Detractors", "dbt_survey_responses", "sum", "detractors", "submitted_at"),
    "average_rating": _simple("Average rating", "dbt_survey_responses", "avg", "average_rating",
                              "submitted_at", unit="score"),
    "trials_started_count": _simple("Trials started", "trials", "count", "trials_started", "started_at",
                                    unit="count"),
    "average_invoice": {"type": "ratio", "label": "Average paid invoice", "numerator": "invoiced_amount",
                        "denominator": "paid_invoices", "unit": "currency"},
    "promoter_share": {"type": "ratio", "label": "Share of promoters", "numerator": "survey_promoters",
                       "denominator": "survey_responses_count", "unit": "percent", "scale": 100},
    "void_invoice_share": {
        "type": "ratio", "label": "Share of void invoices",
        # a filtered input makes both parts inline measures: the metric's own parts (+ the filter)
        "numerator": {"source": "invoices", "agg": "count", "expr": "invoices_issued", "time": "issued_at",
                      "filter": "invoice_status = 'void'"},
        "denominator": {"source": "invoices", "agg": "count", "expr": "invoices_issued", "time": "issued_at"},
        "unit": "percent", "scale": 100, "direction": "lower",
    },
    "survey_nps": {"type": "derived", "label": "Survey NPS",
                   "description": "Promoters minus detractors, in percent of responses.",
                   # the inputs' aliases are replaced by the metric ids
                   "expr": "(survey_promoters - survey_detractors) * 100 / survey_responses_count",
                   "unit": "score", "direction": "higher", "synonyms": ["shop nps"]},
    "total_accounts": {"type": "cumulative", "label": "Accounts to date", "source": "accounts", "agg": "count",
                       "expr": "accounts_created", "start": "created_at", "unit": "count"},
    "trial_to_paid": {"type": "conversion", "label": "Trial to invoice",
                      "description": "Trials followed by an invoice within 14 days.",
                      "base": {"source": "trials", "time": "started_at"},
                      "conversion": {"source": "invoices", "time": "issued_at"},
                      "entity": "account", "window_days": 14, "direction": "higher",
                      "unit": "percent"},
}

# the project's constructs kpibot reports instead of computing differently from dbt
EXPECTED_UNSUPPORTED = {
    "median_invoice": "percentile",
    "pro_invoice_share": "account__plan",
    "invoiced_amount_growth": "offset_window",
    "invoiced_amount_30d": "window",
}


def test_the_shop_project_converts_to_the_hand_written_document():
    doc, errors = read_dbt(SHOP)
    assert doc["version"] == 1
    assert doc["sources"] == EXPECTED_SOURCES
    assert doc["dimensions"] == EXPECTED_DIMENSIONS
    assert doc["metrics"] == EXPECTED_METRICS
    assert len(errors) == len(EXPECTED_UNSUPPORTED)
    for error in errors:
        assert error.origin == str(MANIFEST)
        name = next(n for n in EXPECTED_UNSUPPORTED if f"metric `{n}`" in error.message)
        assert EXPECTED_UNSUPPORTED[name] in error.message
        assert "not supported" in error.message or "does not support" in error.message
        assert "(metrics[" in error.message  # where in the manifest


def test_read_dbt_takes_the_json_itself_too():
    assert read_dbt(MANIFEST) == read_dbt(SHOP)


def test_read_dbt_bad_paths_are_one_error(tmp_path):
    doc, errors = read_dbt(tmp_path)
    assert doc == {} and len(errors) == 1
    assert "dbt parse" in errors[0].message and errors[0].origin.endswith("semantic_manifest.json")
    bad = tmp_path / "semantic_manifest.json"
    bad.write_text('{"semantic_models": [\n  oops', encoding="utf-8")
    doc, errors = read_dbt(bad)
    assert doc == {} and len(errors) == 1
    assert errors[0].line == 2 and "not valid JSON" in errors[0].message
    doc, errors = read_dbt(tmp_path / "nowhere.json")
    assert doc == {} and "no dbt semantic manifest" in errors[0].message


# -- small manifests ---------------------------------------------------------------------------


def _model(name="orders_sm", measures=None, dimensions=None, entities=None, alias="fct_orders"):
    return {
        "name": name,
        "node_relation": {"alias": alias, "schema_name": "mart", "database": "wh",
                          "relation_name": f'"wh"."mart"."{alias}"'},
        "defaults": {"agg_time_dimension": "ordered_at"},
        "entities": entities if entities is not None else [
            {"name": "order", "type": "primary", "expr": "order_id"},
            {"name": "customer", "type": "foreign", "expr": "customer_id"},
        ],
        "dimensions": dimensions if dimensions is not None else [
            {"name": "ordered_at", "type": "time", "expr": "order_date",
             "type_params": {"time_granularity": "day"}},
            {"name": "channel", "type": "categorical", "expr": "lower(channel_code)"},
        ],
        "measures": measures if measures is not None else [
            {"name": "order_total", "agg": "sum", "expr": "total"},
            {"name": "order_count", "agg": "count", "expr": "order_id"},
        ],
    }


def _simple_metric(name, measure, **more):
    return {"name": name, "type": "simple", "type_params": {"measure": {"name": measure}}, **more}


def _convert(models, metrics):
    return manifest_to_document({"semantic_models": models, "metrics": metrics}, "wh/semantic_manifest.json")


def _messages(errors):
    return [e.message for e in errors]


def test_a_small_model_maps_relation_expressions_and_keys():
    doc, errors = _convert([_model()], [_simple_metric("orders_total", "order_total")])
    assert errors == []
    assert doc["sources"]["orders_sm"] == {
        "relation": "mart.fct_orders",  # no database: it answers over whichever one kpibot reads
        "columns": {"order": {"column": "order_id", "type": "text"}, "customer": {"column": "customer_id", "type": "text"},
                    "ordered_at": {"column": "order_date", "type": "timestamp"},
                    "order_total": {"expr": "total", "type": "number"},
                    "order_count": {"expr": "order_id", "type": "text"}},
        "time": "ordered_at",
        "customer_key": "customer",
    }
    assert doc["dimensions"] == {"channel": {"source": "orders_sm", "expr": "lower(channel_code)",
                                             "label": "Channel"}}
    assert doc["metrics"]["orders_total"] == _simple("Orders total", "orders_sm", "sum", "order_total",
                                                     "ordered_at")


def test_unknown_measure_is_an_error_naming_the_metric():
    doc, errors = _convert([_model()], [_simple_metric("ghost", "no_such_measure"),
                                        _simple_metric("fine", "order_count")])
    assert _messages(errors) == ["metric `ghost` (metrics[0]): unknown measure `no_such_measure`"]
    assert errors[0].origin == "wh/semantic_manifest.json" and errors[0].line is None
    assert list(doc["metrics"]) == ["fine"]  # the rest still loads


def test_unsupported_metric_type_is_an_error_naming_the_metric():
    doc, errors = _convert([_model()], [{"name": "odd", "type": "fancy", "type_params": {}}])
    assert len(errors) == 1
    assert errors[0].message.startswith("metric `odd` (metrics[0]): type `fancy` is not supported")
    assert doc["metrics"] == {}


@pytest.mark.parametrize("manifest", [None, [], "text", {"semantic_models": "x"}, {"metrics": 3}, {}])
def test_a_malformed_manifest_is_one_error(manifest):
    doc, errors = manifest_to_document(manifest, "m.json")  # type: ignore[arg-type]
    assert doc == {"version": 1}
    assert len(errors) == 1 and "not a dbt semantic manifest" in errors[0].message


def test_malformed_objects_are_errors_naming_them_and_the_rest_loads():
    broken_model = _model(name="broken")
    broken_model["entities"] = [{"type": "primary"}]  # an entity without a name
    no_relation = _model(name="norel", measures=[{"name": "m2", "agg": "sum", "expr": "x"}])
    del no_relation["node_relation"]
    metrics = [
        "not a mapping",
        {"type": "simple"},  # no name
        {"name": "bad_params", "type": "ratio", "type_params": {"numerator": 5, "denominator": []}},
        _simple_metric("ok", "order_count"),
        _simple_metric("on_norel", "m2"),
    ]
    doc, errors = _convert([_model(), broken_model, no_relation, 7], metrics)
    messages = _messages(errors)
    assert "semantic model `broken` (semantic_models[1]): is malformed (missing `name`)" in messages
    assert any(m.startswith("semantic model `norel` (semantic_models[2]): has no node_relation") for m in messages)
    assert "a semantic model (semantic_models[3]): has no valid name" in messages
    assert "a metric (metrics[0]): has no name" in messages
    assert "a metric (metrics[1]): has no name" in messages
    assert any(m.startswith("metric `bad_params` (metrics[2]): ") for m in messages)
    assert any(m.startswith("metric `on_norel` (metrics[4]): ") and "norel" in m for m in messages)
    assert list(doc["sources"]) == ["orders_sm"]
    assert list(doc["metrics"]) == ["ok"]


def test_metrics_on_left_out_metrics_are_left_out_too():
    metrics = [
        _simple_metric("p50", "order_p50"),
        {"name": "share", "type": "ratio", "type_params": {"numerator": {"name": "p50"},
                                                          "denominator": {"name": "orders"}}},
        {"name": "diff", "type": "derived",
         "type_params": {"expr": "orders - share", "metrics": [{"name": "orders"}, {"name": "share"}]}},
        _simple_metric("orders", "order_count"),
    ]
    measures = [{"name": "order_count", "agg": "count", "expr": "1"},
                {"name": "order_p50", "agg": "median", "expr": "total"}]
    doc, errors = _convert([_model(measures=measures)], metrics)
    messages = _messages(errors)
    assert messages[0].startswith("metric `p50` (metrics[0]): measure `order_p50` aggregates with `median`")
    assert messages[1] == "metric `share` (metrics[1]): its numerator `p50` could not be converted"
    assert messages[2] == "metric `diff` (metrics[2]): its input `share` could not be converted"
    assert list(doc["metrics"]) == ["orders"]


def test_a_cycle_among_derived_metrics_is_reported():
    metrics = [
        {"name": "a_m", "type": "derived", "type_params": {"expr": "b_m + 1", "metrics": [{"name": "b_m"}]}},
        {"name": "b_m", "type": "derived", "type_params": {"expr": "a_m * 2", "metrics": [{"name": "a_m"}]}},
    ]
    doc, errors = _convert([_model()], metrics)
    assert doc["metrics"] == {}
    assert any("cycle among metrics: a_m -> b_m -> a_m" in m for m in _messages(errors))


def test_filters_translate_when_they_read_the_models_own_columns():
    filt = {"where_filters": [
        {"where_sql_template": "{{ Dimension('order__channel') }} in ('web', 'app')"},
        {"where_sql_template": "{{ TimeDimension('order__ordered_at', 'day') }} >= '2026-01-01'"},
        {"where_sql_template": "{{ Entity('customer') }} is not null"},
    ]}
    measure_filter = {"where_filters": [{"where_sql_template": "{{ Dimension( \"customer__channel\" ) }} <> 'x'"}]}
    metrics = [{"name": "web_orders", "type": "simple", "filter": filt,
                "type_params": {"measure": {"name": "order_count", "filter": measure_filter}}}]
    doc, errors = _convert([_model()], metrics)
    assert errors == []
    assert doc["metrics"]["web_orders"]["filter"] == (
        "(channel <> 'x') and (channel in ('web', 'app')) and (date_trunc('day', ordered_at) >= '2026-01-01') "
        "and (customer is not null)")


def test_a_model_level_primary_entity_qualifies_its_dimensions():
    sm = _model(entities=[{"name": "customer", "type": "foreign", "expr": "customer_id"}])
    sm["primary_entity"] = "sale"
    other = _model(name="b_sm", alias="b", entities=[{"name": "b", "type": "primary"}],
                   measures=[{"name": "b_count", "agg": "count", "expr": "1"}])
    filt = {"where_filters": [{"where_sql_template": "{{ Dimension('sale__channel') }} = 'web'"}]}
    doc, errors = _convert([sm, other], [_simple_metric("web", "order_count", filter=filt)])
    assert errors == []
    assert doc["metrics"]["web"]["filter"] == "sale__channel = 'web'"  # both models have `channel`
    assert set(doc["dimensions"]) == {"sale__channel", "b__channel"}


def test_metric_time_in_a_filter_is_the_metrics_time_column():
    filt = {"where_filters": [{"where_sql_template": "{{ TimeDimension('metric_time', 'day') }} <= '2026-03-31'"}]}
    metrics = [_simple_metric("early", "order_count", filter=filt),
               {"name": "running", "type": "cumulative", "filter": filt,
                "type_params": {"measure": {"name": "order_total"}}}]
    doc, errors = _convert([_model()], metrics)
    assert errors == []
    assert doc["metrics"]["early"]["filter"] == "date_trunc('day', ordered_at) <= '2026-03-31'"
    assert doc["metrics"]["running"]["filter"] == "date_trunc('day', ordered_at) <= '2026-03-31'"


@pytest.mark.parametrize("template, why", [
    ("{{ Dimension('customer__region') }} = 'EU'", "filters through joins"),  # another model's column
    ("{{ Dimension('order__channel').grain('month') }} = 'x'", "not supported yet"),
    ("{{ TimeDimension('order__ordered_at', 'month') }} = '2026-01-01'", "day-grain"),
    ("{{ Metric('orders_total', group_by=['customer']) }} > 3", "not supported yet"),
    ("{% if true %}1=1{% endif %}", "not supported yet"),
])
def test_filters_that_do_not_translate_are_errors(template, why):
    metrics = [_simple_metric("f_m", "order_count", filter={"where_filters": [{"where_sql_template": template}]})]
    doc, errors = _convert([_model()], metrics)
    assert doc["metrics"] == {}
    assert len(errors) == 1 and errors[0].message.startswith("metric `f_m` (metrics[0]): ")
    assert why in errors[0].message


def test_cumulative_with_a_window_or_grain_to_date_is_unsupported_and_running_totals_work():
    metrics = [
        {"name": "running", "type": "cumulative", "type_params": {"measure": {"name": "order_total"}},
         "filter": {"where_filters": [{"where_sql_template": "{{ Dimension('order__channel') }} = 'web'"}]}},
        {"name": "mtd", "type": "cumulative",
         "type_params": {"measure": {"name": "order_total"}, "grain_to_date": "month"}},
        {"name": "trailing", "type": "cumulative",
         "type_params": {"measure": {"name": "order_total"},
                         "cumulative_type_params": {"window": {"count": 7, "granularity": "day"}}}},
    ]
    doc, errors = _convert([_model()], metrics)
    assert doc["metrics"] == {"running": {"type": "cumulative", "label": "Running", "source": "orders_sm",
                                          "agg": "sum", "expr": "order_total", "start": "ordered_at",
                                          "filter": "channel = 'web'"}}
    assert _messages(errors) == [
        "metric `mtd` (metrics[1]): cumulative with a grain_to_date (month) is not supported yet; "
        "only running totals (no window) are",
        "metric `trailing` (metrics[2]): cumulative with a window (7 day) is not supported yet; "
        "only running totals (no window) are",
    ]


def _conversion(name, **params):
    base = {"base_measure": {"name": "signups"}, "conversion_measure": {"name": "order_count"},
            "entity": "customer", "calculation": "conversion_rate", "window": {"count": 2, "granularity": "week"}}
    return {"name": name, "type": "conversion", "type_params": {"conversion_type_params": {**base, **params}}}


def test_conversion_windows_in_days_or_weeks_and_the_rest_unsupported():
    signups = _model(name="signups_sm", alias="signups", entities=[{"name": "customer", "type": "primary"}],
                     dimensions=[{"name": "signed_up", "type": "time"}],
                     measures=[{"name": "signups", "agg": "count", "expr": "1", "agg_time_dimension": "signed_up"}])
    metrics = [
        _conversion("two_weeks"),
        _conversion("monthly", window={"count": 1, "granularity": "month"}),
        _conversion("counted", calculation="conversions"),
        _conversion("constant", constant_properties=[{"base_property": "x", "conversion_property": "x"}]),
        _conversion("by_order", entity="order"),
    ]
    doc, errors = _convert([_model(), signups], metrics)
    assert doc["metrics"] == {"two_weeks": {
        "type": "conversion", "label": "Two weeks",
        "base": {"source": "signups_sm", "time": "signed_up"},
        "conversion": {"source": "orders_sm", "time": "ordered_at"},
        "entity": "customer", "window_days": 14, "unit": "percent"}}
    messages = _messages(errors)
    assert messages[0] == "metric `monthly` (metrics[1]): a window of `1 month` is not supported yet (days or weeks)"
    assert messages[1].startswith("metric `counted` (metrics[2]): calculation `conversions`")
    assert messages[2] == "metric `constant` (metrics[3]): constant_properties are not supported yet"
    assert messages[3] == "metric `by_order` (metrics[4]): entity `order` is not an entity of semantic model `signups_sm`"


def test_derived_offsets_and_input_filters_are_unsupported():
    metrics = [
        _simple_metric("orders", "order_count"),
        {"name": "wow", "type": "derived", "type_params": {
            "expr": "orders - prev", "metrics": [{"name": "orders"},
                                                 {"name": "orders", "alias": "prev", "offset_to_grain": "week"}]}},
        {"name": "filtered", "type": "derived", "type_params": {
            "expr": "orders * 2", "metrics": [{"name": "orders", "filter": {"where_filters": [
                {"where_sql_template": "{{ Dimension('order__channel') }} = 'web'"}]}}]}},
        {"name": "unknown_input", "type": "derived", "type_params": {"expr": "nope + 1", "metrics": [{"name": "nope"}]}},
    ]
    doc, errors = _convert([_model()], metrics)
    assert list(doc["metrics"]) == ["orders"]
    assert _messages(errors) == [
        "metric `wow` (metrics[1]): offset_to_grain on input `orders` is not supported yet",
        "metric `filtered` (metrics[2]): a filter on input `orders` of a derived metric is not supported yet",
        "metric `unknown_input` (metrics[3]): its input `nope` is not a metric of this project",
    ]


def test_derived_aliases_do_not_touch_string_literals():
    metrics = [_simple_metric("orders", "order_count"),
               {"name": "d_m", "type": "derived", "type_params": {
                   "expr": "case when o > 0 then o else 0 end", "metrics": [{"name": "orders", "alias": "o"}]}}]
    doc, errors = _convert([_model()], metrics)
    assert errors == []
    assert doc["metrics"]["d_m"]["expr"] == "case when orders > 0 then orders else 0 end"


def test_ratio_of_a_ratio_is_unsupported():
    metrics = [_simple_metric("orders", "order_count"), _simple_metric("total", "order_total"),
               {"name": "avg_order", "type": "ratio", "type_params": {"numerator": {"name": "total"},
                                                              "denominator": {"name": "orders"}}},
               {"name": "avg_order_share", "type": "ratio", "type_params": {"numerator": {"name": "avg_order"},
                                                                    "denominator": {"name": "orders"}}}]
    doc, errors = _convert([_model()], metrics)
    assert "avg_order" in doc["metrics"] and "avg_order_share" not in doc["metrics"]
    assert _messages(errors) == ["metric `avg_order_share` (metrics[3]): its numerator `avg_order` is a ratio metric; "
                                 "kpibot's ratios are of simple metrics"]


def test_semi_additive_measures_are_unsupported_and_timespine_joins_ignored():
    measures = [{"name": "balance", "agg": "sum", "expr": "bal",
                 "non_additive_dimension": {"name": "ordered_at", "window_choice": "max"}},
                {"name": "order_count", "agg": "count", "expr": "1"}]
    metrics = [_simple_metric("balance_m", "balance"),
               {"name": "filled", "type": "simple",
                "type_params": {"measure": {"name": "order_count", "join_to_timespine": True, "fill_nulls_with": 0}}}]
    doc, errors = _convert([_model(measures=measures)], metrics)
    assert list(doc["metrics"]) == ["filled"]  # a period without rows stays "no data", not 0
    assert len(errors) == 1 and "non_additive_dimension" in errors[0].message and "balance_m" in errors[0].message


def test_metrics_named_like_built_in_kpis_get_a_dbt_prefix_everywhere():
    metrics = [_simple_metric("revenue", "order_total", label="Revenue (dbt)"),
               _simple_metric("orders", "order_count"),
               {"name": "aov_m", "type": "ratio", "type_params": {"numerator": {"name": "revenue"},
                                                                "denominator": {"name": "orders"}}},
               {"name": "double", "type": "derived",
                "type_params": {"expr": "revenue * 2", "metrics": [{"name": "revenue"}]}}]
    doc, errors = _convert([_model()], metrics)
    assert errors == []
    assert list(doc["metrics"]) == ["dbt_revenue", "orders", "aov_m", "double"]
    assert doc["metrics"]["dbt_revenue"]["label"] == "Revenue (dbt)"
    assert doc["metrics"]["aov_m"] == {"type": "ratio", "label": "Aov m", "numerator": "dbt_revenue",
                                       "denominator": "orders"}
    assert doc["metrics"]["double"]["expr"] == "dbt_revenue * 2"


def test_meta_sensitivity_on_entities_and_measures():
    entities = [{"name": "order", "type": "primary", "expr": "order_id"},
                {"name": "email", "type": "unique", "config": {"meta": {"sensitivity": "per_customer"}}}]
    measures = [{"name": "order_total", "agg": "sum", "expr": "total", "meta": {"sensitivity": "money"}}]
    doc, errors = _convert([_model(entities=entities, measures=measures)], [])
    assert errors == []
    assert doc["sources"]["orders_sm"]["sensitivity"] == {"email": "per_customer", "order_total": "money"}


def test_metrics_on_a_coarse_time_dimension_are_unsupported():
    monthly = _model(dimensions=[{"name": "ordered_at", "type": "time", "type_params": {"time_granularity": "month"}}])
    doc, errors = _convert([monthly], [_simple_metric("orders", "order_count")])
    assert doc["metrics"] == {}
    assert _messages(errors) == ["metric `orders` (metrics[0]): time dimension `ordered_at` has month granularity; "
                                 "kpibot counts periods down to days, so only day (or finer) time dimensions "
                                 "are supported yet"]


def test_dimension_names_shared_by_two_models_are_qualified_by_entity():
    other = _model(name="refunds_sm", alias="refunds",
                   entities=[{"name": "refund", "type": "primary"}],
                   dimensions=[{"name": "ordered_at", "type": "time"}, {"name": "channel", "type": "categorical"}],
                   measures=[{"name": "refund_count", "agg": "count", "expr": "1"}])
    metrics = [_simple_metric("web_refunds", "refund_count", filter={"where_filters": [
        {"where_sql_template": "{{ Dimension('refund__channel') }} = 'web'"}]})]
    doc, errors = _convert([_model(), other], metrics)
    assert errors == []
    assert set(doc["dimensions"]) == {"order__channel", "refund__channel"}
    assert doc["dimensions"]["refund__channel"] == {"source": "refunds_sm", "column": "channel", "label": "Channel"}
    assert doc["metrics"]["web_refunds"]["filter"] == "refund__channel = 'web'"


def test_meta_gives_unit_direction_synonyms_and_money_is_sensitive():
    metrics = [_simple_metric("gmv", "order_total", label="GMV", description="Gross.",
                              config={"meta": {"unit": "currency", "direction": "higher", "synonyms": ["sales"],
                                               "bands": [{"label": "ok", "low": 0}], "owner": "finance"}})]
    doc, errors = _convert([_model()], metrics)
    assert errors == []
    assert doc["metrics"]["gmv"] == _simple("GMV", "orders_sm", "sum", "order_total", "ordered_at",
                                            description="Gross.", unit="currency", direction="higher",
                                            synonyms=["sales"], bands=[{"label": "ok", "low": 0}])
    assert doc["sources"]["orders_sm"]["sensitivity"] == {"order_total": "money"}


def test_the_converter_never_mutates_the_manifest():
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    before = copy.deepcopy(manifest)
    manifest_to_document(manifest, "x")
    assert manifest == before


def _dbt() -> str | None:
    """dbt on the PATH (dbt-core + dbt-duckdb in a venv of their own: not kpibot dependencies)."""
    return shutil.which("dbt")


@pytest.mark.skipif(_dbt() is None, reason="dbt is not on the PATH (it is not a kpibot dependency)")
def test_the_committed_manifest_is_what_dbt_parse_writes(tmp_path, monkeypatch):
    """The fixture JSON is in step with the project's YAML (runs only where dbt is installed)."""
    project = tmp_path / "dbt_shop"
    shutil.copytree(SHOP, project, ignore=shutil.ignore_patterns("target", "logs", ".user.yml"))
    monkeypatch.setenv("DBT_SHOP_DUCKDB", str(tmp_path / "shop.duckdb"))
    monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    done = subprocess.run([str(_dbt()), "parse", "--profiles-dir", str(project), "--project-dir", str(project),
                           "--log-path", str(tmp_path / "logs")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:]
    fresh, fresh_errors = read_dbt(project)
    committed, committed_errors = read_dbt(SHOP)
    assert fresh == committed
    # dbt does not keep the metrics' order from one parse to the next: compare without the index
    def unplaced(errors):
        return sorted(re.sub(r" \(metrics\[\d+\]\)", "", e.message) for e in errors)

    assert unplaced(fresh_errors) == unplaced(committed_errors)


def _paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*path, i))


def _replaced(manifest, path, value):
    out = copy.deepcopy(manifest)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    if value is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return out


_DELETE = object()


def test_any_one_damaged_field_gives_errors_never_a_crash():
    """Every field of the shop's manifest deleted or replaced by a value of the wrong shape:
    the conversion returns a document and errors, and the loader accepts what it returns."""
    from metrics.model.load import load_model

    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    paths = [p for p in _paths(manifest) if p and p[0] in ("semantic_models", "metrics")]
    checked = 0
    for i, path in enumerate(paths):
        for value in (_DELETE, None, 7, "x", [], {}):
            if value is _DELETE and isinstance(path[-1], int):
                continue
            doc, errors = manifest_to_document(_replaced(manifest, path, value), "m.json")
            assert isinstance(doc, dict) and doc.get("version") == 1
            assert all(e.origin == "m.json" and isinstance(e.message, str) for e in errors)
            if i % 97 == 0:  # the loader too, on a sample (it compiles every KPI)
                load_model([("m.json", doc)])
            checked += 1
    assert checked > 1000
