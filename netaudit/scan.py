"""One scan from one vantage: targets -> discovery -> fingerprint -> assess -> ScanResult.

Fingerprinting starts the moment discovery finds an open port, so a sweep and its probes overlap.
An interrupt or a spent time budget still returns everything gathered so far, marked incomplete.
Whatever one server sends stays with its endpoint (netaudit/faults.py): a probe that breaks or runs out
of its wall-clock budget leaves details.probe_error and what was proven before, and the scan goes on.
"""

from __future__ import annotations

import asyncio
import ipaddress
import signal
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .assess import assess
from .bounds import bound_endpoint
from .discovery import PortResult, connect_scan, nmap_scan, syn_scan
from .faults import CURRENT, Step, budget as fingerprint_budget, probe_error
from .model import Endpoint, ScanResult
from .probes.base import ProbeContext
from .probes.serving import BUILTIN_MODEL_NAMES
from .probes.tls import TlsOptions
from .progress import Progress
from .targets import TargetSet


EVIDENCE_PREFIX = {"connect": "TCP connect to", "syn": "raw SYN to", "nmap": "nmap probe of"}


@dataclass
class ScanOptions:
    timeout: float = 2.0
    concurrency: int = 512
    rate: float = 0
    retries: int = 1
    max_time: float | None = None
    vantage: str | None = None
    all_states: bool = False  # list closed/undetermined ports of swept ranges too, not only of host:port targets
    probe_concurrency: int = 32
    extra_model_names: tuple[str, ...] = ()
    engine: str = "connect"
    tls: TlsOptions = field(default_factory=TlsOptions)


async def isolated(endpoint: Endpoint, work, seconds: float, first_step: str) -> None:
    """Run one endpoint's probes: an exception or a spent budget becomes details.probe_error, what the
    probes already wrote into the endpoint stays. UnsafeCall is netaudit's own bug and propagates."""
    from .probes.safety import UnsafeCall

    step = Step(first_step)
    token = CURRENT.set(step)
    deadline = step.budget = asyncio.timeout(seconds)
    try:
        async with deadline:
            await work
    except UnsafeCall:
        raise
    except Exception as exc:  # anything a server can provoke, by design: the scan must go on
        if deadline.expired():
            endpoint.details["probe_error"] = probe_error(None, step.describe(),
                                                          f"the {seconds:g}s fingerprint budget was spent")
        else:
            endpoint.details["probe_error"] = probe_error(exc, step.describe())
        endpoint.evidence.append(f"probe stopped during {endpoint.details['probe_error']['during']}: "
                                 f"{endpoint.details['probe_error']['error']}: "
                                 f"{endpoint.details['probe_error']['message']}")
    finally:
        CURRENT.reset(token)


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _scan(targets: TargetSet, opts: ScanOptions, result: ScanResult, progress: Progress) -> None:
    probe_slots = asyncio.Semaphore(opts.probe_concurrency)
    ctx = ProbeContext(tuple(dict.fromkeys(BUILTIN_MODEL_NAMES + opts.extra_model_names)), opts.retries)
    pending: list[asyncio.Task] = []
    seconds = fingerprint_budget(opts.timeout, opts.retries)

    async def probe_open(found: PortResult, endpoint: Endpoint) -> None:
        # Imported on the first open port: grpc stays out of a sweep that finds nothing, and discovery's
        # worker processes are forked before grpc is loaded.
        from .fingerprint import fingerprint

        async with probe_slots:
            await isolated(endpoint, fingerprint(endpoint, opts.timeout, ctx, opts.tls), seconds, "sniff")
        progress.fingerprinted(endpoint)

    def on_result(found: PortResult) -> None:
        rtt = f" in {found.rtt_ms:.1f} ms" if found.rtt_ms is not None else ""
        endpoint = Endpoint(found.host, found.port, found.state,
                            evidence=[f"{EVIDENCE_PREFIX[opts.engine]} {found.host} port {found.port}: {found.reason}{rtt}"])
        if found.block.name:
            endpoint.details["target_name"] = found.block.name
        result.endpoints.append(endpoint)
        if found.state == "open":
            pending.append(asyncio.create_task(probe_open(found, endpoint)))

    if opts.engine == "syn":
        stats = await syn_scan(targets, timeout=opts.timeout, retries=opts.retries, rate=opts.rate,
                               report_all=opts.all_states, on_result=on_result, on_progress=progress.discovered)
    elif opts.engine == "nmap":
        stats = await nmap_scan(targets, timeout=opts.timeout, retries=opts.retries, rate=opts.rate,
                                report_all=opts.all_states, on_result=on_result, on_progress=progress.discovered)
    else:
        stats = await connect_scan(targets, concurrency=opts.concurrency, rate=opts.rate, timeout=opts.timeout,
                                   retries=opts.retries, report_all=opts.all_states, on_result=on_result,
                                   on_progress=progress.discovered)
    result.stats.update({"engine": opts.engine, "probes": stats.probes, "retried": stats.retried,
                         "states": dict(stats.states), "discovery_seconds": round(stats.seconds, 3),
                         "source_addresses": sorted(stats.sources)})
    try:
        await asyncio.gather(*pending)
    finally:
        for task in pending:
            task.cancel()
    if pending:
        from .fingerprint import cross_reference

        await cross_reference(result.endpoints, opts.timeout, ctx,
                              lambda ep, work: isolated(ep, work, seconds, "cross-reference"))
    result.stats["probe_retried"] = sum(1 for e in result.endpoints if e.details.get("probe_retries"))
    result.stats["fingerprint_budget_seconds"] = seconds


async def scan_async(targets: TargetSet, opts: ScanOptions, progress: Progress | None = None) -> ScanResult:
    progress = progress or Progress(total=targets.probe_count())
    result = ScanResult(vantage=opts.vantage, started=now())
    result.options = {"engine": opts.engine, "ports": list(targets.ports), "targets": [b.spec for b in targets.blocks],
                      "timeout": opts.timeout, "concurrency": opts.concurrency, "rate": opts.rate}
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
    budget = loop.call_later(opts.max_time, stop, f"time budget of {opts.max_time:g}s spent") \
        if opts.max_time else None
    try:
        await _scan(targets, opts, result, progress)
        result.complete = True
    except asyncio.CancelledError:
        if not stopped:
            raise
        result.stats["incomplete_reason"] = stopped[0]
        task.uncancel()
    finally:
        if budget:
            budget.cancel()
        for sig in handled:
            loop.remove_signal_handler(sig)
        progress.done()
    result.endpoints.sort(key=lambda e: (ipaddress.ip_address(e.host).version, ipaddress.ip_address(e.host), e.port))
    for endpoint in result.endpoints:
        bound_endpoint(endpoint)
    result.stats["probe_errors"] = sum(1 for e in result.endpoints if "probe_error" in e.details)
    result.findings = assess(result.endpoints)
    result.finished = now()
    return result


def scan(targets: TargetSet, opts: ScanOptions | None = None, progress: Progress | None = None) -> ScanResult:
    return asyncio.run(scan_async(targets, opts or ScanOptions(), progress))
