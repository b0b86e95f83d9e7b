"""The probe runner: turn an open port into an Endpoint that says what it is and how it is protected.

The sniff decides the protocol family; then the probes for that family run in order over one shared
connection. The first probe that claims a kind names the endpoint; every probe adds its evidence.
After every endpoint is fingerprinted, model names one ModelServer port leaked (its metrics, say) are
tried on the other ModelServer ports of the same host.
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from dataclasses import dataclass
from typing import Awaitable, Callable

from .faults import enter, slot
from .model import Endpoint
from .probes import grpc_generic, modelserver_grpc, modelserver_rest, tf_runtime, tls
from .probes.base import Outcome, ProbeContext
from .probes.sniff import Sniff, printable, sniff, tls_handshake
from .probes.tls import TlsOptions
from .rpc import RpcSession
from .tlsrelay import TlsRelay, client_context

GrpcProbe = Callable[[RpcSession, ProbeContext], Awaitable[Outcome]]

# Most specific first: a TF server also answers the generic gRPC probe, as UNIMPLEMENTED.
GRPC_PROBES: tuple[GrpcProbe, ...] = (tf_runtime.probe, modelserver_grpc.probe, grpc_generic.probe)
SERVING_KINDS = ("modelserver-grpc", "modelserver-rest")

# sslyze inspections at once: each holds trust stores and a worker pool (about 15 MB), and the default
# executor would run six; the wait for a slot is not charged to the endpoint's budget.
TLS_INSPECT_PARALLEL = 2
_TLS_SLOTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

KIND_BY_PROTOCOL = {"http": ("http", "plaintext"), "tls": ("tls", "tls"),
                    "banner": ("unknown", "unknown"), "silent": ("unknown", "unknown")}


def _apply(endpoint: Endpoint, outcome: Outcome) -> None:
    if endpoint.kind is None and outcome.kind:
        endpoint.kind = outcome.kind
        if outcome.authenticated is not None:
            endpoint.authenticated = outcome.authenticated
    endpoint.services.extend(s for s in outcome.services if s not in endpoint.services)
    truncated = {**endpoint.details.get("truncated", {}), **outcome.details.get("truncated", {})}
    endpoint.details.update(outcome.details)
    if truncated:
        endpoint.details["truncated"] = truncated
    endpoint.evidence.extend(outcome.evidence)


def _session(endpoint: Endpoint, timeout: float, ctx: ProbeContext) -> RpcSession:
    return RpcSession(endpoint.address, timeout, transport="plaintext h2c", retries=ctx.retries)


def _retried(endpoint: Endpoint, times: int) -> None:
    """Probe steps that needed another try on a slow link (a reconnect, a longer wait, a re-sent call)."""
    if times:
        endpoint.details["probe_retries"] = endpoint.details.get("probe_retries", 0) + times


def _count(endpoint: Endpoint, session: RpcSession) -> None:
    """RPCs sent (each attempt counts) and how many needed another wait, for the safety tests and stats."""
    endpoint.details["rpc_calls"] = endpoint.details.get("rpc_calls", 0) + len(session.calls)
    _retried(endpoint, session.retried)


async def _run_grpc_probes(endpoint: Endpoint, session: RpcSession, ctx: ProbeContext,
                           on_outcome: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """`on_outcome` takes each outcome as soon as its probe is done, so a later probe that breaks on a
    hostile reply cannot take back what an earlier one proved."""
    outcomes: list[Outcome] = []
    try:
        enter("gRPC channel set-up")
        if await session.ready():
            for probe in GRPC_PROBES:
                enter(f"{probe.__module__.rsplit('.', 1)[-1]} probe")
                outcomes.append(await probe(session, ctx))
                if on_outcome:
                    on_outcome(outcomes[-1])
    finally:
        endpoint.evidence.extend(session.transcript)
        _count(endpoint, session)
        await session.close()
    return outcomes


async def _grpc(endpoint: Endpoint, timeout: float, ctx: ProbeContext) -> None:
    """Through a plaintext relay that caps what the server may send (tlsrelay.py says why)."""
    endpoint.transport = "plaintext"
    relay = TlsRelay(endpoint.host, endpoint.port, None, timeout)
    session = RpcSession(await relay.start(), timeout, transport="plaintext h2c", authority=endpoint.address,
                         retries=ctx.retries)
    try:
        await _run_grpc_probes(endpoint, session, ctx, lambda outcome: _apply(endpoint, outcome))
    finally:
        await relay.close()
        endpoint.evidence.extend(e for e in relay.errors[:3] if e.startswith("connection cut"))


@dataclass
class Inside:
    """What the gRPC probes met through the TLS layer."""

    outcomes: list[Outcome]
    http_statuses: list[int]
    failure: str | None  # the TLS connection for the probes itself failed, and nothing answered


async def _grpc_over_tls(endpoint: Endpoint, timeout: float, ctx: ProbeContext, tls_ctx: ssl.SSLContext,
                         credentials: str) -> Inside:
    """The gRPC probes through a TLS relay: their outcomes, any HTTP statuses a proxy sent, and why the
    probes never reached the service, when they did not. A relay connection that fails is retried by
    the channel itself (gRPC reconnects within the session's deadlines, each time through a fresh TLS
    connection)."""
    relay = TlsRelay(endpoint.host, endpoint.port, tls_ctx, timeout)
    address = await relay.start()
    session = RpcSession(address, timeout, transport="TLS", authority=endpoint.address, credentials=credentials,
                         retries=ctx.retries)
    try:
        outcomes = await _run_grpc_probes(endpoint, session, ctx)
    finally:
        await relay.close()
    endpoint.evidence.extend(relay.errors[:3])
    failure = relay.errors[0] if relay.errors and not session.replies else None
    return Inside(outcomes, sorted({r.http_status for r in session.replies if r.http_status}), failure)


async def _tls(endpoint: Endpoint, found: Sniff, timeout: float, ctx: ProbeContext, options: TlsOptions) -> None:
    """Judge the TLS layer, then look inside it: first as an outsider without a client certificate,
    then, when that is refused and the user gave one, with the client identity."""
    enter("TLS inspection (sslyze)")
    slots = _TLS_SLOTS.setdefault(asyncio.get_running_loop(), asyncio.Semaphore(TLS_INSPECT_PARALLEL))
    async with slot(slots):
        facts = await asyncio.to_thread(tls.inspect, endpoint.host, endpoint.port, timeout, options)
    details = {**(found.tls or {}), **facts}
    endpoint.details["tls"] = details
    endpoint.kind = "tls"
    if details["client_cert"] == "undetermined":
        endpoint.evidence.append(f"sslyze could not connect: {details.get('error')}")
        enter("TLS write-then-read")
        verdict, why, der = await tls.write_then_read(endpoint.host, endpoint.port, timeout)
        details["client_cert"] = verdict
        endpoint.evidence.append(f"client certificate {verdict}: {why}")
        if der and not details.get("certificate"):
            enter("TLS leaf certificate")
            try:
                details.update(tls.leaf_facts(der, endpoint.host, options.ca_bundle))
            except tls.CertificateError as exc:
                details["certificate_error"] = str(exc)
    if details["client_cert"] == "undetermined":
        endpoint.transport = "unknown"
        return
    required = details["client_cert"] == "required"
    endpoint.transport = "mtls" if required else "tls"
    if details.get("alpn") not in ("h2", None):
        endpoint.evidence.append(f"TLS ALPN {details['alpn']!r}, not h2: no gRPC inside")
        return
    if details.get("alpn") is None and details.get("version"):
        details["alpn_note"] = "no ALPN h2 negotiated: current gRPC clients refuse this peer"
    inside: Inside | None = None
    if not required:
        inside = await _grpc_over_tls(endpoint, timeout, ctx, client_context(), "no credentials")
        if not any(o.kind for o in inside.outcomes) and 400 in inside.http_statuses:
            required = True
            endpoint.transport = "mtls"
            details["client_cert"] = "required at the HTTP layer (HTTP 400 without a certificate)"
    if required:
        endpoint.authenticated = True
        endpoint.evidence.append("without a client certificate the server refuses the connection: authenticated")
        inside = None  # what an outsider met says nothing about the service behind the certificate check
        if options.client_cert:
            inside = await _grpc_over_tls(endpoint, timeout, ctx,
                                          client_context(options.client_cert, options.client_key),
                                          "the --client-cert identity")
    if inside is None:
        return
    if any(o.kind for o in inside.outcomes):
        endpoint.kind = None
        for outcome in inside.outcomes:
            if required:
                outcome.authenticated = True
            _apply(endpoint, outcome)
    elif inside.failure:
        # Not "a TLS service that is not gRPC": the probes never got through, so what runs inside is unknown.
        details["inside"] = f"undetermined: the TLS connection for the probes failed ({inside.failure})"
    else:
        details["inside"] = "no gRPC service answered through TLS"


def _from_sniff(endpoint: Endpoint, found: Sniff) -> None:
    endpoint.kind, endpoint.transport = KIND_BY_PROTOCOL[found.protocol]
    if found.banner:
        endpoint.details["banner"] = printable(found.banner, 200)
    if found.http_status:
        endpoint.details["http_status"] = found.http_status
    if found.tls:
        endpoint.details["tls"] = found.tls


def _plaintext_error(found: Sniff) -> bool:
    """A 4xx status line to the HTTP/2 preface: TLS servers such as nginx answer plaintext this way."""
    words = (found.http_status or "").split()
    return found.protocol == "http" and len(words) > 1 and words[1].startswith("4")


async def fingerprint(endpoint: Endpoint, timeout: float, ctx: ProbeContext,
                      tls_options: TlsOptions | None = None) -> None:
    """Fill in kind, transport, services and evidence of an open endpoint."""
    enter("sniff")
    found = await sniff(endpoint.host, endpoint.port, timeout, retries=ctx.retries)
    endpoint.evidence.extend(found.evidence)
    _retried(endpoint, found.tries - 1)
    if found.protocol in ("h2", "http"):
        enter("TLS downgrade check")
        also = await tls_handshake(endpoint.host, endpoint.port, timeout)
        if also and _plaintext_error(found):
            endpoint.evidence.append(f"the plaintext answer {found.http_status!r} is a TLS port refusing plaintext")
            endpoint.evidence.extend(also.evidence)
            found = also
        elif also:
            # A port that serves plaintext and also completes a TLS handshake lets an attacker strip TLS.
            endpoint.details["downgrade"] = f"plaintext and TLS ({also.tls.get('version')}) on the same port"
            endpoint.evidence.extend(also.evidence)
    endpoint.details["protocol"] = found.protocol
    if found.protocol == "tls":
        await _tls(endpoint, found, timeout, ctx, tls_options or TlsOptions())
    elif found.protocol == "h2":
        await _grpc(endpoint, timeout, ctx)
        if endpoint.kind is None:
            endpoint.kind, endpoint.transport = "unknown", "plaintext"
    else:
        if found.protocol == "http":
            enter("modelserver_rest probe")
            _apply(endpoint, await modelserver_rest.probe(endpoint.host, endpoint.port, timeout, ctx))
        kind = endpoint.kind
        _from_sniff(endpoint, found)
        endpoint.kind = kind or endpoint.kind


def _tried(endpoint: Endpoint, ctx: ProbeContext) -> set[str]:
    return set(ctx.model_names) | set(endpoint.details.get("metrics_model_names", [])) | \
        set(endpoint.details.get("models_learned", []))


async def cross_reference(endpoints: list[Endpoint], timeout: float, ctx: ProbeContext,
                          guard: Callable[[Endpoint, Awaitable[None]], Awaitable[None]] | None = None) -> None:
    """Try names seen on one ModelServer port on the host's other ModelServer ports (gRPC and REST
    usually belong to one server, and only REST can leak names through metrics). `guard` runs each
    endpoint's part (the scan's fault isolation)."""
    serving = [e for e in endpoints if e.kind in SERVING_KINDS]
    seen: dict[str, set[str]] = {}
    for ep in serving:
        seen.setdefault(ep.host, set()).update(ep.details.get("models", {}), ep.details.get("metrics_model_names", []))
    for ep in serving:
        missing = tuple(sorted(seen[ep.host] - _tried(ep, ctx)))
        if not missing:
            continue
        work = _learn(ep, missing, timeout, ctx)
        await (guard(ep, work) if guard else work)


async def _learn(ep: Endpoint, missing: tuple[str, ...], timeout: float, ctx: ProbeContext) -> None:
    ep.details["models_learned"] = list(missing)
    if ep.kind == "modelserver-rest":
        more = await modelserver_rest.inventory(ep.host, ep.port, timeout, missing, ep.evidence)
    else:
        session = _session(ep, timeout, ctx)
        try:
            more = await modelserver_grpc.inventory(session, missing)
        finally:
            ep.evidence.extend(session.transcript)
            _count(ep, session)
            await session.close()
    ep.evidence.append(f"model names learned from other ports of {ep.host}: {', '.join(missing)}")
    ep.details["models"] = dict(sorted({**ep.details.get("models", {}), **more}.items()))
