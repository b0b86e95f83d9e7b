"""Maintainer script: measure which gRPC methods every tensorflow-cpu release registers, and how it answers
the safe RPCs, and write the rows into netaudit/data/tf_release_markers.json (not run by CI).

For each release (the newest patch of every minor from 2.12 that pip can install for this Python) it
creates a venv under bench/.tf-venvs/ (inside the tree, gitignored), installs tensorflow-cpu there, starts
real servers with lab/tf_task.py on loopback ports it picked (a plain tf.distribute.Server, and a 2-worker
MultiWorkerMirroredStrategy cluster whose worker 0 runs the coordination service), and probes them through
netaudit's own RpcSession, so every request passes netaudit/transport/safety.py: presence is tested with MALFORMED only.
The candidate methods are those of docs/wire-facts.md §1.2 plus every `/tensorflow.…Service/Method` string
found in the installed release's shared libraries (read offline from the venv).

    .venv/bin/python bench/tf_release_matrix.py                  # every minor 2.12 … newest
    .venv/bin/python bench/tf_release_matrix.py 2.14.1 2.16.2    # only these releases
    .venv/bin/python bench/tf_release_matrix.py --keep           # keep (and reuse) the venvs

Rows of releases not measured in this run are kept as they are (the `derived` rows for 1.x and 2.0-2.11).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import mmap
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netaudit.transport import protowire  # noqa: E402
from netaudit.lab.processes import LabError, free_port, spawn, stop, wait_ready  # noqa: E402
from netaudit.transport.safety import MALFORMED  # noqa: E402
from netaudit.transport.rpc import RpcSession  # noqa: E402

VENVS = ROOT / "bench" / ".tf-venvs"
DATA = ROOT / "netaudit" / "data" / "tf_release_markers.json"
TF_TASK = ROOT / "lab" / "tf_task.py"
FIRST_MINOR = 12

# docs/wire-facts.md §1.2: every method any release is known to register, plus the meta services.
CANDIDATES = tuple(
    [f"/tensorflow.MasterService/{m}" for m in (
        "CreateSession ExtendSession PartialRunSetup RunStep CloseSession ListDevices Reset MakeCallable "
        "RunCallable ReleaseCallable").split()]
    + [f"/tensorflow.WorkerService/{m}" for m in (
        "GetStatus CreateWorkerSession DeleteWorkerSession RegisterGraph DeregisterGraph RunGraph CleanupGraph "
        "CleanupAll RecvTensor RecvBuf Logging Tracing CompleteGroup CompleteInstance GetStepSequence "
        "MarkRecvFinished").split()]
    + [f"/tensorflow.eager.EagerService/{m}" for m in (
        "CreateContext UpdateContext Enqueue WaitQueueDone KeepAlive CloseContext RegisterFunction SendTensor "
        "RunComponentFunction").split()]
    + [f"/tensorflow.CoordinationService/{m}" for m in (
        "RegisterWorker RegisterTask Heartbeat WaitForAllTasks ShutdownTask ResetTask ReportErrorToAgent "
        "ReportErrorToTask ReportErrorToService InsertKeyValue GetKeyValue TryGetKeyValue GetKeyValueDir "
        "DeleteKeyValue Barrier CancelBarrier GetTaskState PollForError GetAliveTasks GetJobState WatchJobState "
        "IncrementKeyValue").split()]
    + [f"/tensorflow.ProfilerService/{m}" for m in (
        "Profile Terminate Monitor StartContinuousProfiling StopContinuousProfiling GetSnapshot").split()]
    + ["/grpc.health.v1.Health/Check"])
# Streaming methods: a unary call would start their handler before any message is parsed, so they are
# never sent anything.
STREAMING = frozenset({"/tensorflow.eager.EagerService/StreamingEnqueue", "/grpc.health.v1.Health/Watch"})
METHOD_STRING = re.compile(rb"/(tensorflow(?:\.[a-z_]+)*\.[A-Z][A-Za-z]*Service)/([A-Z][A-Za-z0-9]{2,60})\x00")

# docs/wire-facts.md §4: the read-only RPCs the scanner sends, and what it sends them.
SAFE_RPCS = (
    ("/tensorflow.WorkerService/GetStatus", b""),
    ("/tensorflow.eager.EagerService/KeepAlive", b""),
    ("/tensorflow.CoordinationService/Heartbeat", b""),
    ("/tensorflow.ProfilerService/Monitor", b""),
    ("/tensorflow.MasterService/ListDevices", MALFORMED),
    ("/grpc.health.v1.Health/Check", b""),
)
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
LIST_SERVICES = protowire.field(7, "")


def newest_patches() -> list[str]:
    """The newest installable tensorflow-cpu patch release of every minor from 2.12, as pip sees them."""
    out = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "tensorflow-cpu"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    listed = re.search(r"Available versions: (.*)", out)
    if not listed:
        raise SystemExit("pip index versions tensorflow-cpu listed no versions")
    best: dict[int, tuple[int, str]] = {}
    for version in listed[1].split(", "):
        parts = re.fullmatch(r"2\.(\d+)\.(\d+)", version.strip())
        if parts and int(parts[1]) >= FIRST_MINOR:
            minor, patch = int(parts[1]), int(parts[2])
            if minor not in best or patch > best[minor][0]:
                best[minor] = (patch, version.strip())
    return [best[m][1] for m in sorted(best)]


def install(version: str, keep: bool) -> tuple[Path, float]:
    venv = VENVS / f"tf-{version}"
    python = venv / "bin" / "python"
    started = time.perf_counter()
    if keep and python.exists() and _installed(python) == version:
        return python, 0.0
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                    "--no-warn-script-location", f"tensorflow-cpu=={version}"], check=True, timeout=3600)
    return python, time.perf_counter() - started


def _installed(python: Path) -> str | None:
    done = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('tensorflow-cpu'))"],
                          capture_output=True, text=True, timeout=60)
    return done.stdout.strip() if done.returncode == 0 else None


def library_methods(python: Path) -> set[str]:
    """Every `/tensorflow.…Service/Method` string in the release's shared libraries (read, not loaded)."""
    site = next((python.parent.parent / "lib").glob("python3*/site-packages"))
    found: set[str] = set()
    for lib in sorted((site / "tensorflow").rglob("*.so*")):
        if lib.stat().st_size == 0:
            continue
        with open(lib, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            found.update(f"/{m[1].decode()}/{m[2].decode()}" for m in METHOD_STRING.finditer(data))
    return found


def settings_frame(port: int) -> str:
    """The bytes the server sends on connect before the client says anything (its HTTP/2 SETTINGS)."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.settimeout(1.0)
        data = b""
        try:
            while len(data) < 256:
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            pass
    return data.hex()


def fields(body: bytes) -> list[int]:
    try:
        return sorted({number for number in protowire.decode(body).values})
    except protowire.DecodeError:
        return []


async def probe(port: int, methods: list[str]) -> dict:
    session = RpcSession(f"127.0.0.1:{port}", timeout=5.0)
    try:
        if not await session.ready():
            raise LabError(f"no gRPC channel to 127.0.0.1:{port}")
        registered = {}
        for method in methods:
            reply = await session.unary(method, MALFORMED)
            registered[method] = {"registered": reply.registered, "code": reply.code, "details": reply.details}
        replies = {}
        for method, request in SAFE_RPCS:
            reply = await session.unary(method, request)
            entry = {"request": "malformed" if request == MALFORMED else "empty", "code": reply.code,
                     "details": reply.details, "fields": fields(reply.body)}
            if method.endswith("/GetStatus") and reply.ok:
                devices = protowire.decode(reply.body).messages(1)
                entry["device_fields"] = sorted({n for d in devices for n in d.values})
            replies[method] = entry
        reflection = await session.stream_first(REFLECTION, LIST_SERVICES)
        replies[REFLECTION] = {"request": "list_services", "code": reflection.code, "details": reflection.details}
        return {"methods": registered, "replies": replies}
    finally:
        await session.close()


def run_servers(python: Path, methods: list[str], work: Path) -> dict:
    """A plain server, then a 2-worker MultiWorkerMirroredStrategy cluster (worker 0 leads coordination)."""
    results = {}
    for mode, workers in (("plain", 1), ("leader", 2)):
        ports = [free_port() for _ in range(workers)]
        cluster = json.dumps({"worker": [f"localhost:{p}" for p in ports]})
        procs = [spawn(f"{mode}-{task}", [str(python), str(TF_TASK), "--cluster", cluster, "--job", "worker",
                                          "--task", str(task), "--mode", "server" if mode == "plain" else "mwms"],
                       work) for task in range(workers)]
        try:
            wait_ready(procs, time.monotonic() + 300)
            result = asyncio.run(probe(ports[0], methods))
            result["settings_frame"] = settings_frame(ports[0])
            results[mode] = result
        finally:
            stop(procs)
    return results


def measure(version: str, keep: bool) -> dict:
    python, install_seconds = install(version, keep)
    try:
        found = library_methods(python)
        methods = sorted((set(CANDIDATES) | found) - STREAMING)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=VENVS) as work:
            servers = run_servers(python, methods, Path(work))
        plain = servers["plain"]
        return {
            "release": ".".join(version.split(".")[:2]),
            "source": "measured",
            "note": f"measured on tensorflow-cpu {version} ({date.today().isoformat()}, Python "
                    f"{sys.version_info.major}.{sys.version_info.minor})",
            "methods": {m: plain["methods"][m]["registered"] for m in methods},
            "library_methods": sorted(found),
            "replies": {mode: servers[mode]["replies"] for mode in servers},
            "leader_methods_differ": sorted(m for m in methods if servers["leader"]["methods"][m]["registered"]
                                            != plain["methods"][m]["registered"]),
            "settings_frame": plain["settings_frame"],
            "seconds": {"install": round(install_seconds, 1), "measure": round(time.perf_counter() - started, 1)},
        }
    finally:
        if not keep:
            shutil.rmtree(python.parent.parent, ignore_errors=True)


def release_key(row: dict) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", row["release"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("versions", nargs="*", help="tensorflow-cpu versions (default: newest patch of every minor)")
    parser.add_argument("--keep", action="store_true", help="keep the venvs in bench/.tf-venvs and reuse them")
    args = parser.parse_args()
    versions = args.versions or newest_patches()
    VENVS.mkdir(parents=True, exist_ok=True)
    for version in versions:
        print(f"tensorflow-cpu {version}: installing and measuring …", flush=True)
        try:
            row = measure(version, args.keep)
        except (subprocess.SubprocessError, LabError, OSError) as exc:
            print(f"tensorflow-cpu {version}: failed: {exc}", flush=True)
            continue
        data = json.loads(DATA.read_text()) if DATA.exists() else {"releases": []}
        data["releases"] = sorted([r for r in data["releases"] if r["release"] != row["release"]] + [row],
                                  key=release_key)
        DATA.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
        registered = sum(row["methods"].values())
        print(f"tensorflow-cpu {version}: {registered} of {len(row['methods'])} methods registered; "
              f"install {row['seconds']['install']} s, measure {row['seconds']['measure']} s", flush=True)
    if not args.keep and VENVS.exists() and not any(VENVS.iterdir()):
        VENVS.rmdir()


if __name__ == "__main__":
    main()
