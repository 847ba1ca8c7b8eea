"""Errors a user can cause; their messages are short, plain and safe to show in Slack."""

from __future__ import annotations


class QueryError(Exception):
    """A question kpibot cannot answer as asked. ``str(err)`` is the user-facing message."""


class UnknownMetric(QueryError):
    def __init__(self, word: str, suggestions: list[str]):
        self.word = word
        self.suggestions = suggestions
        hint = f" Did you mean {', '.join(f'`{s}`' for s in suggestions)}?" if suggestions else ""
        super().__init__(f"I don't know a KPI called `{word}`.{hint} Try `list` to see them all.")


class UnknownDimension(QueryError):
    def __init__(self, word: str, metric: str, valid: list[str], suggestions: list[str] | None = None):
        self.word = word
        self.valid = valid
        hint = f" Did you mean `{suggestions[0]}`?" if suggestions else ""
        super().__init__(
            f"`{metric}` can't be broken down by `{word}`.{hint} "
            f"It can be broken down by: {', '.join(valid) or 'nothing'}."
        )


class BadPeriod(QueryError):
    FORMS = (
        "today, yesterday, this/last week|month|quarter|year, last-N-days|weeks|months|quarters, "
        "mtd, qtd, ytd, 2026-Q3, Q3 2026, 2026-10, Oct 2026, 2026, "
        "2026-01-01 to 2026-03-31, since 2026-01-01, Q3, Q3 last year, H1, week 47, since January, "
        "from jan to mar"
    )

    def __init__(self, detail: str):
        super().__init__(f"{detail} Periods I understand: {self.FORMS}.")


class TooLarge(QueryError):
    """A request that would be unbounded (huge text, thousands of points or segments)."""
