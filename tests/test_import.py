"""`kpibot import`: every bad row is reported as FILE:ROW: column: problem and nothing is written;
good files load in one go and re-imports update rows instead of duplicating them."""

from __future__ import annotations

import uuid
from datetime import date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from storage import database
from storage.importer import NOTHING_IMPORTED, ImportFailed, ImportReport, import_file
from storage.schema import TABLES

SURVEY_HEADER = "response_id,customer_id,responded_at,survey,score,touchpoint,comment"
SURVEY_GOOD = "r1,C1,2025-03-01T10:00:00Z,nps,9,product,great"
TICKET_HEADER = "ticket_id,customer_id,opened_at,first_response_at,reopened,agent_replies,priority"
TICKET_GOOD = "t1,C1,2025-03-01 09:00:00,2025-03-01 09:45:00,no,2,high"


def write(tmp_path, name: str, *lines: str) -> str:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def count(url: str, table: str) -> int:
    with database.get_engine(url).connect() as conn:
        return conn.execute(select(func.count()).select_from(TABLES[table])).scalar()


def rows(url: str, table: str, order_by: str) -> list:
    t = TABLES[table]
    with database.get_engine(url).connect() as conn:
        return [r._asdict() for r in conn.execute(select(t).order_by(t.c[order_by]))]


def failure(url: str, table: str, path: str, **kw) -> ImportFailed:
    with pytest.raises(ImportFailed) as caught:
        import_file(database.get_engine(url), table, path, **kw)
    return caught.value


# ------------------------------------------------------------------------------- good files


def test_good_file_imports_with_types_converted(db_url, tmp_path):
    path = write(
        tmp_path,
        "tickets.csv",
        TICKET_HEADER,
        TICKET_GOOD,
        "t2,C2,2025-03-02T10:00:00+02:00,,YES,,",  # offset → UTC; empty optional → NULL
        "t3,,2025-03-03,2025-03-03T01:00:00.5Z,,0,low",  # empty reopened → its default (false)
    )
    report = import_file(database.get_engine(db_url), "tickets", path)
    assert isinstance(report, ImportReport)
    assert (report.rows, report.inserted, report.updated) == (3, 3, 0)
    assert str(report) == f"{path}: imported 3 rows into tickets (3 new, 0 updated)"
    got = rows(db_url, "tickets", "ticket_id")
    assert [r["ticket_id"] for r in got] == ["t1", "t2", "t3"]
    assert got[0]["opened_at"] == datetime(2025, 3, 1, 9, 0)
    assert got[1]["opened_at"] == datetime(2025, 3, 2, 8, 0)
    assert got[2]["first_response_at"] == datetime(2025, 3, 3, 1, 0, 0, 500000)
    assert [r["reopened"] for r in got] == [False, True, False]
    assert [r["escalated"] for r in got] == [False, False, False]  # column absent → default
    assert [r["agent_replies"] for r in got] == [2, None, 0]
    assert got[1]["customer_id"] == "C2" and got[2]["customer_id"] is None
    assert got[1]["priority"] is None


def test_reimport_updates_instead_of_duplicating(db_url, tmp_path):
    engine = database.get_engine(db_url)
    first = write(tmp_path, "a.csv", SURVEY_HEADER, SURVEY_GOOD, "r2,C2,2025-03-02,csat,4,support,")
    assert import_file(engine, "survey_responses", first).inserted == 2
    second = write(
        tmp_path,
        "b.csv",
        SURVEY_HEADER,
        "r1,C1,2025-03-01T10:00:00Z,nps,3,product,meh",
        "r3,C3,2025-03-04,ces,6,,",
    )
    report = import_file(engine, "survey_responses", second)
    assert (report.rows, report.inserted, report.updated) == (2, 1, 1)
    got = {r["response_id"]: r for r in rows(db_url, "survey_responses", "response_id")}
    assert len(got) == 3
    assert got["r1"]["score"] == 3 and got["r1"]["comment"] == "meh"
    assert got["r2"]["score"] == 4


def test_reimport_of_same_file_changes_nothing_but_values(db_url, tmp_path):
    engine = database.get_engine(db_url)
    path = write(tmp_path, "t.csv", TICKET_HEADER, TICKET_GOOD)
    import_file(engine, "tickets", path)
    write(tmp_path, "t.csv", TICKET_HEADER, TICKET_GOOD.replace(",2,high", ",5,urgent"))
    report = import_file(engine, "tickets", path)
    assert (report.inserted, report.updated) == (0, 1)
    assert count(db_url, "tickets") == 1
    (row,) = rows(db_url, "tickets", "ticket_id")
    assert (row["agent_replies"], row["priority"]) == (5, "urgent")


def test_partial_columns_on_update_keep_the_others(duck_url, tmp_path):
    engine = database.get_engine(duck_url)
    import_file(engine, "tickets", write(tmp_path, "a.csv", TICKET_HEADER, TICKET_GOOD))
    import_file(
        engine,
        "tickets",
        write(tmp_path, "b.csv", "ticket_id,opened_at,escalated", "t1,2025-03-01 09:00:00,true"),
    )
    (row,) = rows(duck_url, "tickets", "ticket_id")
    assert row["escalated"] is True and row["priority"] == "high" and row["agent_replies"] == 2


def test_key_only_table_reimport_replaces_matching_rows(db_url, tmp_path):
    """usage_events has no primary key: rows with the file's keys are replaced, once."""
    engine = database.get_engine(db_url)
    header = "customer_id,user_id,occurred_at,action,is_core,session_seconds"
    path = write(
        tmp_path,
        "u.csv",
        header,
        "C1,U1,2025-03-01T10:00:00Z,login,false,60",
        "C1,U1,2025-03-01T10:05:00Z,create_report,true,300.5",
    )
    assert import_file(engine, "usage_events", path).inserted == 2
    write(
        tmp_path,
        "u.csv",
        header,
        "C1,U1,2025-03-01T10:00:00Z,login,false,90",
        "C2,U9,2025-03-02,login,0,",
    )
    report = import_file(engine, "usage_events", path)
    assert (report.rows, report.inserted, report.updated) == (2, 1, 1)
    got = rows(db_url, "usage_events", "occurred_at")
    assert len(got) == 3
    assert got[0]["session_seconds"] == 90.0
    assert got[2]["session_seconds"] is None and got[2]["is_core"] is False


def test_key_with_nullable_column_matches_nulls(db_url, tmp_path):
    """costs' key includes the optional category: NULL = NULL for matching."""
    engine = database.get_engine(db_url)
    header = "customer_id,incurred_at,amount,category"
    path = write(tmp_path, "c.csv", header, "C1,2025-03-01,10.5,", "C1,2025-03-01,4,support")
    import_file(engine, "costs", path)
    write(tmp_path, "c.csv", header, "C1,2025-03-01,11,", "C1,2025-03-01,5,support")
    report = import_file(engine, "costs", path)
    assert (report.inserted, report.updated) == (0, 2)
    assert sorted(r["amount"] for r in rows(db_url, "costs", "amount")) == [5.0, 11.0]


def test_marketing_spend_dates(db_url, tmp_path):
    path = write(
        tmp_path,
        "m.csv",
        "spent_on,channel,amount",
        "2025-03-01,paid_search,120.5",
        "2025-03-02,events,0",
    )
    assert import_file(database.get_engine(db_url), "marketing_spend", path).rows == 2
    got = rows(db_url, "marketing_spend", "spent_on")
    assert got[0]["spent_on"] == date(2025, 3, 1) and got[1]["amount"] == 0.0


def test_header_only_file_imports_nothing(duck_url, tmp_path):
    report = import_file(
        database.get_engine(duck_url), "tickets", write(tmp_path, "t.csv", TICKET_HEADER)
    )
    assert report.rows == 0


def test_header_names_are_trimmed_and_case_insensitive(duck_url, tmp_path):
    path = write(tmp_path, "t.csv", " Ticket_ID , OPENED_AT", "t1,2025-01-01")
    assert import_file(database.get_engine(duck_url), "tickets", path).rows == 1


def test_blank_lines_and_multiline_values_keep_line_numbers(duck_url, tmp_path):
    path = write(
        tmp_path,
        "s.csv",
        SURVEY_HEADER,
        SURVEY_GOOD,
        "",
        'r2,C1,2025-03-01,nps,8,product,"two',
        'lines"',
        "r3,C1,2025-03-01,nps,12,product,",
    )
    exc = failure(duck_url, "survey_responses", path)
    assert str(exc) == f"{path}:6: score: 12 is outside the nps scale 0-10\n{NOTHING_IMPORTED}"


# --------------------------------------------------------------------------------- bad rows

BAD_ROWS = {
    "missing required value": (
        "survey_responses",
        SURVEY_HEADER,
        "r2,C1,2025-03-01,nps,,product,",
        "score: missing value (required)",
    ),
    "bad int": (
        "tickets",
        TICKET_HEADER,
        "t2,C1,2025-03-01,,no,two,low",
        "agent_replies: not a whole number: 'two'",
    ),
    "bad float": (
        "orders",
        "order_id,customer_id,ordered_at,amount",
        'o2,C1,2025-03-01,"12,50"',
        "amount: not a number: '12,50'",
    ),
    "bad bool": (
        "tickets",
        TICKET_HEADER,
        "t2,C1,2025-03-01,,maybe,1,low",
        "reopened: not a boolean (true/false, 1/0, yes/no): 'maybe'",
    ),
    "bad timestamp": (
        "tickets",
        TICKET_HEADER,
        "t2,C1,31/12/2024,,no,1,low",
        "opened_at: not an ISO 8601 date or date-time: '31/12/2024'",
    ),
    "bad date": (
        "marketing_spend",
        "spent_on,channel,amount",
        "2025-02-30,events,10",
        "spent_on: not an ISO 8601 date (YYYY-MM-DD): '2025-02-30'",
    ),
    "bad survey choice": (
        "survey_responses",
        SURVEY_HEADER,
        "r2,C1,2025-03-01,nsp,5,product,",
        "survey: 'nsp' is not one of nps, csat, ces, ppr",
    ),
    "score out of range": (
        "survey_responses",
        SURVEY_HEADER,
        "r2,C1,2025-03-01,csat,0,support,",
        "score: 0 is outside the csat scale 1-5",
    ),
}
GOOD_FIRST = {
    "survey_responses": SURVEY_GOOD,
    "tickets": TICKET_GOOD,
    "orders": "o1,C1,2025-03-01,10",
    "marketing_spend": "2025-03-01,events,10",
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_bad_row_is_reported_and_nothing_imported(db_url, tmp_path, case):
    table, header, bad, message = BAD_ROWS[case]
    path = write(tmp_path, f"{table}.csv", header, GOOD_FIRST[table], bad)
    exc = failure(db_url, table, path)
    assert exc.problems == [f"{path}:3: {message}"]
    assert str(exc) == f"{path}:3: {message}\n{NOTHING_IMPORTED}"
    assert count(db_url, table) == 0


def test_missing_header_column(db_url, tmp_path):
    path = write(tmp_path, "s.csv", "response_id,responded_at,survey", "r1,2025-03-01,nps")
    exc = failure(db_url, "survey_responses", path)
    assert exc.problems == [
        f"{path}:1: score: required column missing from the header "
        "(required: response_id, responded_at, survey, score)"
    ]
    assert count(db_url, "survey_responses") == 0


def test_unknown_columns_are_named(db_url, tmp_path):
    path = write(tmp_path, "s.csv", SURVEY_HEADER + ",mood,nps_score", SURVEY_GOOD + ",happy,9")
    exc = failure(db_url, "survey_responses", path)
    assert exc.problems[0].startswith(
        f"{path}:1: mood: unknown column (survey_responses has: response_id, "
    )
    assert exc.problems[1] == f"{path}:1: nps_score: unknown column"
    assert count(db_url, "survey_responses") == 0


def test_duplicate_header_column(duck_url, tmp_path):
    path = write(tmp_path, "s.csv", SURVEY_HEADER + ",score", SURVEY_GOOD + ",9")
    assert failure(duck_url, "survey_responses", path).problems == [
        f"{path}:1: score: column appears twice in the header"
    ]


def test_bad_row_in_a_later_chunk_leaves_table_empty(db_url, tmp_path):
    good = [f"t{i},C1,2025-03-01T09:00:00,,no,1,low" for i in range(1, 36)]
    path = write(
        tmp_path,
        "t.csv",
        TICKET_HEADER,
        *good,
        "t99,C1,2025-03-01T09:00:00,,no,1.5,low",
        "t100,C1,2025-03-01,,no,1,low",
    )
    exc = failure(db_url, "tickets", path, chunk_rows=10)
    assert exc.problems == [f"{path}:37: agent_replies: not a whole number: '1.5'"]
    assert count(db_url, "tickets") == 0
    # and the same file minus the bad line imports across chunks
    write(tmp_path, "t.csv", TICKET_HEADER, *good, "t100,C1,2025-03-01,,no,1,low")
    assert import_file(database.get_engine(db_url), "tickets", path, chunk_rows=10).rows == 36
    assert count(db_url, "tickets") == 36


def test_more_than_20_problems_are_summarised(duck_url, tmp_path):
    bad = [f"r{i},C1,2025-03-01,nps,{11 + i},product," for i in range(25)]
    path = write(tmp_path, "s.csv", SURVEY_HEADER, *bad)
    exc = failure(duck_url, "survey_responses", path, chunk_rows=7)
    assert exc.total == 25
    lines = str(exc).splitlines()
    assert len(lines) == 22
    assert lines[0] == f"{path}:2: score: 11 is outside the nps scale 0-10"
    assert lines[19] == f"{path}:21: score: 30 is outside the nps scale 0-10"
    assert lines[20] == "… and 5 more problems"
    assert lines[21] == NOTHING_IMPORTED


def test_problems_are_listed_in_file_order(duck_url, tmp_path):
    path = write(
        tmp_path,
        "t.csv",
        TICKET_HEADER,
        ",C1,bad-date,,perhaps,x,low",
        TICKET_GOOD,
        "t3,C1,2025-01-01,,no,-1.0,low",
    )
    exc = failure(duck_url, "tickets", path)
    assert exc.problems == [
        f"{path}:2: ticket_id: missing value (required)",
        f"{path}:2: opened_at: not an ISO 8601 date or date-time: 'bad-date'",
        f"{path}:2: reopened: not a boolean (true/false, 1/0, yes/no): 'perhaps'",
        f"{path}:2: agent_replies: not a whole number: 'x'",
    ]


def test_duplicate_keys_in_one_file(db_url, tmp_path):
    path = write(
        tmp_path, "t.csv", TICKET_HEADER, TICKET_GOOD, "t2,C1,2025-01-01,,no,1,low", TICKET_GOOD
    )
    exc = failure(db_url, "tickets", path)
    assert exc.problems == [f"{path}:4: ticket_id: same key as line 2 (t1)"]
    assert count(db_url, "tickets") == 0


def test_wrong_number_of_fields(duck_url, tmp_path):
    path = write(
        tmp_path, "t.csv", TICKET_HEADER, TICKET_GOOD + ",extra", "t2,C1,2025-01-01,,no,1,loww"
    )
    exc = failure(duck_url, "tickets", path)
    assert exc.problems == [f"{path}:2: expected 7 fields like the header, found 8"]


def test_unknown_table_lists_valid_ones(duck_url, tmp_path):
    path = write(tmp_path, "x.csv", "a", "1")
    exc = failure(duck_url, "ticket", path)
    assert str(exc) == "unknown table 'ticket'; valid tables: " + ", ".join(sorted(TABLES)) + "\n" + NOTHING_IMPORTED


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the file is empty; the first line must name the columns"),
        (b"ticket_id,opened_at\nt1,\xff\xfe2025\n", "not UTF-8 text"),
    ],
)
def test_unreadable_files(duck_url, tmp_path, content, expected):
    path = tmp_path / "t.csv"
    path.write_bytes(content)
    exc = failure(duck_url, "tickets", str(path))
    assert str(exc).startswith(f"{path}: {expected}")


def test_missing_file(duck_url, tmp_path):
    assert (
        str(failure(duck_url, "tickets", str(tmp_path / "nope.csv")))
        == f"{tmp_path / 'nope.csv'}: no such file\n{NOTHING_IMPORTED}"
    )


def test_semicolon_file_gets_a_hint(duck_url, tmp_path):
    path = write(tmp_path, "t.csv", "ticket_id;opened_at", "t1;2025-01-01")
    assert "the file must be comma-separated" in str(failure(duck_url, "tickets", path))


# ---------------------------------------------------------------------------------- Parquet


def test_parquet_import(db_url, tmp_path):
    path = tmp_path / "s.parquet"
    table = pa.table(
        {
            "response_id": ["p1", "p2", "p3"],
            "customer_id": ["C1", None, "C3"],
            "responded_at": pa.array(
                [datetime(2025, 3, 1, 10), datetime(2025, 3, 2, 12), datetime(2025, 3, 3)],
                pa.timestamp("us", tz="+02:00"),
            ),
            "survey": ["nps", "CSAT", "ces"],
            "score": pa.array([10, 5, 7], pa.int16()),
        }
    )
    pq.write_table(table, path)
    report = import_file(database.get_engine(db_url), "survey_responses", str(path))
    assert report.rows == 3
    got = rows(db_url, "survey_responses", "response_id")
    assert [r["score"] for r in got] == [10, 5, 7]
    assert got[0]["responded_at"] == datetime(2025, 3, 1, 10) and got[1]["survey"] == "csat"
    assert got[1]["customer_id"] is None


def test_parquet_bad_row_reports_row_number(duck_url, tmp_path):
    path = tmp_path / "t.pq"
    pq.write_table(
        pa.table(
            {"ticket_id": ["a", "b", None], "opened_at": ["2025-01-01", "later", "2025-01-02"]}
        ),
        path,
    )
    exc = failure(duck_url, "tickets", str(path))
    assert exc.problems == [
        f"{path}:2: opened_at: not an ISO 8601 date or date-time: 'later'",
        f"{path}:3: ticket_id: missing value (required)",
    ]
    assert count(duck_url, "tickets") == 0


def test_not_a_parquet_file(duck_url, tmp_path):
    path = tmp_path / "t.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    assert "not a readable Parquet file" in str(failure(duck_url, "tickets", str(path)))


# ------------------------------------------------------------------------- never crashes


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda s: s.encode("utf-8")))
)
def test_random_bytes_only_ever_fail_cleanly(duck_url, tmp_path, data):
    _import_anything(duck_url, tmp_path, "tickets", data)


_CELL = st.one_of(
    st.sampled_from(
        [
            "",
            "1",
            "-1",
            "1.0",
            "yes",
            "nan",
            "inf",
            "2025-01-01",
            "2025-13-01T25:00Z",
            "nps",
            '"',
            "\x00",
            "99999999999",
        ]
    ),
    st.text(max_size=12),
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    table=st.sampled_from(["survey_responses", "tickets", "marketing_spend", "usage_events"]),
    cells=st.lists(st.lists(_CELL, min_size=0, max_size=9), max_size=6),
)
def test_random_rows_under_a_valid_header_only_ever_fail_cleanly(duck_url, tmp_path, table, cells):
    header = ",".join(c.name for c in TABLES[table].columns)
    body = "\n".join(",".join(row) for row in cells)
    _import_anything(duck_url, tmp_path, table, (header + "\n" + body).encode("utf-8"))


def _import_anything(url: str, tmp_path, table: str, data: bytes) -> None:
    path = tmp_path / f"{uuid.uuid4().hex}.csv"
    path.write_bytes(data)
    before = count(url, table)
    try:
        import_file(database.get_engine(url), table, str(path))
    except ImportFailed as exc:
        assert str(exc)
        assert count(url, table) == before
