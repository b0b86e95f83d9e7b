"""The probe runner: turn an open port into an Endpoint that says what it is and how it is protected.

The sniff decides the protocol family; then the probes for that family run in order over one shared
connection. The first probe that claims a kind names the endpoint; every probe adds its evidence.
"""

from __future__ import annotations

from typing import Awaitable, Callable

from .model import Endpoint
from .probes import grpc_generic, tf_runtime
from .probes.base import Outcome
from .probes.sniff import Sniff, printable, sniff
from .rpc import RpcSession

GrpcProbe = Callable[[RpcSession], Awaitable[Outcome]]

# Most specific first: a TF server also answers the generic gRPC probe, as UNIMPLEMENTED.
GRPC_PROBES: tuple[GrpcProbe, ...] = (tf_runtime.probe, grpc_generic.probe)

KIND_BY_PROTOCOL = {"http": ("http", "plaintext"), "tls": ("tls", "tls"),
                    "banner": ("unknown", "unknown"), "silent": ("unknown", "unknown")}


def _apply(endpoint: Endpoint, outcome: Outcome) -> None:
    if endpoint.kind is None and outcome.kind:
        endpoint.kind = outcome.kind
        if outcome.authenticated is not None:
            endpoint.authenticated = outcome.authenticated
    endpoint.services.extend(s for s in outcome.services if s not in endpoint.services)
    endpoint.details.update(outcome.details)
    endpoint.evidence.extend(outcome.evidence)


async def _grpc(endpoint: Endpoint, timeout: float) -> None:
    session = RpcSession(endpoint.address, timeout, transport="plaintext h2c")
    try:
        if not await session.ready():
            return
        for probe in GRPC_PROBES:
            _apply(endpoint, await probe(session))
    finally:
        endpoint.evidence.extend(session.transcript)
        endpoint.details.setdefault("rpc_calls", len(session.calls))
        await session.close()
    endpoint.transport = "plaintext"


def _from_sniff(endpoint: Endpoint, found: Sniff) -> None:
    endpoint.kind, endpoint.transport = KIND_BY_PROTOCOL[found.protocol]
    if found.banner:
        endpoint.details["banner"] = printable(found.banner, 200)
    if found.http_status:
        endpoint.details["http_status"] = found.http_status
    if found.tls:
        endpoint.details["tls"] = found.tls


async def fingerprint(endpoint: Endpoint, timeout: float) -> None:
    """Fill in kind, transport, services and evidence of an open endpoint."""
    found = await sniff(endpoint.host, endpoint.port, timeout)
    endpoint.evidence.extend(found.evidence)
    endpoint.details["protocol"] = found.protocol
    if found.protocol == "h2":
        await _grpc(endpoint, timeout)
        if endpoint.kind is None:
            endpoint.kind, endpoint.transport = "unknown", "plaintext"
    else:
        _from_sniff(endpoint, found)
