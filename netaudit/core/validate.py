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
def _validator(name: str):
    from jsonschema import Draft202012Validator

    schema = json.loads(resources.files("netaudit").joinpath(f"data/schemas/{name}.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def field_path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def check_result(data: Any, path: str, schema: str) -> None:
    """`schema` is scan-v1 or report-v1. The first error, by its place in the file, names the field."""
    errors = sorted(_validator(schema).iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        error = errors[0]
        raise UsageError(f"{path}: {field_path(error.absolute_path)}: {_short(error.message)} "
                         f"(not a valid netaudit/{schema} file)")
    if schema == "scan-v1":
        from netaudit.core import registry

        known = registry.kinds()
        for i, endpoint in enumerate(data["endpoints"]):
            kind = endpoint.get("kind")
            if kind is not None and kind not in known:
                raise UsageError(f"{path}: endpoints[{i}].kind: {kind!r} is not a kind netaudit knows"
                                 f"{nearest(kind, known)}")


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
