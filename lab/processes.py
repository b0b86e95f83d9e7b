"""Start lab processes, wait until they say READY, and make sure they die.

TF servers may keep serving after SIGTERM (measured on tensorflow-cpu 2.21.0, docs/wire-facts.md §5), so
stopping always ends in SIGKILL of the whole process group. A pid is only signalled if its start time
still matches the one recorded, so a stale state file can never kill an unrelated process that reused
the pid.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path


class LabError(RuntimeError):
    """The lab could not start or stop; the message says which process and shows its log."""


@dataclass
class LabProcess:
    name: str
    pid: int
    start_ticks: int
    log: str
    argv: list[str]
    ready_marker: str = "READY"
    # A lab can do without it: when it fails to start, the lab goes on without it and says so (Triton's
    # Python backend sometimes loses its model process on a loaded machine).
    optional: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


LAB_PORTS = range(20000, 32768)  # below Linux's default ephemeral range, 32768-60999
_handed_out: set[int] = set()  # a port given once is not given again by this process, bound yet or not


def _ephemeral() -> range:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return range(32768, 61000)
    return range(low, high + 1)


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on every interface (TF binds 0.0.0.0), for lab servers to bind.

    Not from the ephemeral range: a port the kernel hands out there is free only until some connection takes
    it as its source port, and then the lab server's bind fails (EADDRINUSE, in CI while other tests scanned).
    Each candidate is bound to check it is free; none is handed out twice by one process."""
    ephemeral = _ephemeral()
    candidates = [port for port in LAB_PORTS if port not in ephemeral and port not in _handed_out]
    random.SystemRandom().shuffle(candidates)
    held: list[socket.socket] = []
    try:
        for port in candidates:
            if len(held) == count:
                break
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                sock.close()
                continue
            held.append(sock)
        if len(held) < count and _handed_out:  # a long-lived process went round: ports of labs long gone
            _handed_out.clear()
            return free_ports(count)
        if len(held) < count:
            raise LabError(f"only {len(held)} of {count} ports free in {LAB_PORTS.start}-{LAB_PORTS.stop - 1} "
                           "outside the ephemeral range")
        ports = [sock.getsockname()[1] for sock in held]
        _handed_out.update(ports)
        return ports
    finally:
        for sock in held:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks, or None when it is gone (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else int(fields[19])


def alive(proc: LabProcess) -> bool:
    return start_ticks(proc.pid) == proc.start_ticks


def lab_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "grpc_proxy")}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"})
    return env


def module_argv(module: str, *args: str) -> list[str]:
    """-P: the lab runs from any folder. Without it, `python -m` puts the working directory first on
    sys.path, and a checkout's own `netaudit/` folder (which has no `lab/`) would shadow the installed
    package."""
    return [sys.executable, "-P", "-m", module, *args]


def spawn(name: str, argv: list[str], log_dir: Path, ready_marker: str = "READY", optional: bool = False) -> LabProcess:
    log = log_dir / f"{name}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=lab_env(), start_new_session=True)
    ticks = start_ticks(popen.pid)
    return LabProcess(name, popen.pid, ticks or 0, str(log), argv, ready_marker, optional)


ERROR_LINE = re.compile(r"error|exception|failed|fatal|abort|corrupt|denied|in use|not found", re.IGNORECASE)


def failure_line(proc: LabProcess) -> str:
    """The one log line that says why a process ended: the last that names an error, else the last line.
    A traceback's frames and pybind11's "At:" come after the error, so the log's last line rarely says it."""
    try:
        text = [line.strip() for line in Path(proc.log).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return next((line for line in reversed(text) if ERROR_LINE.search(line)), text[-1] if text else "(empty log)")


def log_tail(proc: LabProcess, lines: int = 15) -> str:
    try:
        text = Path(proc.log).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text[-lines:])


def _ready(proc: LabProcess) -> bool:
    """READY-style markers are read from the log; "port:N" means the process accepts on 127.0.0.1:N."""
    if proc.ready_marker.startswith("port:"):
        try:
            socket.create_connection(("127.0.0.1", int(proc.ready_marker[5:])), timeout=0.5).close()
            return True
        except OSError:
            return False
    return proc.ready_marker in Path(proc.log).read_text(errors="replace")


def wait_ready(procs: list[LabProcess], deadline: float) -> dict[str, str]:
    """Wait for every process's READY. A required one that exits or misses the deadline is an error; an
    optional one is given up on: returns {name: why} for those."""
    waiting = list(procs)
    given_up: dict[str, str] = {}
    while waiting:
        for proc in list(waiting):
            if _ready(proc):
                waiting.remove(proc)
            elif not alive(proc):
                if not proc.optional:
                    raise LabError(f"lab process {proc.name} exited during start-up; its log:\n{log_tail(proc)}")
                given_up[proc.name] = "exited during start-up"
                waiting.remove(proc)
        if waiting and time.monotonic() > deadline:
            required = [p for p in waiting if not p.optional]
            if required:
                names = ", ".join(p.name for p in required)
                raise LabError(f"lab processes not ready in time: {names}; last log:\n{log_tail(required[0])}")
            given_up.update((p.name, "not ready in time") for p in waiting)
            waiting = []
        time.sleep(0.2)
    return given_up


def _signal_group(proc: LabProcess, sig: signal.Signals) -> None:
    if not alive(proc):
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop(procs: list[LabProcess], grace: float = 3.0) -> list[str]:
    """SIGTERM, a short grace period, then SIGKILL. Returns the names that needed SIGKILL."""
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        for proc in procs:
            _reap(proc.pid)
        if not any(alive(p) for p in procs):
            return []
        time.sleep(0.1)
    killed = [p.name for p in procs if alive(p)]
    for proc in procs:
        _signal_group(proc, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(alive(p) for p in procs) and time.monotonic() < deadline:
        for proc in procs:
            _reap(proc.pid)
        time.sleep(0.05)
    still = [p.name for p in procs if alive(p)]
    if still:
        raise LabError(f"lab processes survived SIGKILL: {', '.join(still)}")
    return killed


def announce_when_listening(*ports: int, marker: str = "READY") -> None:
    """Print `marker` once every port accepts on 127.0.0.1 (of the process's own namespace), for servers
    whose start-up call blocks and whose log lines differ by release."""
    def watch() -> None:
        for port in ports:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    time.sleep(0.1)
        print(marker, flush=True)

    threading.Thread(target=watch, daemon=True).start()
