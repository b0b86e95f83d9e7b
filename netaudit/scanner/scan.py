"""One scan from one vantage: targets -> discovery -> fingerprint -> assess -> ScanResult.

Fingerprinting starts the moment discovery finds an open port, so a sweep and its probes overlap.
An interrupt or a spent time budget still returns everything gathered so far, marked incomplete.
Whatever one server sends stays with its endpoint (netaudit/core/faults.py): a probe that breaks or runs out
of its wall-clock budget leaves details.probe_error and what was proven before, and the scan goes on.

With a Sink, each endpoint is handed on as soon as it is finished and then dropped, so memory follows the
probes in flight, not the endpoints seen. Two kinds wait: ports that are not open (who answered them is
known only once every SYN-ACK of their host is in), and ModelServer ports (cross_reference tries names one
port leaked on the host's other ports), which are few.
"""

from __future__ import annotations

import asyncio
import json
import signal
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

from netaudit.assess.rules import assess
from netaudit.core.bounds import bound_endpoint
from netaudit.discovery.engines import ENGINES, DiscoveryOptions, PortResult
from netaudit.core.faults import CURRENT, Step, budget as fingerprint_budget, probe_error
from netaudit.core.model import Endpoint, ScanResult, endpoint_order
from netaudit.discovery.portstates import answered_by, received, target_ttls
from netaudit.probes.base import ProbeContext
from netaudit.probes.common import BUILTIN_MODEL_NAMES
from netaudit.probes.transport.tls import TlsOptions
from netaudit.scanner.progress import Progress
from netaudit.targets.parse import TargetSet


class Sink(Protocol):
    """Where a streaming scan puts its endpoints (stream.StreamWriter writes them as JSON lines)."""

    def begin(self, result: ScanResult) -> None: ...

    def endpoint(self, endpoint: Endpoint) -> None: ...


# Endpoints fingerprinted at once. More in flight means more calls answered per event-loop turn on both
# sides: on 16,384 real TF endpoints 32 took 24.3 s, 128 took 21.6 s and 256 20.8 s (docs/benchmarks.md);
# each in flight holds its connections and at most a few hundred KiB of replies (netaudit/core/bounds.py).
PROBE_CONCURRENCY = 128


@dataclass
class ScanOptions:
    timeout: float = 2.0
    concurrency: int = 512
    rate: float = 0
    retries: int = 1
    max_time: float | None = None
    vantage: str | None = None
    all_states: bool = False  # list closed/undetermined ports of swept ranges too, not only of host:port targets
    probe_concurrency: int = PROBE_CONCURRENCY
    extra_model_names: tuple[str, ...] = ()
    engine: str = "connect"
    engine_reason: str = "chosen with --engine"
    tls: TlsOptions = field(default_factory=TlsOptions)

    @property
    def discovery(self) -> DiscoveryOptions:
        return DiscoveryOptions(self.timeout, self.retries, self.rate, self.concurrency, self.all_states)


async def isolated(endpoint: Endpoint, work, seconds: float, first_step: str) -> None:
    """Run one endpoint's probes: an exception or a spent budget becomes details.probe_error, what the
    probes already wrote into the endpoint stays. UnsafeCall and RegistryError (a probe writing a fact its
    family does not declare) are netaudit's own bugs and propagate."""
    from netaudit.core.registry import RegistryError
    from netaudit.transport.safety import UnsafeCall

    step = Step(first_step)
    token = CURRENT.set(step)
    deadline = step.budget = asyncio.timeout(seconds)

    def stopped(error: dict[str, str]) -> None:
        endpoint.details["probe_error"] = error
        endpoint.evidence.append(f"probe stopped during {error['during']}: {error['error']}: {error['message']}")

    try:
        async with deadline:
            await work
    except (UnsafeCall, RegistryError):
        raise
    except asyncio.CancelledError as exc:
        # The scan itself stopped (an interrupt, --max-time): the endpoint is still written, saying so.
        stopped(probe_error(exc, step.describe(), "the scan stopped before this endpoint's fingerprint finished"))
        raise
    except Exception as exc:  # anything a server can provoke, by design: the scan must go on
        stopped(probe_error(None, step.describe(), f"the {seconds:g}s fingerprint budget was spent")
                if deadline.expired() else probe_error(exc, step.describe()))
    finally:
        CURRENT.reset(token)


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _scan(targets: TargetSet, opts: ScanOptions, result: ScanResult, progress: Progress,
                sink: Sink | None = None) -> None:
    probe_slots = asyncio.Semaphore(opts.probe_concurrency)
    ctx = ProbeContext(tuple(dict.fromkeys(BUILTIN_MODEL_NAMES + opts.extra_model_names)), opts.retries)
    pending: set[asyncio.Task] = set()
    seconds = fingerprint_budget(opts.timeout, opts.retries)
    probing: dict[int, Endpoint] = {}  # with a sink: endpoints being fingerprinted, written as they are if stopped
    ttls: dict[str, int] = {}  # per host, its SYN-ACKs' TTL: who answered, for endpoints handed on early
    engine = ENGINES[opts.engine]
    sends = engine.sends

    def hand_on(endpoint: Endpoint) -> None:
        assert sink is not None
        bound_endpoint(endpoint)
        for key, counts in (("probe_retried", endpoint.details.get("probe_retries")),
                            ("probe_errors", "probe_error" in endpoint.details)):
            result.stats[key] = result.stats.get(key, 0) + bool(counts)
        sink.endpoint(endpoint)

    async def probe_open(found: PortResult, endpoint: Endpoint) -> None:
        # Imported on the first open port: grpc stays out of a sweep that finds nothing, and discovery's
        # worker processes are forked before grpc is loaded.
        from netaudit.fingerprint.runner import asks_for_models, fingerprint
        from netaudit.transport.rpc import hold_aio_engine

        hold_aio_engine()
        async with probe_slots:
            await isolated(endpoint, fingerprint(endpoint, opts.timeout, ctx, opts.tls), seconds, "sniff")
        progress.fingerprinted(endpoint)
        if sink is not None:
            del probing[id(endpoint)]
            if asks_for_models(endpoint):  # kept for cross-referencing model names at the end
                result.endpoints.append(endpoint)
            else:
                attribute_replies([endpoint], engine.sees_packets, frozenset(), ttls)
                hand_on(endpoint)

    failed: list[BaseException] = []  # a probe task's own failure: the sink could not write its endpoint

    def settled(task: asyncio.Task) -> None:
        pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            failed.append(task.exception())

    def on_result(found: PortResult) -> None:
        rtt = f" in {found.rtt_ms:.1f} ms" if found.rtt_ms is not None else ""
        note = f" ({found.note})" if found.note else ""
        endpoint = Endpoint(found.host, found.port, found.state,
                            evidence=[f"{sends} to {found.host} port {found.port}: "
                                      f"{received(found.reason, found.responder)}{rtt}{note}"])
        endpoint.details["discovery"] = {"engine": engine.name, "sent": sends, "reason": found.reason,
                                         "received": received(found.reason, found.responder), "ttl": found.ttl,
                                         "responder": found.responder}
        if found.block.ports is not None:
            endpoint.details["discovery"]["port_named"] = True
        if found.block.name:
            endpoint.details["target_name"] = found.block.name
        if found.block.identity:
            endpoint.details["k8s"] = json.loads(found.block.identity)
        if found.state != "open" or sink is None:
            result.endpoints.append(endpoint)
        if found.state == "open":
            if found.reason == "syn-ack" and found.ttl is not None:
                ttls[found.host] = min(ttls.get(found.host, 255), found.ttl)
            if sink is not None:
                probing[id(endpoint)] = endpoint
            task = asyncio.create_task(probe_open(found, endpoint))
            pending.add(task)
            task.add_done_callback(settled)

    try:
        stats = await engine.run(targets, opts.discovery, on_result, progress.discovered)
        result.stats.update({"engine": opts.engine, "probes": stats.probes, "retried": stats.retried,
                             "states": dict(stats.states), "discovery_seconds": round(stats.seconds, 3),
                             "source_addresses": sorted(stats.sources)})
        result.port_states = stats.summary.to_json()
        attribute_replies(result.endpoints, engine.sees_packets, frozenset(stats.sources))
        if sink is not None:
            for endpoint in [e for e in result.endpoints if e.state != "open"]:
                hand_on(endpoint)
            result.endpoints = [e for e in result.endpoints if e.state == "open"]
        await asyncio.gather(*pending)
        if failed:
            raise failed[0]
        if any(e.state == "open" for e in result.endpoints):
            from netaudit.fingerprint.runner import cross_reference

            await cross_reference(result.endpoints, opts.timeout, ctx,
                                  lambda ep, work: isolated(ep, work, seconds, "cross-reference"))
    finally:
        for task in list(pending):
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)  # cancelled probes close their channels
        if sink is not None:
            for endpoint in result.endpoints + list(probing.values()):
                hand_on(endpoint)
            result.endpoints = []
    result.stats["probe_retried"] = result.stats.get("probe_retried", 0) + sum(
        1 for e in result.endpoints if e.details.get("probe_retries"))
    result.stats["fingerprint_budget_seconds"] = seconds


def scan_options(targets: TargetSet, opts: ScanOptions) -> dict:
    """How a result was made, as it records it."""
    options = {"engine": opts.engine, "engine_reason": opts.engine_reason, "ports": list(targets.ports),
               "targets": [b.spec for b in targets.blocks], "timeout": opts.timeout,
               "concurrency": opts.concurrency, "probe_concurrency": opts.probe_concurrency, "rate": opts.rate}
    for key, part in (("shard", targets.shard), ("worker", targets.worker)):
        if part is not None:
            options[key] = {"index": part[0], "count": part[1]}
    return options


async def scan_async(targets: TargetSet, opts: ScanOptions, progress: Progress | None = None,
                     sink: Sink | None = None) -> ScanResult:
    progress = progress or Progress(total=targets.probe_count())
    result = ScanResult(vantage=opts.vantage, started=now(), options=scan_options(targets, opts))
    if sink is not None:
        sink.begin(result)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    stopped: list[str] = []

    def stop(reason: str) -> None:
        stopped.append(reason)
        task.cancel()

    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop, f"interrupted by {sig.name}")
            handled.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    # A worker of scan --workers is forked with its stop signals blocked (workers.py): one sent while it
    # started is taken here, as an interrupt of its scan, and one after the scan waits, unanswered, so it
    # cannot cut the worker's trailer short. Elsewhere nothing is blocked and this changes nothing.
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, handled)
    budget = loop.call_later(opts.max_time, stop, f"time budget of {opts.max_time:g}s spent") \
        if opts.max_time else None
    try:
        await _scan(targets, opts, result, progress, sink)
        result.complete = True
    except asyncio.CancelledError:
        if not stopped:
            raise
        result.stats["incomplete_reason"] = stopped[0]
        task.uncancel()
    finally:
        if budget:
            budget.cancel()
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for sig in handled:
            loop.remove_signal_handler(sig)
        progress.done()
    result.endpoints.sort(key=lambda e: endpoint_order(e.host, e.port))
    for endpoint in result.endpoints:
        bound_endpoint(endpoint)
    result.stats["probe_errors"] = result.stats.get("probe_errors", 0) + sum(
        1 for e in result.endpoints if "probe_error" in e.details)
    result.findings = assess(result.endpoints)
    result.finished = now()
    return result


def attribute_replies(endpoints: list[Endpoint], sees_packets: bool, local: frozenset[str],
                      reference: dict[str, int] | None = None) -> None:
    """Say who answered each listed probe, once every SYN-ACK of the host is known."""
    reference = reference if reference is not None else target_ttls((ep.host, ep.details) for ep in endpoints)
    for ep in endpoints:
        seen = ep.details.get("discovery")
        if seen is not None:
            seen["answered_by"] = answered_by(seen["reason"], seen["ttl"], seen["responder"],
                                              reference.get(ep.host), sees_packets, local)


def scan(targets: TargetSet, opts: ScanOptions | None = None, progress: Progress | None = None,
         sink: Sink | None = None) -> ScanResult:
    return asyncio.run(scan_async(targets, opts or ScanOptions(), progress, sink))
