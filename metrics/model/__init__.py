"""The model file: the team's tables, dimensions and KPIs (see docs/model.md).

:func:`configure` makes a loaded model the one kpibot answers from; :func:`from_settings`
loads the model that ``KPI_MODEL`` names (default ``./kpibot.yml`` when it exists).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the catalogue imports .relations: the loader (which imports it) loads on use
    from metrics.model.load import Model

DEFAULT_PATH = "kpibot.yml"


def model_path(env: Mapping[str, str] | None = None) -> str | None:
    """Where the model file is: ``KPI_MODEL``, else ``./kpibot.yml`` when it exists, else None.
    The one place the setting is read."""
    env = os.environ if env is None else env
    path = (env.get("KPI_MODEL") or "").strip()
    if path:
        return path
    return DEFAULT_PATH if Path(DEFAULT_PATH).is_file() else None


def dbt_project(env: Mapping[str, str] | None = None) -> str | None:
    """``KPI_DBT_PROJECT``: a dbt project folder or its semantic_manifest.json (None: unset)."""
    env = os.environ if env is None else env
    return (env.get("KPI_DBT_PROJECT") or "").strip() or None


def read(path: str | Path | None, dbt: str | Path | None = None) -> Model:
    """The model in a file or folder, merged with a dbt project's semantic manifest (converted
    by :mod:`metrics.model.dbt`); its errors are in ``Model.errors``, never raised."""
    from metrics.model.dbt import dbt_documents
    from metrics.model.document import read_paths
    from metrics.model.load import load_model

    docs, errors = read_paths(path) if path is not None else ([], [])
    if dbt is not None:
        more, dbt_errors = dbt_documents(dbt)
        docs, errors = docs + more, errors + dbt_errors
    model = load_model(docs)
    model.errors[:0] = errors
    return model


def configure(model: Model | None, url: str | None = None) -> None:
    """Answers from ``model`` (None: kpibot's own tables and built-in KPIs only) over the
    database at ``url`` (None: the configured ``KPI_DATABASE_URL``)."""
    from metrics import access, catalogue, parser, values
    from metrics.model import relations
    from storage import database

    if model is None:
        relations.activate(None)
        catalogue.install(dict(catalogue.BUILT_IN))
    else:
        relations.activate(model.relations, url or database.database_url())
        catalogue.install(model.metrics)
    access.forget()
    values.invalidate()
    parser.catalogue_changed()


def from_settings(env: Mapping[str, str] | None = None) -> Model | None:
    """Loads and configures the model the settings name; None when there is none."""
    path, dbt = model_path(env), dbt_project(env)
    if path is None and dbt is None:
        return None
    model = read(path, dbt)
    configure(model)
    return model


__all__ = ["configure", "dbt_project", "from_settings", "model_path", "read"]
