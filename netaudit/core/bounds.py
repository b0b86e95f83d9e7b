"""The last guard on one endpoint's size: whatever its parsers kept (each under the caps of
netaudit/core/caps.py), an endpoint whose JSON is over ENDPOINT_JSON_MAX is shrunk, list by list, until
it fits. What is cut is counted in details["truncated"], never hidden.
"""

from __future__ import annotations

import json
from typing import Any

from netaudit.core.caps import ENDPOINT_JSON_MAX, EVIDENCE_LINE_MAX, EVIDENCE_MAX, STRING_MAX, cap_list, clip, more

# Maps keyed by names a server chose (models, signatures, tensors); every other dict is a record whose
# keys netaudit wrote, and is never cut.
NAME_MAPS = frozenset({"models", "signatures", "inputs", "outputs"})
# When an endpoint is over ENDPOINT_JSON_MAX, every list and name map in its details is cut to these
# many items in turn (and evidence to EVIDENCE_FLOOR lines at least), until it fits.
SHRINK_STEPS = (32, 16, 8, 4, 2, 1)
EVIDENCE_FLOOR = 8
LAST_RESORT_STRING_MAX = 40


def _json_size(value: Any, budget: int = ENDPOINT_JSON_MAX) -> int:
    """Bytes of `value` as json.dumps writes it, counted node by node, stopping once past `budget`: a
    hostile endpoint's full text is never built, and a normal one costs no encoder pass of its own."""
    if isinstance(value, dict):
        size = 2 + 2 * max(len(value) - 1, 0)
        for key, item in value.items():
            if size > budget:
                break
            size += _json_size(key if isinstance(key, str) else str(key), budget) + 2 + \
                _json_size(item, budget - size)
        return size
    if isinstance(value, (list, tuple)):
        size = 2 + 2 * max(len(value) - 1, 0)
        for item in value:
            if size > budget:
                break
            size += _json_size(item, budget - size)
        return size
    return len(_SCALAR(value))


_SCALAR = json.JSONEncoder().encode


def _clip_strings(value: Any, limit: int = STRING_MAX) -> tuple[Any, int]:
    """`value` with every string clipped, and a bound its JSON never exceeds (an ASCII character escapes to at
    most six bytes, \\u0001; any other to twelve, a surrogate pair), so a normal endpoint is known to fit
    without counting it exactly."""
    if isinstance(value, str):
        text = clip(value, limit)
        return text, _text_bound(text)
    if isinstance(value, (list, tuple)):  # a tuple is written as a JSON array too
        items = [_clip_strings(v, limit) for v in value]
        return [v for v, _ in items], 2 * len(items) + 2 + sum(b for _, b in items)
    if isinstance(value, dict):
        entries = [(clip(str(k), limit), _clip_strings(v, limit)) for k, v in value.items()]
        return ({k: v for k, (v, _) in entries},
                4 * len(entries) + 2 + sum(_text_bound(k) + b for k, (_, b) in entries))
    if isinstance(value, int) and not -10**20 < value < 10**20:
        return value, len(str(value))
    return value, 24  # any float's repr, a small int, true, false, null


def _text_bound(text: str) -> int:
    """Bytes `text` takes as a JSON string at most, quotes included."""
    return (6 if text.isascii() else 12) * len(text) + 2


def _cap_all(value: Any, limit: int, label: str, cut: dict[str, int], is_map: bool = False) -> Any:
    """`value` with every list and name map in it cut to `limit` items, the cuts counted by label."""
    if isinstance(value, list):
        if len(value) > limit:
            cut[label] = cut.get(label, 0) + len(value) - limit
        return [_cap_all(v, limit, label, cut) for v in value[:limit]]
    if isinstance(value, dict):
        items = list(value.items())
        if is_map:
            if len(items) > limit:
                cut[label] = cut.get(label, 0) + len(items) - limit
            return {k: _cap_all(v, limit, label, cut) for k, v in items[:limit]}
        return {k: _cap_all(v, limit, f"{label}.{k}" if label else str(k), cut, str(k) in NAME_MAPS)
                for k, v in items}
    return value


def _bounded_evidence(lines: list[str], count: int, width: int) -> list[str]:
    lines = [clip(line, width) for line in lines]
    if len(lines) > count:
        lines = lines[:count - 1] + [more(len(lines) - count + 1, "evidence lines")]
    return lines


def bound_endpoint(endpoint) -> None:
    """Clip strings and evidence; then, while the endpoint's JSON is over ENDPOINT_JSON_MAX, cut every list
    and name map in details to fewer items (SHRINK_STEPS). Each cut is counted in details["truncated"]."""
    truncated: dict[str, int] = dict(endpoint.details.pop("truncated", {}))
    endpoint.services = [clip(s) for s in cap_list(endpoint.services, "services", truncated)]
    details, bound = _clip_strings(endpoint.details)
    evidence = _bounded_evidence(endpoint.evidence, EVIDENCE_MAX, EVIDENCE_LINE_MAX)
    endpoint.details, endpoint.evidence = details, evidence
    shrunk: dict[str, int] = {}

    def fits() -> bool:
        """details["truncated"] goes in afterwards, when anything was cut: its key and comma count too (the two
        maps merged are no longer than both)."""
        key = len(', "truncated": ') if truncated or shrunk else 0
        return _json_size(endpoint.to_dict()) + key + _json_size(truncated) + _json_size(shrunk) < ENDPOINT_JSON_MAX

    # Evidence lines keep up to EVIDENCE_LINE_MAX characters, more than _clip_strings would: bounded as they are.
    bound += _clip_strings([endpoint.host, endpoint.port, endpoint.state, endpoint.kind, endpoint.transport,
                            endpoint.authenticated, endpoint.services])[1] + \
        2 * len(evidence) + 2 + sum(map(_text_bound, evidence)) + 200  # keys and commas
    fitting = bound + _json_size(truncated) < ENDPOINT_JSON_MAX or fits()
    for limit in SHRINK_STEPS:
        if fitting:
            break
        shrunk = {}
        endpoint.details = _cap_all(details, limit, "", shrunk)
        endpoint.evidence = _bounded_evidence(evidence, max(limit, EVIDENCE_FLOOR), EVIDENCE_LINE_MAX)
        fitting = fits()
    if not fitting:  # one item of everything is still too much: shorter strings, fewer lines
        endpoint.details = _clip_strings(endpoint.details, LAST_RESORT_STRING_MAX)[0]
        endpoint.evidence = _bounded_evidence(endpoint.evidence, EVIDENCE_FLOOR, LAST_RESORT_STRING_MAX * 2)
        endpoint.services = [clip(s, LAST_RESORT_STRING_MAX) for s in endpoint.services[:EVIDENCE_FLOOR]]
    for label, count in shrunk.items():
        truncated[label] = truncated.get(label, 0) + count
    if truncated:
        endpoint.details["truncated"] = truncated
