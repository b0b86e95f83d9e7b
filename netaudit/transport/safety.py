"""The read-only contract every probe obeys. What each family's probes may never send is data in its
declaration (probes/<family>/family.toml [safety]); this module enforces it at the two places requests leave:
the RPC session (every gRPC call) and the HTTP client (every request).

A method on a family's `do_not_call` list changes server state or runs code. A probe may only ever send it
MALFORMED: bytes that no protobuf parser accepts, so the server rejects the request before any handler runs
(INTERNAL "Unable to parse request" from gRPC's async server, INTERNAL with empty details from a sync one)
and the reply still proves whether the method is registered. A method on `empty_only` may get only an
empty request. Over HTTP only the safe methods are sent (GET, HEAD, OPTIONS, TRACE), plus a POST with an empty body to the paths a
family lists in `http_post_empty` (rejected by the server's parser before any model is touched).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from functools import cache

from netaudit.core import registry

# Field 1, wire type VARINT, then a varint that never terminates: truncated for every message type.
MALFORMED = b"\x08\x80"
READ_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")  # RFC 9110 §9.2.1: the safe methods


class UnsafeCall(RuntimeError):
    """A probe tried to send a state-changing request. This is a bug in the probe, never a scan result."""


@cache
def do_not_call() -> frozenset[str]:
    return frozenset().union(*(f.do_not_call for f in registry.families()))


@cache
def empty_only() -> frozenset[str]:
    return frozenset().union(*(f.empty_only for f in registry.families()))


@cache
def http_post_empty() -> tuple[str, ...]:
    return tuple(p for f in registry.families() for p in f.http_post_empty)


def check_call(method: str, request: bytes) -> None:
    if method in do_not_call() and request != MALFORMED:
        raise UnsafeCall(f"refusing to call {method} with a parseable request")
    if method in empty_only() and request not in (b"", MALFORMED):
        raise UnsafeCall(f"refusing to call {method} with a non-empty request")


def check_http(method: str, path: str, body: bytes) -> None:
    if method in READ_METHODS and not body:
        return
    if method == "POST" and not body and any(fnmatchcase(path, pattern) for pattern in http_post_empty()):
        return
    raise UnsafeCall(f"refusing to send {method} {path} ({len(body)}-byte body): not a read")
