"""Built-in KPIs kept as data (metrics/kpis/data/*.yml), compiled by the model-file loader.

A KPI that is a plain aggregation, ratio or derivation needs no Python: it is one entry in
the model file's format, the same a team writes for its own KPIs (docs/model.md). A mistake
in a packaged file is a bug in kpibot, so it raises at import instead of being left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources

from metrics.model.compile import Context, compile_metric
from metrics.model.document import line_of, parse
from metrics.model.relations import Relations
from metrics.spec import Metric


def load(name: str, *only: str, known: Iterable[Metric] = ()) -> list[Metric]:
    """The KPIs of the packaged file ``name`` (e.g. ``support.yml``), in file order, or those
    of ``only`` in that order (a module keeps its catalogue order around its Python entries).
    ``known``: the built-in KPIs defined before it, which its derived entries may name."""
    text = resources.files("metrics.kpis.data").joinpath(name).read_text(encoding="utf-8")
    doc, errors = parse(text, name)
    if errors or doc is None:
        raise ValueError(f"metrics/kpis/data/{name}: {errors[0] if errors else 'empty'}")
    ctx = Context(Relations({}), {}, {}, {m.id: m for m in known})
    out = []
    for mid, entry in (doc.get("metrics") or {}).items():
        try:
            metric = compile_metric(mid, entry, ctx)
        except ValueError as exc:
            raise ValueError(f"metrics/kpis/data/{name}:{line_of(doc['metrics'], mid)}: {mid}: {exc}") from exc
        ctx.metrics[mid] = metric
        out.append(metric)
    return [ctx.metrics[mid] for mid in only] if only else out
