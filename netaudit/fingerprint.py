"""The probe runner: turn an open port into an Endpoint that says what it is and how it is protected.

The sniff decides the protocol family; then the probes for that family run in order over one shared
connection. The first probe that claims a kind names the endpoint; every probe adds its evidence.
After every endpoint is fingerprinted, model names one ModelServer port leaked (its metrics, say) are
tried on the other ModelServer ports of the same host.
"""

from __future__ import annotations

from typing import Awaitable, Callable

from .model import Endpoint
from .probes import grpc_generic, modelserver_grpc, modelserver_rest, tf_runtime
from .probes.base import Outcome, ProbeContext
from .probes.sniff import Sniff, printable, sniff
from .rpc import RpcSession

GrpcProbe = Callable[[RpcSession, ProbeContext], Awaitable[Outcome]]

# Most specific first: a TF server also answers the generic gRPC probe, as UNIMPLEMENTED.
GRPC_PROBES: tuple[GrpcProbe, ...] = (tf_runtime.probe, modelserver_grpc.probe, grpc_generic.probe)
SERVING_KINDS = ("modelserver-grpc", "modelserver-rest")

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


def _session(endpoint: Endpoint, timeout: float) -> RpcSession:
    return RpcSession(endpoint.address, timeout, transport="plaintext h2c")


async def _grpc(endpoint: Endpoint, timeout: float, ctx: ProbeContext) -> None:
    session = _session(endpoint, timeout)
    try:
        if not await session.ready():
            return
        for probe in GRPC_PROBES:
            _apply(endpoint, await probe(session, ctx))
    finally:
        endpoint.evidence.extend(session.transcript)
        endpoint.details["rpc_calls"] = len(session.calls)
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


async def fingerprint(endpoint: Endpoint, timeout: float, ctx: ProbeContext) -> None:
    """Fill in kind, transport, services and evidence of an open endpoint."""
    found = await sniff(endpoint.host, endpoint.port, timeout)
    endpoint.evidence.extend(found.evidence)
    endpoint.details["protocol"] = found.protocol
    if found.protocol == "h2":
        await _grpc(endpoint, timeout, ctx)
        if endpoint.kind is None:
            endpoint.kind, endpoint.transport = "unknown", "plaintext"
        return
    if found.protocol == "http":
        _apply(endpoint, await modelserver_rest.probe(endpoint.host, endpoint.port, timeout, ctx))
    kind = endpoint.kind
    _from_sniff(endpoint, found)
    endpoint.kind = kind or endpoint.kind


def _tried(endpoint: Endpoint, ctx: ProbeContext) -> set[str]:
    return set(ctx.model_names) | set(endpoint.details.get("metrics_model_names", [])) | \
        set(endpoint.details.get("models_learned", []))


async def cross_reference(endpoints: list[Endpoint], timeout: float, ctx: ProbeContext) -> None:
    """Try names seen on one ModelServer port on the host's other ModelServer ports (gRPC and REST
    usually belong to one server, and only REST can leak names through metrics)."""
    serving = [e for e in endpoints if e.kind in SERVING_KINDS]
    seen: dict[str, set[str]] = {}
    for ep in serving:
        seen.setdefault(ep.host, set()).update(ep.details.get("models", {}), ep.details.get("metrics_model_names", []))
    for ep in serving:
        missing = tuple(sorted(seen[ep.host] - _tried(ep, ctx)))
        if not missing:
            continue
        ep.details["models_learned"] = list(missing)
        if ep.kind == "modelserver-rest":
            more = await modelserver_rest.inventory(ep.host, ep.port, timeout, missing, ep.evidence)
        else:
            session = _session(ep, timeout)
            try:
                more = await modelserver_grpc.inventory(session, missing)
            finally:
                ep.evidence.extend(session.transcript)
                await session.close()
        ep.evidence.append(f"model names learned from other ports of {ep.host}: {', '.join(missing)}")
        ep.details["models"] = dict(sorted({**ep.details.get("models", {}), **more}.items()))
