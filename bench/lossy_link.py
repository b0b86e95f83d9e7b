"""Benchmark: detection on a lossy, slow link, netaudit against nmap in the same run.

Runs as root. Two fresh namespaces joined by a veth pair: `scanner` and `far`, where every address of
198.18.64.0/26 is local (closed ports answer RST) and a real tf.distribute.Server listens on port 2222 of
all of them (it binds 0.0.0.0), so 64 ports are open and must be fingerprinted as tf-server. The scanner's link gets `netaudit.lab.impair` (tc netem, or the delay line where the
kernel has no netem): 10% loss each way and 200 ms delay by default. Both tools sweep the `tf` port set;
the figures that matter are how many ports each one gets right (open where the server listens, closed
elsewhere), how many of the open ones netaudit identifies as tf-server, and what that costs in time. Nothing leaves the namespaces.

    python bench/lossy_link.py [--loss 10] [--delay-ms 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engines_vs_nmap import nmap_counts, timed  # noqa: E402

from netaudit.lab.netns import Netns, ip_command  # noqa: E402
from netaudit.lab.processes import lab_env  # noqa: E402
from netaudit.targets.parse import named_port_sets  # noqa: E402

CIDR, TF_ADDRESS = "198.18.64.0/26", "198.18.64.1"
SCANNER_ADDRESS, GATEWAY = "198.18.65.2", "198.18.65.1"


def wait_for_line(proc: subprocess.Popen, marker: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if marker in line:
            return line.strip()
        if not line and proc.poll() is not None:
            sys.exit(f"bench: a helper exited before {marker!r}")
    sys.exit(f"bench: no {marker!r} within {timeout:g}s")


def link(scanner: Netns, far: Netns) -> None:
    ip_command("-n", scanner.name, "link", "add", "eth0", "type", "veth", "peer", "name", "up0", "netns", far.name)
    ip_command("-n", scanner.name, "addr", "add", f"{SCANNER_ADDRESS}/24", "dev", "eth0")
    ip_command("-n", scanner.name, "link", "set", "eth0", "up")
    ip_command("-n", scanner.name, "route", "add", "default", "via", GATEWAY)
    ip_command("-n", far.name, "addr", "add", f"{GATEWAY}/24", "dev", "up0")
    ip_command("-n", far.name, "link", "set", "up0", "up")
    far.add_local_route(CIDR)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loss", type=float, default=10.0)
    parser.add_argument("--delay-ms", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root for the network namespaces")
    ports = named_port_sets()["tf"]
    port_list = ",".join(map(str, ports))
    probes = 64 * len(ports)
    with Netns("bench-scan") as scanner, Netns("bench-far") as far:
        link(scanner, far)
        cluster = json.dumps({"worker": [f"{TF_ADDRESS}:2222"]})
        tf = far.popen(sys.executable, "-m", "netaudit.lab.tf_task", "--cluster", cluster, "--job", "worker",
                       "--task", "0", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=lab_env())
        impair = scanner.popen(sys.executable, "-m", "netaudit.lab.impair", "--loss", f"{args.loss:g}",
                               "--delay-ms", str(args.delay_ms), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
        try:
            wait_for_line(tf, "READY")
            how = wait_for_line(impair, "READY")[6:]
            rows: dict[str, list] = {"netaudit": [], "nmap": []}
            for _ in range(args.repeat):
                secs, _, out = timed(scanner, [sys.executable, "-m", "netaudit", "scan", CIDR, "--scope", CIDR, "-p",
                                               "tf", "--all-states", "--retries", "6", "--timeout", "1",
                                               "--format", "json", "--no-history"])
                data = json.loads(out)
                kinds = [e["kind"] for e in data["endpoints"] if e["state"] == "open"]
                rows["netaudit"].append((secs, data["stats"]["states"], data["stats"]["retried"], kinds))
                secs, _, out = timed(scanner, ["nmap", "-sT", "-n", "-Pn", "-T4", "--max-retries", "6", "-p",
                                               port_list, CIDR, "-oX", "-"])
                rows["nmap"].append((secs, nmap_counts(out), None, None))
        finally:
            impair.terminate()
            impair.wait(10)
            tf.kill()
    print(f"link: {how}")
    print(f"targets: {CIDR} x {len(ports)} tf ports = {probes} probes: 64 open (tf.distribute.Server on 2222), "
          f"{probes - 64} closed (RST); {args.repeat} runs each, medians")
    print(f"{'tool':10} {'seconds':>8}  {'states right':>12}  states per run")
    for tool, runs in rows.items():
        median = statistics.median(r[0] for r in runs)
        right = min(min(r[1].get("open", 0), 64) + min(r[1].get("closed", 0), probes - 64) for r in runs)
        print(f"{tool:10} {median:8.2f}  {right:>5}/{probes:<6}  {[r[1] for r in runs]}")
    identified = [sum(kind == "tf-server" for kind in r[3]) for r in rows["netaudit"]]
    print(f"netaudit: open ports identified as tf-server per run: {identified} of 64; "
          f"probes that needed retries per run: {[r[2] for r in rows['netaudit']]}")


if __name__ == "__main__":
    main()
