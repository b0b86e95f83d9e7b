"""The probe runner: turn an open port into an Endpoint that says what it is and how it is protected.

The sniff decides the protocol; then every family probe the registry declares for it runs in order
(gRPC probes over one shared channel). The first probe that claims a kind names the endpoint; every
probe adds its facts and evidence, so a port that speaks two protocols (KServe's V1 and V2 REST) shows
both. After every endpoint is fingerprinted, model names one port of a host gave away (its metrics, its
model list) are tried on the host's other ports whose family asks for models by name.
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from dataclasses import dataclass
from typing import Awaitable, Callable

from netaudit.core import registry
from netaudit.core.faults import enter, slot
from netaudit.core.model import Endpoint
from netaudit.fingerprint import loader
from netaudit.probes.transport import tls
from netaudit.probes.base import Outcome, ProbeContext
from netaudit.transport.sniff import Sniff, answers_tls, printable, sniff, tls_handshake
from netaudit.probes.transport.tls import TlsOptions
from netaudit.transport.h2c import H2cConnection
from netaudit.transport.rpc import AioLink, H2cLink, RpcSession
from netaudit.transport.tlsrelay import TlsRelay, client_context
from netaudit.transport.transcript import summary

# sslyze inspections at once: each holds trust stores and a worker pool (about 15 MB), and the default
# executor would run six; the wait for a slot is not charged to the endpoint's budget.
TLS_INSPECT_PARALLEL = 2
_TLS_SLOTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

KIND_BY_PROTOCOL = {"http": ("http", "plaintext"), "tls": ("tls", "tls"),
                    "banner": ("unknown", "unknown"), "silent": ("unknown", "unknown")}


class UndeclaredFact(registry.RegistryError):
    """A probe wrote a details key its family does not declare: a bug in netaudit, not a scan result."""


def _apply(endpoint: Endpoint, outcome: Outcome) -> None:
    """Add one probe's claim. Facts are typed and declared; maps (models) merge by key and lists (protocols)
    by item, so two probes of one port both count."""
    undeclared = set(outcome.details) - registry.top_level_facts()
    if undeclared:
        raise UndeclaredFact(f"a probe wrote undeclared details {sorted(undeclared)} (declare them in its "
                             "family's [facts])")
    if endpoint.kind is None and outcome.kind:
        endpoint.kind = outcome.kind
        if outcome.authenticated is not None:
            endpoint.authenticated = outcome.authenticated
    endpoint.services.extend(s for s in outcome.services if s not in endpoint.services)
    for key, value in outcome.details.items():
        mine = endpoint.details.get(key)
        if isinstance(mine, dict) and isinstance(value, dict):
            endpoint.details[key] = {**mine, **{k: {**mine.get(k, {}), **v} if isinstance(v, dict) and
                                                isinstance(mine.get(k), dict) else v for k, v in value.items()}}
        elif isinstance(mine, list) and isinstance(value, list):
            endpoint.details[key] = mine + [v for v in value if v not in mine]
        else:
            endpoint.details[key] = value
    endpoint.evidence.extend(outcome.evidence)


def _session(endpoint: Endpoint, timeout: float, ctx: ProbeContext,
             connection: H2cConnection | None = None) -> RpcSession:
    """Plaintext gRPC over the scanner's own HTTP/2 connection (the sniff's, when it kept one)."""
    return RpcSession(endpoint.address, timeout, transport="plaintext h2c", retries=ctx.retries,
                      link=H2cLink(endpoint.host, endpoint.port, endpoint.address, connection))


def _retried(endpoint: Endpoint, times: int) -> None:
    """Probe steps that needed another try on a slow link (a reconnect, a longer wait, a re-sent call)."""
    if times:
        endpoint.details["probe_retries"] = endpoint.details.get("probe_retries", 0) + times


def _count(endpoint: Endpoint, session: RpcSession) -> None:
    """RPCs sent (each attempt counts) and how many needed another wait, for the safety tests and stats."""
    endpoint.details["rpc_calls"] = endpoint.details.get("rpc_calls", 0) + len(session.calls)
    _retried(endpoint, session.retried)


def _keep_transcript(endpoint: Endpoint, session: RpcSession) -> None:
    """The session's calls go to details.transcript as records; evidence gets one sentence for them (and
    one for a channel that was slow or never ready). The calls a verdict rests on are cited by the probes."""
    record = session.record()
    endpoint.details.setdefault("transcript", []).append(record)
    if session.opening:
        endpoint.evidence.append(session.opening)
    if record["calls"]:
        endpoint.evidence.append(summary(record))


async def _run_grpc_probes(endpoint: Endpoint, session: RpcSession, ctx: ProbeContext,
                           on_outcome: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """`on_outcome` takes each outcome as soon as its probe is done, so a later probe that breaks on a
    hostile reply cannot take back what an earlier one proved."""
    outcomes: list[Outcome] = []
    try:
        enter("gRPC channel set-up")
        if await session.ready():
            for probe in registry.probes_for("h2", "grpc"):
                enter(f"{probe.module} probe")
                outcomes.append(await loader.function(probe)(session, ctx))
                if on_outcome:
                    on_outcome(outcomes[-1])
                named = registry.kind(outcomes[-1].kind)
                if named and named.sole_grpc_service:
                    break
    finally:
        _keep_transcript(endpoint, session)
        _count(endpoint, session)
        await session.close()
    return outcomes


async def _grpc(endpoint: Endpoint, timeout: float, ctx: ProbeContext, connection: H2cConnection | None) -> None:
    endpoint.transport = "plaintext"
    session = _session(endpoint, timeout, ctx, connection)
    await _run_grpc_probes(endpoint, session, ctx, lambda outcome: _apply(endpoint, outcome))
    lost = session.link.connection and session.link.connection.lost
    if lost and lost.startswith("connection cut"):
        endpoint.evidence.append(lost)


@dataclass
class Inside:
    """What the gRPC probes met through the TLS layer."""

    outcomes: list[Outcome]
    http_statuses: list[int]
    failure: str | None  # the TLS connection for the probes itself failed, and nothing answered
    http_reply: str | None = None  # the first call a proxy answered with a plain HTTP status, as a sentence


async def _grpc_over_tls(endpoint: Endpoint, timeout: float, ctx: ProbeContext, tls_ctx: ssl.SSLContext,
                         credentials: str) -> Inside:
    """The gRPC probes through a TLS relay: their outcomes, any HTTP statuses a proxy sent, and why the
    probes never reached the service, when they did not. A relay connection that fails is retried by
    the channel itself (gRPC reconnects within the session's deadlines, each time through a fresh TLS
    connection)."""
    relay = TlsRelay(endpoint.host, endpoint.port, tls_ctx, timeout)
    address = await relay.start()
    session = RpcSession(address, timeout, transport="TLS", authority=endpoint.address, credentials=credentials,
                         retries=ctx.retries, link=AioLink(address, endpoint.address))
    try:
        outcomes = await _run_grpc_probes(endpoint, session, ctx)
    finally:
        await relay.close()
    endpoint.evidence.extend(relay.errors[:3])
    failure = relay.errors[0] if relay.errors and not session.replies else None
    http = next((r for r in session.replies if r.http_status), None)
    return Inside(outcomes, sorted({r.http_status for r in session.replies if r.http_status}), failure,
                  session.cite(http) if http else None)


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
            endpoint.evidence.append(f"HTTP 400 to gRPC without a client certificate: {inside.http_reply}")
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
    try:
        await _fingerprint(endpoint, found, timeout, ctx, tls_options)
    finally:
        if found.connection:
            await found.connection.close()


async def _fingerprint(endpoint: Endpoint, found: Sniff, timeout: float, ctx: ProbeContext,
                       tls_options: TlsOptions | None) -> None:
    endpoint.evidence.extend(found.evidence)
    _retried(endpoint, found.tries - 1)
    if found.protocol in ("h2", "http"):
        enter("TLS downgrade check")
        also = await tls_handshake(endpoint.host, endpoint.port, timeout) \
            if await answers_tls(endpoint.host, endpoint.port, timeout) else None
        if also and _plaintext_error(found):
            endpoint.evidence.append(f"the plaintext answer {found.http_status!r} is a TLS port refusing plaintext")
            endpoint.evidence.extend(also.evidence)
            found = also
        elif also:
            # A port that serves plaintext and also completes a TLS handshake lets an attacker strip TLS.
            endpoint.details["downgrade"] = {"tls_version": also.tls.get("version")}
            endpoint.evidence.append(f"plaintext and TLS ({also.tls.get('version')}) on the same port: a downgrade")
            endpoint.evidence.extend(also.evidence)
    endpoint.details["protocol"] = found.protocol
    if found.protocol == "tls":
        await _tls(endpoint, found, timeout, ctx, tls_options or TlsOptions())
    elif found.protocol == "h2":
        await _grpc(endpoint, timeout, ctx, found.connection)
        if endpoint.kind is None:
            endpoint.kind, endpoint.transport = "unknown", "plaintext"
    else:
        if found.protocol == "http":
            for probe in registry.probes_for("http", "http"):
                enter(f"{probe.module} probe")
                _apply(endpoint, await loader.function(probe)(endpoint.host, endpoint.port, timeout, ctx))
        kind = endpoint.kind
        _from_sniff(endpoint, found)
        endpoint.kind = kind or endpoint.kind


def _tried(endpoint: Endpoint, ctx: ProbeContext) -> set[str]:
    return set(ctx.model_names) | set(endpoint.details.get("metrics_model_names", [])) | \
        set(endpoint.details.get("models_learned", []))


def _channel(endpoint: Endpoint) -> str | None:
    return {"h2": "grpc", "http": "http"}.get(endpoint.details.get("protocol", ""))


def asks_for_models(endpoint: Endpoint) -> bool:
    """Its family asks for models by name, so names other ports of its host gave away are tried on it."""
    return registry.inventory_probe(endpoint.kind, _channel(endpoint) or "") is not None


async def cross_reference(endpoints: list[Endpoint], timeout: float, ctx: ProbeContext,
                          guard: Callable[[Endpoint, Awaitable[None]], Awaitable[None]] | None = None,
                          known: dict[str, set[str]] | None = None) -> None:
    """Try names seen on one port of a host on the host's other ports whose family asks for models by name
    (TF Serving's gRPC and REST usually belong to one server, and only REST leaks names through metrics;
    KServe lists its models on REST, its gRPC port does not). `guard` runs each endpoint's part (the
    scan's fault isolation). `known`: per host, the names its endpoints already handed on had leaked."""
    asking = [(e, p) for e in endpoints if (p := registry.inventory_probe(e.kind, _channel(e) or ""))]
    seen: dict[str, set[str]] = {host: set(names) for host, names in (known or {}).items()}
    for ep in endpoints:
        seen.setdefault(ep.host, set()).update(ep.details.get("models", {}), ep.details.get("metrics_model_names", []))
    for ep, probe in asking:
        missing = tuple(sorted(seen[ep.host] - _tried(ep, ctx)))
        if not missing:
            continue
        work = _learn(ep, probe, missing, timeout, ctx)
        await (guard(ep, work) if guard else work)


async def _learn(ep: Endpoint, probe: registry.Probe, missing: tuple[str, ...], timeout: float,
                 ctx: ProbeContext) -> None:
    ep.details["models_learned"] = list(missing)
    enter(f"{probe.module} inventory")
    if probe.channel == "http":
        more = await loader.inventory(probe)(ep.host, ep.port, timeout, missing, ep.evidence)
    else:
        session = _session(ep, timeout, ctx)
        try:
            more = await loader.inventory(probe)(session, missing)
        finally:
            _keep_transcript(ep, session)
            _count(ep, session)
            await session.close()
    ep.evidence.append(f"model names learned from other ports of {ep.host}: {', '.join(missing)}")
    ep.details["models"] = dict(sorted({**ep.details.get("models", {}), **more}.items()))
