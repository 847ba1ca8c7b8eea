"""The model file as parsed documents, with the line each entry came from.

A document is a plain dict shaped like the YAML in docs/model.md. Documents read from YAML
are :class:`Lined` dicts that remember the line of each key, so that an error names the file
and the line; documents built by other means (a dbt manifest) are plain dicts, whose errors
name the origin alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class ModelError:
    """One thing wrong in the model: printed as ``origin:line: message``."""

    origin: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.origin}:{self.line}: {self.message}" if self.line else f"{self.origin}: {self.message}"


class Lined(dict):
    """A mapping that knows its own line and the line of each of its keys (1-based)."""

    line: int | None = None
    lines: dict[str, int]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lines = {}


def line_of(node: Any, key: str | None = None) -> int | None:
    """The line of ``node`` (a mapping read from YAML), or of its entry ``key``."""
    if isinstance(node, Lined):
        return node.lines.get(key, node.line) if key is not None else node.line
    return None


#: libyaml's parser where PyYAML was built with it (the catalogue is read at every start: the
#: pure-Python scanner took ~0.3 s of CPU of a cold `kpibot ask`)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _convert(node: yaml.Node, scalars: yaml.constructor.SafeConstructor) -> Any:
    if isinstance(node, yaml.MappingNode):
        out = Lined()
        out.line = node.start_mark.line + 1
        for key_node, value_node in node.value:
            key = str(_convert(key_node, scalars))
            out[key] = _convert(value_node, scalars)
            out.lines[key] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(v, scalars) for v in node.value]
    return scalars.construct_object(node) if isinstance(node, yaml.ScalarNode) else None


def parse(text: str, origin: str) -> tuple[dict | None, list[ModelError]]:
    """One YAML document with its lines; a syntax error is a ModelError, never a traceback."""
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        return None, [ModelError(origin, line, f"not valid YAML: {getattr(exc, 'problem', None) or exc}")]
    if node is None:
        return Lined(), []
    doc = _convert(node, yaml.constructor.SafeConstructor())  # one per document: it remembers nodes
    if not isinstance(doc, dict):
        return None, [ModelError(origin, 1, "the model file must be a mapping (sources:, dimensions:, metrics:)")]
    return doc, []


def read_paths(path: str | Path) -> tuple[list[tuple[str, dict]], list[ModelError]]:
    """A model file, or every *.yml/*.yaml file of a folder (sorted), as parsed documents."""
    root = Path(path)
    if root.is_dir():
        files = sorted(p for p in root.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file())
    elif root.is_file():
        files = [root]
    else:
        return [], [ModelError(str(path), None, "no such model file or folder")]
    docs: list[tuple[str, dict]] = []
    errors: list[ModelError] = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(ModelError(str(file), None, f"cannot read it ({exc.__class__.__name__})"))
            continue
        doc, errs = parse(text, str(file))
        errors += errs
        if doc is not None:
            docs.append((str(file), doc))
    return docs, errors
