"""Every cap on what a server controls, in one place, and the helpers parsers apply them with.

A server decides how many devices, models or header lines it sends and how long each string is. The
caps below are far above what real servers send (measured on the lab's TF servers and ModelServer,
docs/benchmarks.md) and small enough that one endpoint's JSON stays under ENDPOINT_JSON_MAX whatever the
server sends. What is cut is never hidden: lists end in a count of what was left out, and
details["truncated"] says per field how many items were dropped. The last guard, which shrinks a whole
endpoint until its JSON fits ENDPOINT_JSON_MAX, is netaudit/core/bounds.py.
"""

from __future__ import annotations

# Items per list or map, by the details key (or nested key) that holds them.
CAPS: dict[str, int] = {
    "devices": 64,               # GetStatus device_attributes; a DGX-class host has 8-16 accelerators
    "versions": 16,              # versions per model
    "signatures": 8,             # signature_defs per model; real models serve one to a few
    "tensors": 8,                # inputs or outputs per signature
    "metrics_model_names": 32,   # model names read from the Prometheus page
    "reflection_services": 32,   # services the reflection API lists
    "services": 32,              # services one endpoint is said to offer
    "models_learned": 32,
    "transcript_calls": 128,     # calls recorded per gRPC channel (a ModelServer inventory asks 2 per model name)
}
STRING_MAX = 200             # characters per string a server supplied (names, banners, messages, header values)
HEADER_VALUE_MAX = 256       # characters kept of one HTTP header value
HEADERS_MAX = 64             # header lines read from one HTTP reply before it counts as hostile
EVIDENCE_MAX = 60            # transcript and evidence lines per endpoint
EVIDENCE_LINE_MAX = 400      # characters per evidence line
ENDPOINT_JSON_MAX = 64 * 1024  # bytes of one endpoint in the JSON output, whatever the server sent

# Receive limits (docs/benchmarks.md "Receive limits"): the largest reply the lab's real servers send is
# under 2 KB (GetStatus of a TF task, GetModelMetadata and /metadata of the lab models, the Prometheus
# page); a host with 16 accelerators lists about 4 KB of devices. 256 KiB leaves two orders of magnitude
# for big signature maps and metrics pages, and keeps a scan of many hostile servers small.
GRPC_RECEIVE_MAX = 256 * 1024
HTTP_BODY_MAX = 256 * 1024
# Bytes one relayed gRPC connection may carry from the server (netaudit/transport/tlsrelay.py): an inventory of
# 2,000 models at 2 KB each, not an endless frame flood.
RELAY_INBOUND_MAX = 4 << 20


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
