"""Checks of the files a user hands netaudit, so that a wrong one is one line and exit 2, never a KeyError.

Results are checked against the published schemas (netaudit/data/schemas/scan-v1.json, report-v1.json);
TOML inputs (policies, accept lists) against the keys they may hold, naming the nearest valid key when one
is misspelt, as `cidr =` for `cidrs =`.
"""

from __future__ import annotations

import difflib
import json
from functools import cache
from importlib import resources
from typing import Any

from netaudit.core.errors import UsageError


@cache
def _schema(name: str) -> dict[str, Any]:
    from jsonschema import Draft202012Validator

    schema = json.loads(resources.files("netaudit").joinpath(f"data/schemas/{name}.json").read_text())
    Draft202012Validator.check_schema(schema)
    return schema


@cache
def _validator(name: str, part: str | None = None):
    """The schema's validator, or with `part` that of one item of its top-level list `part`."""
    from jsonschema import Draft202012Validator

    schema = _schema(name)
    if part is not None:
        schema = schema["properties"][part]["items"]
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def field_path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _first_error(validator, data: Any, path: str, schema: str, prefix: tuple = ()) -> None:
    """The first error, by its place in the file, names the field."""
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        error = errors[0]
        raise UsageError(f"{path}: {field_path((*prefix, *error.absolute_path))}: {_short(error.message)} "
                         f"(not a valid netaudit/{schema} file)")


def _known_kind(endpoint: dict[str, Any], path: str, where: str) -> None:
    from netaudit.core import registry

    kind, known = endpoint.get("kind"), registry.kinds()
    if kind is not None and kind not in known:
        raise UsageError(f"{path}: {where}.kind: {kind!r} is not a kind netaudit knows{nearest(kind, known)}")


def check_result(data: Any, path: str, schema: str) -> None:
    """`schema` is scan-v1 or report-v1."""
    _first_error(_validator(schema), data, path, schema)
    if schema == "scan-v1":
        for i, endpoint in enumerate(data["endpoints"]):
            _known_kind(endpoint, path, f"endpoints[{i}]")


def check_scan_items(endpoint: Any, findings: Any, where: str) -> None:
    """One endpoint and its findings, as a scan stream's line holds them, against scan-v1's items: a stream is
    checked line by line, never held whole."""
    _first_error(_validator("scan-v1", "endpoints"), endpoint, where, "scan-v1", ("endpoint",))
    _known_kind(endpoint, where, "endpoint")
    if not isinstance(findings, list):
        raise UsageError(f"{where}: findings: not a list (not a valid netaudit/scan-v1 file)")
    for i, finding in enumerate(findings):
        _first_error(_validator("scan-v1", "findings"), finding, where, "scan-v1", ("findings", i))


def _short(message: str, limit: int = 160) -> str:
    return message if len(message) <= limit else message[:limit] + "…"


def nearest(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_keys(table: dict[str, Any], allowed: set[str] | dict[str, Any], path: str, where: str) -> None:
    """Unknown keys are errors, with the nearest allowed one."""
    for key in table:
        if key not in allowed:
            raise UsageError(f"{path}: {where}: unknown key {key!r}{nearest(key, allowed)} "
                             f"(allowed: {', '.join(sorted(allowed))})")
