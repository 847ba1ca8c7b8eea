"""The `kpibot` command: a thin terminal front end over the same query path as Slack.

Imports are lazy: `kpibot --help` loads only argparse, and each command loads what it uses
(matplotlib only to draw a chart; pandas and SciPy only for the few KPIs and commands that
need them), so a terminal answer does not wait for libraries it never touches.
tests/test_cli_startup.py holds the import set; benchmarks/startup.py times it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from datetime import date, timedelta
from pathlib import Path

EXIT_BAD_QUESTION = 2
EXIT_DATABASE = 3


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-23") from None


def _answer(text: str, as_of: date | None, url: str | None, draw: bool = False):
    """(answer, None) or (None, (message, exit code)); never a traceback. ``draw``: a chart
    will be wanted (drawn while the answer is explained)."""
    from metrics.api import answer
    from metrics.errors import QueryError
    from storage import database

    try:
        return answer(text, as_of=as_of, url=url, draw=draw), None
    except QueryError as exc:
        return None, (str(exc), EXIT_BAD_QUESTION)
    except database.DatabaseError as exc:
        return None, (str(exc), EXIT_DATABASE)
    except Exception:  # noqa: BLE001 - one line with an id; the traceback goes to the log
        from bot.logging import event, get_logger, new_error_id

        error_id = new_error_id()
        event(get_logger("kpibot.cli"), "internal_error", level=40, exc_info=True, error_id=error_id)
        return None, (f"Sorry, something went wrong (error id {error_id}; details in the log).", 1)


def _text(found) -> str:
    from metrics import render, reports
    from metrics.result import Result

    return render.text(found) if isinstance(found, Result) else reports.render_text(found)


def _png(found) -> bytes | None:
    from metrics import reports
    from metrics.result import Result

    if isinstance(found, Result):
        from metrics import charts  # matplotlib: only when a chart is wanted

        return charts.render_png(found)
    return reports.render_png(found)


def _meta(line: str, prefix: str) -> tuple[str, int] | None:
    """``help``, ``list`` and ``define <kpi>`` answered as in Slack and chat (the same words as
    :mod:`bot.router`), or None for a question. ``kpibot ask list`` used to be parsed as a KPI
    called "list" (and was offered `new_customers`)."""
    from bot.router import DEFINE_WORDS, HELP_WORDS, LIST_WORDS
    from metrics import render
    from metrics.errors import QueryError

    words = line.split()
    head = words[0].lower().rstrip(":") if words else ""
    if head in HELP_WORDS and len(words) <= 1:
        return _plain(render.help_text(prefix=prefix)), 0
    if head in LIST_WORDS and len(words) == 1:
        return _plain(render.catalogue_list()), 0
    if head in DEFINE_WORDS:
        word = " ".join(words[1:]).strip(" ?")
        if not word:
            q = (lambda words: f'{prefix} "{words}"') if prefix else (lambda words: words)
            return f"Which KPI? Try `{q('define nps')}`, or `{q('list')}` to see them all.", EXIT_BAD_QUESTION
        try:
            return _plain(render.define(word)), 0
        except QueryError as exc:
            return str(exc), EXIT_BAD_QUESTION
    return None


LOAD_HINT = ("Build the demo company with `kpibot demo`, load your own data with `kpibot import TABLE FILE`, "
             "or point KPI_DATABASE_URL (or --url) at your database.")


def _missing_database(url: str | None) -> str | None:
    """Why a file database cannot answer, without creating it (opening one creates it, and
    every question then said "no data": the default ./data/ is relative to the folder kpibot
    runs in)."""
    from sqlalchemy.engine import make_url

    from storage import database

    parsed = make_url(url or database.database_url())
    path = parsed.database
    if parsed.get_backend_name() not in ("duckdb", "sqlite") or not path or path == ":memory:":
        return None
    if Path(path).exists():
        return None
    default = "" if url or os.environ.get("KPI_DATABASE_URL") else " (the default, ./data/ in this folder)"
    return f"There is no kpibot database at {Path(path).resolve()}{default}. {LOAD_HINT}"


def _empty_database(url: str | None) -> str | None:
    """A message when no table holds a row, asked only after an answer found no data."""
    from sqlalchemy import literal, select

    from storage import database
    from storage.schema import TABLES

    try:
        engine = database.get_engine(url)
        with database.connect(engine) as conn:
            for table in TABLES.values():
                if conn.execute(select(literal(1)).select_from(table).limit(1)).first() is not None:
                    return None
        where = engine.url.render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only a hint: the answer stands without it
        return None
    return f"The database is empty ({where}): there is no data to answer from. {LOAD_HINT}"


def _no_data(found) -> bool:
    from metrics.result import Result

    return isinstance(found, Result) and found.value is None and not found.series and not found.breakdown


def cmd_ask(args: argparse.Namespace) -> int:
    meta = _meta(args.text, "kpibot ask")
    if meta is not None:
        text, code = meta
        print(json.dumps({"text": text}) if args.json and code == 0 else text,
              file=sys.stdout if code == 0 else sys.stderr)
        return code
    missing = _missing_database(args.url)
    if missing:
        print(missing, file=sys.stderr)
        return EXIT_DATABASE
    result, error = _answer(args.text, args.as_of, args.url, draw=bool(args.chart))
    if error:
        print(error[0], file=sys.stderr)
        return error[1]
    empty = _empty_database(args.url) if _no_data(result) else None
    if empty:
        print(empty, file=sys.stderr)
        return EXIT_DATABASE
    if args.json:
        from metrics import render, reports
        from metrics.result import Result

        data = render.to_json(result) if isinstance(result, Result) else reports.to_json(result)
        print(json.dumps(data, indent=2, default=str))
    else:
        print(_plain(_text(result)))
    if args.chart:
        png = _png(result)
        if png is None:
            print("(no chart: there is no data to draw)", file=sys.stderr)
        else:
            Path(args.chart).write_bytes(png)
            if not args.json:
                print(f"Chart written to {args.chart}")
    return 0


#: *bold* in mrkdwn: marks that hug a word; a formula's `a * 100` keeps its spaced operator
_EMPHASIS = re.compile(r"\*(\S(?:[^*\n]*?\S)?)\*")


def _plain(text: str) -> str:
    """Slack mrkdwn to terminal text: drop the emphasis marks, keep the code blocks."""
    out = []
    for line in text.splitlines():
        if line.startswith("```"):
            continue
        out.append(_EMPHASIS.sub(r"\1", line).strip("_") if not line.startswith("  ") else line)
    return "\n".join(out)


def cmd_metrics(args: argparse.Namespace) -> int:
    from metrics import render
    from metrics.catalogue import CATALOGUE, GROUPS

    if args.markdown:
        print(render.catalogue_markdown())
        return 0
    for group in GROUPS:
        metrics = [m for m in CATALOGUE.values() if m.group == group]
        if not metrics:
            continue
        print(f"\n{group.upper()}")
        for m in metrics:
            print(f"  {m.id:<24} {m.label} [{m.unit}, {m.direction} is better]")
            print(f"  {'':<24} {m.formula}")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    """A local console that answers like the Slack bot, writing charts to files."""
    missing = _missing_database(args.url)
    if missing:
        print(missing, file=sys.stderr)
        return EXIT_DATABASE
    from metrics import pauses

    print("kpibot chat — ask a question (e.g. `nps by industry last-quarter`), `help`, `list`, `quit`.")
    count = 0
    out_dir = Path(args.charts)
    out_dir.mkdir(parents=True, exist_ok=True)
    pauses.install()
    while True:
        pauses.tidy()  # waiting for the next question: a quiet moment for a due garbage collection
        try:
            line = input("kpi> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not line:
            continue
        word = line.split()[0].lower()
        if word in ("quit", "exit", "q"):
            return 0
        meta = _meta(line, "")
        if meta is not None:
            print(meta[0])
            continue
        result, error = _answer(line, args.as_of, args.url, draw=True)
        if error:
            print(error[0])
            continue
        empty = _empty_database(args.url) if _no_data(result) else None
        if empty:
            print(empty)
            continue
        print(_plain(_text(result)))
        png = _png(result)
        if png:
            count += 1
            path = out_dir / f"kpibot-chart-{count}.png"
            path.write_bytes(png)
            print(f"(chart: {path})")


def cmd_import(args: argparse.Namespace) -> int:
    from storage import database
    from storage.importer import ImportFailed, import_file

    try:
        report = import_file(database.get_engine(args.url), args.table, args.file)
    except ImportFailed as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except database.DatabaseError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_DATABASE
    print(report)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from sqlalchemy import func, select

    from storage import database
    from storage.schema import customers

    try:
        engine = database.get_engine(args.url)
        database.require_owned(engine, "kpibot demo")
        if args.if_empty:
            with database.connect(engine) as conn:
                if conn.execute(select(func.count()).select_from(customers)).scalar():
                    print("The database already has data; not building the demo company.")
                    return 0
        from storage.demo import build_demo  # NumPy, SciPy, Arrow: only when it is built

        started = time.perf_counter()
        counts = build_demo(engine, seed=args.seed, scale=args.scale, today=args.as_of)
    except database.DatabaseError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_DATABASE
    elapsed = time.perf_counter() - started
    total = sum(counts.values())
    print(f"Demo company built in {elapsed:.1f}s: {total:,} rows")
    for table, n in counts.items():
        print(f"  {table:<18} {n:>10,}")
    print('Try: kpibot ask "nps by industry last-quarter" --chart nps.png')
    return 0


def cmd_rollups(args: argparse.Namespace) -> int:
    """``kpibot rollups refresh|status``: kpibot's own daily usage rollup (metrics/rollups.py)."""
    from metrics import rollups
    from storage import database

    try:
        engine = database.get_engine(args.url)
        if rollups.store_url(engine) is None:
            print("No rollup store for this database: set KPI_ROLLUP_URL (kpibot writes only there).", file=sys.stderr)
            return 2
        if args.action == "refresh":
            started = time.perf_counter()
            found = rollups.refresh(engine, on_chunk=lambda day, rows: print(f"  through {day:%Y-%m-%d}: {rows:,} user-days",
                                                                             flush=True))
            if found is None:
                print("No usage events yet: nothing to roll up.")
                return 0
            print(f"Rolled up in {time.perf_counter() - started:.1f}s.")
        found = rollups.status(engine, count_rows=True)
    except database.DatabaseError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_DATABASE
    if found is None:
        if rollups.is_outdated(engine):
            print("The rollup was built by an earlier kpibot and is not used: run `kpibot rollups refresh` to build it again.")
        else:
            print("No rollup built yet: run `kpibot rollups refresh`.")
        return 0
    fresh = rollups.is_fresh(engine, found)
    last = found.built_through - timedelta(days=1)
    print(f"usage by user and day: {found.rows:,} rows, {found.first_day:%-d %b %Y} to {last:%-d %b %Y} (UTC), "
          f"built {found.built_at:%Y-%m-%d %H:%M} UTC; "
          + ("fresh: used for " + ", ".join(rollups.SERVED) if fresh
             else "STALE (the events changed since): not used until `kpibot rollups refresh`"))
    copy, same = rollups.customers_status(engine)
    if copy is not None:
        print(f"customer attributes: {copy.rows:,} customers ({', '.join(copy.dimensions)}); "
              + ("fresh: used for breakdowns, filters, what moved it and inactive customers" if same
                 else "STALE (the customers changed since): not used until `kpibot rollups refresh`"))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from bot.server import serve

    if args.url:
        os.environ["KPI_DATABASE_URL"] = args.url
    return serve(port=args.port) or 0


def cmd_schedules(args: argparse.Namespace, rest: list[str]) -> int:
    from bot.schedules.commands import cli

    return cli([args.command, *rest])


def cmd_audit(args: argparse.Namespace) -> int:
    if args.limit == 0:  # asked for none: print none (the log's LIMIT used to be at least 1)
        return 0
    from bot.audit import print_latest

    return print_latest(limit=args.limit)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _model(url: str | None):
    """The model file the settings name (KPI_MODEL, or ./kpibot.yml), configured for ``url``."""
    from metrics import model
    from metrics.model.load import load_model

    path, dbt = model.model_path(), model.dbt_project()
    loaded = model.read(path, dbt) if path or dbt else load_model([])
    model.configure(loaded if path or dbt else None, url)
    return " + ".join(p for p in (path, dbt) if p) or None, loaded


def cmd_check(args: argparse.Namespace) -> int:
    from metrics.model import check
    from storage import database

    path, loaded = _model(args.url)
    print(f"Model: {path or '(none: set KPI_MODEL or add ./kpibot.yml)'}; "
          f"{len(loaded.sources)} sources, {len(loaded.dimensions)} dimensions, {len(loaded.team)} team KPIs")
    try:
        report = check.run(loaded, database.get_engine(args.url))
    except database.DatabaseError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_DATABASE
    print(report.text())
    return 0 if report.ok else 1


def cmd_define(args: argparse.Namespace) -> int:
    from metrics import render
    from metrics.catalogue import resolve
    from metrics.errors import QueryError
    from metrics.model import check
    from storage import database

    _model(args.url)
    try:
        metric = resolve(args.kpi)
        print(_plain(render.define(metric.id)))
        print("\nSQL (this month):")
        print("\n\n".join(check.sql_of(metric.id, database.get_engine(args.url))))
    except QueryError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_QUESTION
    except database.DatabaseError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_DATABASE
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kpibot", description="KPIs, explained, in Slack and in the terminal.")
    parser.add_argument("--url", help="metrics database URL (default: KPI_DATABASE_URL or the embedded DuckDB file)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ask", help="answer one question")
    p.add_argument("text")
    p.add_argument("--as-of", type=_date, help="pin 'today' (YYYY-MM-DD) so relative periods are reproducible")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--chart", metavar="FILE.png", help="write the chart as PNG")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("metrics", help="list the KPI catalogue with formulas")
    p.add_argument("--markdown", action="store_true", help="as the README's KPI table")
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("check", help="check the model file (KPI_MODEL) against the database")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("define", help="what a KPI means, and the SQL it runs")
    p.add_argument("kpi")
    p.set_defaults(func=cmd_define)

    p = sub.add_parser("chat", help="a local console that answers like the Slack bot")
    p.add_argument("--as-of", type=_date)
    p.add_argument("--charts", default=".", help="folder for chart files")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("import", help="load a CSV or Parquet file into a table")
    p.add_argument("table")
    p.add_argument("file")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("demo", help="build the demo company (replaces all data)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--as-of", type=_date, help="the demo's 'today'")
    p.add_argument("--if-empty", action="store_true", help="only when the database has no customers yet")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("serve", help="run the Slack app (Socket Mode or HTTP)")
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("rollups", help="kpibot's own daily usage rollup: refresh it, or show its status")
    p.add_argument("action", choices=("refresh", "status"))
    p.set_defaults(func=cmd_rollups)

    for name in ("digest", "alert"):
        p = sub.add_parser(name, help=f"manage {name}s (same words as /kpi {name} …)", add_help=False)
        p.set_defaults(func=None)

    p = sub.add_parser("audit", help="print the latest audit log entries")
    p.add_argument("--limit", type=_count, default=50, help="how many entries (default 50)")
    p.set_defaults(func=cmd_audit)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `kpibot ask … | head`: the reader left; no traceback for that
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # quiet the exit-time flush
        return 141


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # digest/alert take free words, parsed by the schedules module itself
    global_args = []
    while argv and argv[0].startswith("--url"):
        global_args.append(argv.pop(0))
        if "=" not in global_args[-1] and argv:
            global_args.append(argv.pop(0))
    if argv and argv[0] in ("digest", "alert"):
        ns = parser.parse_args([*global_args, argv[0]])
        if ns.url:
                os.environ["KPI_DATABASE_URL"] = ns.url
        return cmd_schedules(ns, argv[1:])
    args = parser.parse_args([*global_args, *argv])
    if args.func not in (cmd_check, cmd_define) and _model_configured():
        _, loaded = _model(args.url)
        for error in loaded.errors:
            print(f"model file: {error}", file=sys.stderr)
    return args.func(args) or 0


def _model_configured() -> bool:
    from metrics.model import dbt_project, model_path

    return model_path() is not None or dbt_project() is not None


if __name__ == "__main__":
    sys.exit(main())
