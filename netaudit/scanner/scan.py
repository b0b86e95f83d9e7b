"""One scan from one vantage: targets -> discovery -> fingerprint -> assessment -> a sink of finished endpoints.

Fingerprinting starts the moment discovery finds an open port, so a sweep and its probes overlap.
An interrupt or a spent time budget still returns everything gathered so far, marked incomplete.
Whatever one server sends stays with its endpoint (netaudit/core/faults.py): a probe that breaks or runs out
of its wall-clock budget leaves details.probe_error and what was proven before, and the scan goes on.

Each endpoint is assessed (netaudit/policy/assessor.py) and handed to the sink as soon as it is finished,
then dropped, so memory follows the probes in flight, not the endpoints seen. Two kinds wait: ports that are
not open (who answered them is known only once every SYN-ACK of their host is in), and ModelServer ports
(cross_reference tries names one port leaked on the host's other ports), which are few.
"""

from __future__ import annotations

import asyncio
import json
import signal
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

from netaudit.core.bounds import bound_endpoint
from netaudit.discovery.engines import ENGINES, DiscoveryOptions, PortResult
from netaudit.core.faults import CURRENT, Step, budget as fingerprint_budget, probe_error
from netaudit.core.model import Endpoint, ScanResult, endpoint_order
from netaudit.discovery.portstates import answered_by, received, target_ttls
from netaudit.probes.base import ProbeContext
from netaudit.probes.common import BUILTIN_MODEL_NAMES
from netaudit.policy.assessor import Assessed, Assessor
from netaudit.probes.transport.tls import TlsOptions
from netaudit.scanner.progress import Progress
from netaudit.targets.parse import TargetSet


class Sink(Protocol):
    """Where a scan puts its assessed endpoints (results.stream.StreamWriter writes them as JSON lines)."""

    def begin(self, result: ScanResult) -> None: ...

    def endpoint(self, assessed: Assessed) -> None: ...


# Endpoints fingerprinted at once. More in flight means more calls answered per event-loop turn on both
# sides: on 16,384 real TF endpoints 32 took 24.3 s, 128 took 21.6 s and 256 20.8 s (docs/benchmarks.md);
# each in flight holds its connections and at most a few hundred KiB of replies (netaudit/core/caps.py).
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


class Collector:
    """The sink of scan() when its caller gives none: every endpoint kept in the result, sorted, with its
    findings, for a library caller or a test that wants the result as objects."""

    def __init__(self) -> None:
        self.items: list[Assessed] = []

    def begin(self, result: ScanResult) -> None:
        pass

    def endpoint(self, assessed: Assessed) -> None:
        self.items.append(assessed)

    def fill(self, result: ScanResult) -> None:
        self.items.sort(key=lambda item: endpoint_order(item.endpoint.host, item.endpoint.port))
        result.endpoints = [item.endpoint for item in self.items]
        result.findings = [f for item in self.items for f in item.findings]
        result.expected_unreachable += [row for item in self.items for row in item.unreachable]


class _Run:
    """One scan's moving parts. Discovery reports each port as it is settled; an open one is fingerprinted at
    once, and every endpoint is assessed and handed to the sink when nothing more can change it:

    - an open port when its fingerprint is done, unless it asks for model names (a ModelServer), which waits
      for cross_reference, at the end, to try the names the host's other ports leaked;
    - a port that is not open when discovery ends: who answered it is known only once every SYN-ACK of its
      host is in.
    """

    def __init__(self, targets: TargetSet, opts: ScanOptions, result: ScanResult, progress: Progress, sink: Sink,
                 assessor: Assessor):
        self.targets, self.opts, self.result, self.progress = targets, opts, result, progress
        self.sink, self.assessor = sink, assessor
        self.engine = ENGINES[opts.engine]
        self.probe_slots = asyncio.Semaphore(opts.probe_concurrency)
        self.ctx = ProbeContext(tuple(dict.fromkeys(BUILTIN_MODEL_NAMES + opts.extra_model_names)), opts.retries)
        self.seconds = fingerprint_budget(opts.timeout, opts.retries)
        self.pending: set[asyncio.Task] = set()
        self.probing: dict[int, Endpoint] = {}  # being fingerprinted: handed on as they are if the scan stops
        self.unsettled: list[Endpoint] = []  # not open, until discovery ends
        self.waiting: list[Endpoint] = []  # open and fingerprinted, until cross_reference
        self.ttls: dict[str, int] = {}  # per host, its SYN-ACKs' lowest TTL so far: who answered
        self.local: frozenset[str] = frozenset()  # this machine's source addresses, once discovery says them
        self.failed: list[BaseException] = []  # a probe task's own failure: the sink could not write its endpoint
        self.retried = self.errors = 0
        self.names: dict[str, set[str]] = {}  # per host, model names its handed-on endpoints leaked

    def hand_on(self, endpoint: Endpoint) -> None:
        attribute_replies([endpoint], self.engine.sees_packets, self.local, self.ttls)
        bound_endpoint(endpoint)
        leaked = set(endpoint.details.get("models", {})) | set(endpoint.details.get("metrics_model_names", []))
        if leaked:  # for cross_reference: a ModelServer port waits, the port that leaked names does not
            self.names.setdefault(endpoint.host, set()).update(leaked)
        self.retried += bool(endpoint.details.get("probe_retries"))
        self.errors += "probe_error" in endpoint.details
        self.sink.endpoint(self.assessor.assess(endpoint, self.result))

    async def probe_open(self, endpoint: Endpoint) -> None:
        # Imported on the first open port: grpc stays out of a sweep that finds nothing, and discovery's
        # worker processes are forked before grpc is loaded.
        from netaudit.fingerprint.runner import asks_for_models, fingerprint
        from netaudit.transport.rpc import hold_aio_engine

        hold_aio_engine()
        async with self.probe_slots:
            await isolated(endpoint, fingerprint(endpoint, self.opts.timeout, self.ctx, self.opts.tls), self.seconds,
                           "sniff")
        self.progress.fingerprinted(endpoint)
        del self.probing[id(endpoint)]
        if asks_for_models(endpoint):
            self.waiting.append(endpoint)
        else:
            self.hand_on(endpoint)

    def settled(self, task: asyncio.Task) -> None:
        self.pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.failed.append(task.exception())

    def on_result(self, found: PortResult) -> None:
        sends = self.engine.sends
        rtt = f" in {found.rtt_ms:.1f} ms" if found.rtt_ms is not None else ""
        note = f" ({found.note})" if found.note else ""
        endpoint = Endpoint(found.host, found.port, found.state,
                            evidence=[f"{sends} to {found.host} port {found.port}: "
                                      f"{received(found.reason, found.responder)}{rtt}{note}"])
        endpoint.details["discovery"] = {"engine": self.engine.name, "sent": sends, "reason": found.reason,
                                         "received": received(found.reason, found.responder), "ttl": found.ttl,
                                         "responder": found.responder}
        if found.block.ports is not None:
            endpoint.details["discovery"]["port_named"] = True
        if found.block.name:
            endpoint.details["target_name"] = found.block.name
        if found.block.identity:
            endpoint.details["k8s"] = json.loads(found.block.identity)
        if found.state != "open":
            self.unsettled.append(endpoint)
            return
        if found.reason == "syn-ack" and found.ttl is not None:
            self.ttls[found.host] = min(self.ttls.get(found.host, 255), found.ttl)
        self.probing[id(endpoint)] = endpoint
        task = asyncio.create_task(self.probe_open(endpoint))
        self.pending.add(task)
        task.add_done_callback(self.settled)

    async def run(self) -> None:
        result = self.result
        try:
            stats = await self.engine.run(self.targets, self.opts.discovery, self.on_result, self.progress.discovered)
            result.stats.update({"engine": self.opts.engine, "probes": stats.probes, "retried": stats.retried,
                                 "states": dict(stats.states), "discovery_seconds": round(stats.seconds, 3),
                                 "source_addresses": sorted(stats.sources)})
            result.port_states = stats.summary.to_json()
            self.local = frozenset(stats.sources)
            unsettled, self.unsettled = self.unsettled, []
            for endpoint in unsettled:
                self.hand_on(endpoint)
            await asyncio.gather(*self.pending)
            if self.failed:
                raise self.failed[0]
            if self.waiting:
                from netaudit.fingerprint.runner import cross_reference

                await cross_reference(self.waiting, self.opts.timeout, self.ctx,
                                      lambda ep, work: isolated(ep, work, self.seconds, "cross-reference"),
                                      self.names)
        finally:
            for task in list(self.pending):
                task.cancel()
            await asyncio.gather(*self.pending, return_exceptions=True)  # cancelled probes close their channels
            held, self.waiting = self.unsettled + self.waiting + list(self.probing.values()), []
            self.unsettled, self.probing = [], {}
            for endpoint in sorted(held, key=lambda e: endpoint_order(e.host, e.port)):
                self.hand_on(endpoint)


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
                     sink: Sink | None = None, assessor: Assessor | None = None) -> ScanResult:
    """The scan, each endpoint assessed (`assessor`: the rules, and the policy when it has one) and handed to
    `sink` as soon as it is finished. Without a sink the result holds every endpoint and finding; with one it
    holds none of them (they are in the sink) and says only how the scan went."""
    progress = progress or Progress(total=targets.probe_count())
    assessor = assessor or Assessor()
    collector = Collector() if sink is None else None
    result = ScanResult(vantage=opts.vantage, started=now(), options=scan_options(targets, opts))
    assessor.begin(result)
    run = _Run(targets, opts, result, progress, sink or collector, assessor)
    run.sink.begin(result)
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
        await run.run()
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
    result.stats.update(probe_retried=run.retried, fingerprint_budget_seconds=run.seconds, probe_errors=run.errors)
    if collector is not None:
        collector.fill(result)
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
         sink: Sink | None = None, assessor: Assessor | None = None) -> ScanResult:
    return asyncio.run(scan_async(targets, opts or ScanOptions(), progress, sink, assessor))
