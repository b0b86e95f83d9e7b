"""scan --workers N: one scan run as N local processes, their results written as one stream.

Fingerprinting is single-threaded Python (about a millisecond of CPU per TF endpoint, docs/benchmarks.md),
so a scanner host's other cores help only when the work is split. Each worker is a forked process that
scans the hosts whose address hash falls in its slice (targets.in_worker: every port of a host goes to one
worker, so its SYN-ACKs are compared and its model names cross-referenced as in one process) and streams
its endpoints to a file of its own. The parent copies each finished endpoint line into the one stream as
it appears, draws the progress of all of them, forwards an interrupt, and ends with a trailer whose counts
and completeness cover every worker. Connections at once, the connection rate and fingerprints at once
are totals shared among the workers, so the targets see the same load whatever N is.
"""

from __future__ import annotations

import ctypes
import functools
import json
import math
import multiprocessing
import os
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from typing import Any, BinaryIO

from netaudit.core.errors import UsageError
from netaudit.core.model import Endpoint, ScanResult
from netaudit.scanner.progress import Progress
from netaudit.scanner.scan import ScanOptions, now, scan, scan_options
from netaudit.policy.report import merge_parts
from netaudit.policy.assessor import Assessor
from netaudit.results.stream import StreamWriter
from netaudit.targets.parse import TargetSet

TICK = 0.2  # seconds between copying the workers' finished lines and redrawing progress
GRACE = 30.0  # seconds a worker has to write its trailer after an interrupt before it is killed
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 0x01, 0x02  # <linux/falloc.h>
PUNCH_UNIT = 256 << 10  # what the parent has copied is freed in steps of this many bytes
# Blocked while the parent forks a worker, and in the worker but while its scan has its own handlers in place
# (scan.scan_async): before them the child would run the parent's handler, which walks the parent's list of
# workers (a child may not test them: it died with a traceback), and after them nothing may stop the trailer.
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class WorkerError(Exception):
    """A worker stopped on an error of netaudit's own (main()'s exit 4), named as the worker saw it."""


class _Counted(Progress):
    """A worker's progress, counted into memory the parent reads and draws; found-server lines go to the
    terminal directly, whole, as one process's would."""

    def __init__(self, counts: Any, slot: int):
        super().__init__(total=0)
        self.counts, self.slot = counts, slot

    def discovered(self, done: int) -> None:
        self.counts[2 * self.slot] += done

    def fingerprinted(self, endpoint: Endpoint) -> None:
        self.counts[2 * self.slot + 1] += 1
        super().fingerprinted(endpoint)

    def _draw(self, force: bool = False) -> None:
        pass

    def done(self) -> None:
        pass


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, for the Linux calls the standard library lacks (prctl, fallocate); None elsewhere."""
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _die_with_parent(parent: int) -> None:
    """A worker whose parent is killed gets SIGTERM, stops its scan and writes its trailer, instead of
    scanning on unwatched (Linux; elsewhere it runs to the end of its slice)."""
    prctl = getattr(_libc(), "prctl", None)
    if prctl is None:
        return
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def _work(targets: TargetSet, opts: ScanOptions, options: dict[str, Any], assessor: Assessor, fd: int, counts: Any,
          slot: int, parent: int) -> None:
    """A worker's scan of its slice into its stream. Its stop signals are blocked (STOP_SIGNALS) but while
    its scan runs, so a stop ends the scan, never its start-up or its trailer. An error ends the stream
    with an error record, which the parent raises as its own: the scan fails as one process fails."""
    os.setpgrp()  # a terminal's Ctrl-C reaches the parent alone, which forwards it once
    # In a group of its own a worker is a background job to the terminal, which with `stty tostop` would
    # stop it (SIGTTOU) at its first "found" line, for good; ignored, the line is written as the parent's.
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    signal.signal(signal.SIGTSTP, signal.SIG_DFL)  # not the parent's suspend(): the parent stops workers itself
    with open(fd, "w", encoding="utf-8", closefd=False) as out:
        try:
            _die_with_parent(parent)
            writer = StreamWriter(out, options)
            result = scan(targets, opts, _Counted(counts, slot), sink=writer, assessor=assessor)
            writer.end(writer.summary(result))
        except Exception as exc:  # main() says it in one line (exit 2 or 4); the parent does, once
            if os.environ.get("NETAUDIT_DEBUG"):
                traceback.print_exc()
            out.write(json.dumps({"type": "error", "usage": isinstance(exc, UsageError),
                                  "error": type(exc).__name__, "message": str(exc)}) + "\n")
            out.flush()
            sys.exit(1)


@dataclass
class _Part:
    """One worker: its process, its stream, how far the parent has read it, and its trailer. The stream is
    a file without a name (O_TMPFILE), shared through fork: the worker writes at the file's offset, the
    parent reads at its own with pread, and nothing is left on disk however either of them ends. What the
    parent has copied is punched out of the file, so a long sweep holds no second copy of its output
    (on a tmpfs /tmp, that copy would be memory)."""

    index: int
    file: BinaryIO
    process: Any = None  # multiprocessing's Process of the fork context
    read: int = 0
    rest: bytes = b""
    trailer: dict[str, Any] | None = None
    error: dict[str, Any] | None = None  # the error record of a worker that failed
    told: bool = False  # the stop signal was forwarded to it (once)
    freed: int = 0  # bytes from the start of the file given back

    def tell(self, signum: int) -> None:
        """Forward the parent's stop signal, once: a second Ctrl-C could cut short the worker's cleanup."""
        if self.process is not None and not self.told and self.process.is_alive():
            self.told = True
            try:
                os.kill(self.process.pid, signum)
            except ProcessLookupError:
                pass

    def new_lines(self) -> list[bytes]:
        """Whole lines written since the last call; a line still being written waits for the next."""
        while chunk := os.pread(self.file.fileno(), 1 << 20, self.read):
            self.read += len(chunk)
            self.rest += chunk
        *lines, self.rest = self.rest.split(b"\n")
        if self.read - self.freed >= PUNCH_UNIT:
            self.freed = self.read - self.read % PUNCH_UNIT
            _punch(self.file.fileno(), self.freed)
        return lines


def _punch(fd: int, length: int) -> None:
    """Free the first `length` bytes of a file, keeping its size (Linux fallocate; a file system without
    holes keeps them, which costs disk, not results)."""
    fallocate = getattr(_libc(), "fallocate", None)
    if fallocate is None:
        return
    fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, length)


def _copy(parts: list[_Part], writer: StreamWriter) -> None:
    """Endpoint lines into the one stream, as they came; each worker's header stays behind (the stream has
    one, for the whole scan) and its trailer is kept for the merge."""
    for part in parts:
        for raw in part.new_lines():
            line = raw.decode("utf-8", errors="replace")
            if not line.strip():
                continue
            record = json.loads(line)
            if record["type"] == "endpoint":
                writer.copy(line, record)
            elif record["type"] == "trailer":
                part.trailer = record
            elif record["type"] == "error":
                part.error = record
    writer.flush()


def _share(opts: ScanOptions, count: int) -> ScanOptions:
    """One worker's part of the user's totals."""
    return replace(opts, concurrency=math.ceil(opts.concurrency / count),
                   probe_concurrency=math.ceil(opts.probe_concurrency / count), rate=opts.rate / count)


def run_workers(targets: TargetSet, opts: ScanOptions, count: int, writer: StreamWriter,
                assessor: Assessor | None = None) -> ScanResult:
    """Scan with `count` worker processes into `writer`, each assessing its endpoints with `assessor`; returns
    the result without endpoints (they are in the stream), ready for writer.summary() and writer.end(), as
    scan() with a sink returns it."""
    assessor = assessor or Assessor()
    ctx = multiprocessing.get_context("fork")  # before grpc is loaded, as discovery's sweep processes are
    counts = ctx.RawArray("q", 2 * count)
    result = ScanResult(vantage=opts.vantage, started=now(), options={**scan_options(targets, opts), "workers": count})
    assessor.begin(result)
    writer.begin(result)
    progress = Progress(total=targets.probe_count())
    stopped: list[tuple[float, int]] = []  # (when, signal) of the first stop signal, or of a worker's failure
    parts = [_Part(k, tempfile.TemporaryFile()) for k in range(1, count + 1)]

    def forward(signum: int, _frame: Any) -> None:
        if not stopped:
            stopped.append((time.monotonic(), signum))
        for part in parts:
            part.tell(stopped[0][1])

    def suspend(_signum: int, _frame: Any) -> None:
        """Ctrl-Z reaches the parent alone (the workers have process groups of their own): the workers
        stop with it and go on with it."""
        alive = [part.process.pid for part in parts if part.process is not None and part.process.is_alive()]
        for pid in alive:
            os.kill(pid, signal.SIGSTOP)
        # SIGSTOP, not the default action of SIGTSTP: the kernel discards SIGTSTP in an orphaned process group
        # (a scan started from a script or CI job that has gone), and the parent would never stop.
        os.kill(os.getpid(), signal.SIGSTOP)  # stopped here until SIGCONT (fg, bg)
        for pid in alive:
            os.kill(pid, signal.SIGCONT)

    previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
    previous[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, suspend)
    try:
        for part in parts:
            part.process = ctx.Process(target=_work, name=f"netaudit worker {part.index}/{count}",
                                       args=(replace(targets, worker=(part.index, count)), _share(opts, count),
                                             writer.options, assessor, part.file.fileno(),
                                             counts, part.index - 1, os.getpid()))
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            try:
                part.process.start()
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            if stopped:  # the interrupt came while the workers were starting
                part.tell(stopped[0][1])
        while any(part.process.is_alive() for part in parts):
            time.sleep(TICK)
            _copy(parts, writer)
            progress.update(sum(counts[0::2]), sum(counts[1::2]))
            if not stopped and any(part.error for part in parts):  # the scan has failed: stop the others
                forward(signal.SIGTERM, None)
            if stopped and time.monotonic() - stopped[0][0] > GRACE:
                for part in parts:
                    part.process.kill()
        for part in parts:
            part.process.join()
        _copy(parts, writer)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        progress.done()
        for part in parts:
            if part.process is not None and part.process.is_alive():
                part.process.kill()
                part.process.join()
            part.file.close()
    if failed := next((part for part in parts if part.error), None):
        message = f"worker {failed.index}/{count}: {failed.error['message']}"
        if failed.error["usage"]:
            raise UsageError(message)
        raise WorkerError(f"{failed.error['error']} in {message}")
    _merge(result, parts, writer)
    return result


def _merge(result: ScanResult, parts: list[_Part], writer: StreamWriter) -> None:
    """The workers' trailers as one result: complete only when every worker finished its slice."""
    trailers = [part.trailer for part in parts if part.trailer is not None]
    whole = merge_parts(trailers)
    result.stats, result.port_states = whole["stats"], whole["port_states"]
    writer.expected_unreachable += [row for t in trailers for row in t["expected_unreachable"]]
    unfinished = [part for part in parts if part.trailer is None]
    result.complete = not unfinished and whole["complete"]
    if unfinished and "incomplete_reason" not in result.stats:
        part = unfinished[0]
        result.stats["incomplete_reason"] = (f"worker {part.index}/{len(parts)} ended before finishing its slice "
                                             f"(exit code {part.process.exitcode})")
    result.finished = whole["finished"] or now()
