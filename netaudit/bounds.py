"""Every cap on what a server controls, in one place, and the helpers that apply them.

A server decides how many devices, models or header lines it sends and how long each string is. The
caps below are far above what real servers send (measured on the lab's TF servers and ModelServer,
docs/benchmarks.md) and small enough that one endpoint's JSON stays under ENDPOINT_JSON_MAX whatever the
server sends. What is cut is never hidden: lists end in a count of what was left out, and
details["truncated"] says per field how many items were dropped.
"""

from __future__ import annotations

import json
from typing import Any

# Items per list or map, by the details key (or nested key) that holds them.
CAPS: dict[str, int] = {
    "devices": 64,               # GetStatus device_attributes; a DGX-class host has 8-16 accelerators
    "models": 32,                # ModelServer inventory entries
    "versions": 16,              # versions per model
    "signatures": 16,            # signature_defs per model
    "tensors": 16,               # inputs or outputs per signature
    "metrics_model_names": 32,   # model names read from the Prometheus page
    "reflection_services": 32,   # services the reflection API lists
    "services": 32,
    "models_learned": 32,
}
STRING_MAX = 200             # characters per string a server supplied (names, banners, messages, header values)
HEADER_VALUE_MAX = 256       # characters kept of one HTTP header value
HEADERS_MAX = 64             # header lines read from one HTTP reply before it counts as hostile
EVIDENCE_MAX = 60            # transcript and evidence lines per endpoint
EVIDENCE_LINE_MAX = 400      # characters per evidence line
ENDPOINT_JSON_MAX = 64 * 1024  # bytes of one endpoint in the JSON output, whatever the server sent

# Receive limits, just above what real replies need (docs/benchmarks.md "Receive limits"): the lab TF
# server's GetStatus is 0.2 KB, a 16-accelerator host ~4 KB, the lab ModelServer's largest
# GetModelMetadata 1.4 KB, a large real SignatureDefMap a few hundred KB.
GRPC_RECEIVE_MAX = 1 << 20
HTTP_BODY_MAX = 1 << 20


def clip(text: str, limit: int = STRING_MAX) -> str:
    """At most `limit` characters, saying how many were cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def cap_list(items: list, key: str, truncated: dict[str, int] | None = None) -> list:
    """The first CAPS[key] items; the count of the rest goes into `truncated` under `key`."""
    limit = CAPS[key]
    if len(items) > limit and truncated is not None:
        truncated[key] = truncated.get(key, 0) + len(items) - limit
    return items[:limit]


def more(count: int, noun: str) -> str:
    return f"… and {count:,} more {noun}"


def _json_size(value: Any) -> int:
    return len(json.dumps(value))


def _clip_strings(value: Any) -> Any:
    if isinstance(value, str):
        return clip(value)
    if isinstance(value, list):
        return [_clip_strings(v) for v in value]
    if isinstance(value, dict):
        return {clip(str(k)): _clip_strings(v) for k, v in value.items()}
    return value


def _largest(container: Any, path: tuple) -> tuple[tuple, Any]:
    """The path to the biggest list or map with more than one item: the first thing to halve."""
    best_path, best = path, container
    while True:
        children = list(best.items()) if isinstance(best, dict) else list(enumerate(best))
        big = [(k, v) for k, v in children if isinstance(v, (dict, list)) and len(v) > 1]
        if not big:
            return best_path, best
        key, child = max(big, key=lambda kv: _json_size(kv[1]))
        if len(children) > 1 and _json_size(child) * 2 < _json_size(best):
            return best_path, best  # no single child dominates: halve this one
        best_path, best = best_path + (key,), child


def bound_endpoint(endpoint) -> None:
    """Clip strings and evidence, then halve the largest list or map in details until the endpoint's JSON
    fits ENDPOINT_JSON_MAX; each cut is counted in details["truncated"]."""
    evidence = [clip(line, EVIDENCE_LINE_MAX) for line in endpoint.evidence]
    if len(evidence) > EVIDENCE_MAX:
        evidence = evidence[:EVIDENCE_MAX - 1] + [more(len(evidence) - EVIDENCE_MAX + 1, "evidence lines")]
    endpoint.evidence = evidence
    endpoint.details = _clip_strings(endpoint.details)
    endpoint.services = [clip(s) for s in cap_list(endpoint.services, "services",
                                                   endpoint.details.setdefault("truncated", {}))]
    truncated = endpoint.details["truncated"]
    while _json_size(endpoint.to_dict()) > ENDPOINT_JSON_MAX:
        path, big = _largest({k: v for k, v in endpoint.details.items() if k != "truncated"}, ())
        if not path or len(big) <= 1:
            endpoint.evidence = endpoint.evidence[:len(endpoint.evidence) // 2]
            if not endpoint.evidence:
                break
            continue
        keep = len(big) // 2
        label = ".".join(str(p) for p in path)
        truncated[label] = truncated.get(label, 0) + len(big) - keep
        if isinstance(big, dict):
            for key in list(big)[keep:]:
                del big[key]
        else:
            del big[keep:]
    if not truncated:
        del endpoint.details["truncated"]
