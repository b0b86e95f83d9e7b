"""Benchmark: netaudit against thousands of real TF endpoints, next to nmap -sT discovery of the same targets.

One real tf.distribute.Server answers on every address of 198.18.0.0/18 inside a network namespace
(`ip route add local 198.18.0.0/18 dev lo`), so a /22, /20 and /18 hold 1024, 4096 and 16,384 real TF
endpoints. For each size it prints, all measured in this one run: wall time, peak RSS of the netaudit
process (wait4's ru_maxrss), output bytes, the ratio to `nmap -sT -p 2222` of the same CIDR (its fastest of
three runs), and the CPU seconds of netaudit, of the TF server answering it and of nmap (they share the
cores). Each size runs every format given (default json, jsonl, html and sarif: each is written from the one
assessed stream, jsonl as it goes and the others from its spool afterwards), with the engine named on the
command line (as root netaudit defaults to syn), once in one process and once with `--workers` (default 2:
the processes share the cores with the TF server). Each jsonl stream is then converted to json (`netaudit
convert`), with its own row. Peak RSS is the largest of
netaudit's processes (wait4's ru_maxrss); "all processes" is the peak of their summed PSS, sampled every
50 ms, which counts a page forked workers share once.

    sudo python bench/scale.py [--sizes 1024,4096,16384] [--engine connect] [--formats json,jsonl,html,sarif]
                               [--workers 1,2]

Needs root (a namespace), nmap, and the lab extra (tensorflow). Leaves nothing behind.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netaudit.lab.netns import Netns  # noqa: E402

PREFIX = {1024: 22, 4096: 20, 16384: 18}
NMAP_RUNS = 3


@dataclass
class Run:
    seconds: float
    rss: int  # peak, bytes, of the largest process
    pss: int  # peak of the summed PSS of the process and its descendants, bytes
    code: int
    cpu: float  # the process's own user + system seconds
    server_cpu: float  # the TF server's user + system seconds during the run


def cpu_seconds(pid: int) -> float:
    """User + system seconds of a running process (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_pss(pid: int) -> int:
    """Proportional set size of a process and its descendants (scan --workers forks; ru_maxrss is the
    largest process, and summing RSS would count the pages the workers share with their parent N times)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
        except OSError:
            continue
        total += next(int(line.split()[1]) * 1024 for line in rollup.splitlines() if line.startswith("Pss:"))
    return total


def measure(ns: Netns, argv: list[str], server_pid: int) -> Run:
    """One process run inside the namespace (ip netns exec execs it, so the pid waited for is the process
    itself), with what the TF server spent answering it: both share the machine's cores, so the split
    says which side a faster scan must come from."""
    server_before = cpu_seconds(server_pid)
    started = time.perf_counter()
    proc = subprocess.Popen(ns.argv(*argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], tree_pss(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):
        sys.stderr.write(proc.stderr.read().decode(errors="replace"))
    proc.stderr.close()
    return Run(seconds, usage.ru_maxrss * 1024, peak[0], proc.returncode, usage.ru_utime + usage.ru_stime,
               cpu_seconds(server_pid) - server_before)


def convert_row(ns: Netns, stream: Path, size: int, server_pid: int) -> None:
    """`netaudit convert` of the stream just written, to JSON: it reads the stream into a spool a line at a
    time, so its peak should stay near the scan's own."""
    target = stream.with_name("converted.json")
    run = measure(ns, [sys.executable, "-m", "netaudit", "convert", str(stream), "--format", "json", "-o", str(target)],
                  server_pid)
    print(f"{size:>9}  convert jsonl ({stream.stat().st_size / 1e6:.1f}MB) to json: {run.seconds:.1f}s, peak RSS "
          f"{run.rss / 1e6:.0f}MB, output {target.stat().st_size / 1e6 if target.exists() else 0:.1f}MB"
          + ("" if run.code in (0, 1) else f"  (exit {run.code})"), flush=True)
    target.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1024,4096,16384", help="endpoint counts, from 1024, 4096, 16384")
    parser.add_argument("--engine", default="connect", choices=["connect", "syn"])
    parser.add_argument("--formats", default="json,jsonl,html,sarif")
    parser.add_argument("--workers", default="1,2", help="scan --workers counts to run each format with")
    args = parser.parse_args()
    if os.geteuid() != 0 or not shutil.which("nmap"):
        sys.exit("bench/scale.py needs root (a network namespace) and nmap")
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"netaudit scan CIDR -p 2222 --engine {args.engine} --no-history; nmap -sT -n -Pn -T4 -p 2222 CIDR "
          f"(fastest of {NMAP_RUNS}); "
          f"{os.cpu_count()} cores")
    print(f"{'endpoints':>9}  {'format':<6} {'workers':>7} {'netaudit':>9} {'peak RSS':>9} {'all (PSS)':>9} {'output':>9} {'per endpoint':>12}  "
          f"{'nmap -sT':>8} {'ratio':>6}  {'netaudit CPU':>12} {'server CPU':>10} {'nmap CPU':>8} "
          f"{'server CPU for nmap':>19}")
    with Netns(prefix="bench") as ns, tempfile.TemporaryDirectory() as tmp:
        ns.add_local_route("198.18.0.0/18")
        server = ns.popen(sys.executable, "-m", "netaudit.lab.tf_task", "--cluster", '{"worker": ["localhost:2222"]}',
                          "--job", "worker", "--task", "0", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True)
        try:
            if not server.stdout.readline().startswith("READY"):
                sys.exit("the TF server did not start")
            for size in sizes:
                cidr = f"198.18.0.0/{PREFIX[size]}"
                # nmap's time moves between runs (0.11-0.25 s for the /20): its best of NMAP_RUNS is the peer.
                nmap_argv = ["nmap", "-sT", "-n", "-Pn", "-T4", "-p", "2222", "-oX", str(Path(tmp) / "nmap.xml"), cidr]
                nmap = min((measure(ns, nmap_argv, server.pid) for _ in range(NMAP_RUNS)), key=lambda run: run.seconds)
                for fmt, workers in [(f, w) for f in args.formats.split(",") for w in args.workers.split(",")]:
                    out = Path(tmp) / f"scan.{fmt}"
                    run = measure(ns, [sys.executable, "-m", "netaudit", "scan", cidr, "-p", "2222",
                                       "--scope", "198.18.0.0/15", "--engine", args.engine, "--workers", workers,
                                       "--no-history", "--format", fmt, "-o", str(out)], server.pid)
                    size_bytes = out.stat().st_size if out.exists() else 0
                    print(f"{size:>9}  {fmt:<6} {workers:>7} {run.seconds:>8.1f}s {run.rss / 1e6:>7.0f}MB {run.pss / 1e6:>7.0f}MB {size_bytes / 1e6:>7.1f}MB "
                          f"{size_bytes / size / 1e3:>10.1f}KB  {nmap.seconds:>7.2f}s {run.seconds / nmap.seconds:>5.0f}x"
                          f"  {run.cpu:>11.1f}s {run.server_cpu:>9.1f}s {nmap.cpu:>7.2f}s {nmap.server_cpu:>18.2f}s"
                          + ("" if run.code in (0, 1) else f"  (exit {run.code})"), flush=True)
                    if fmt == "jsonl" and out.exists():
                        convert_row(ns, out, size, server.pid)
                    out.unlink(missing_ok=True)
        finally:
            server.kill()
            server.wait(10)


if __name__ == "__main__":
    main()
