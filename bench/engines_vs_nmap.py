"""Benchmark: netaudit's engines against nmap on the same targets, in one run: `--engine connect` against
`nmap -sT -n -Pn -T4`, `--engine syn` against `nmap -sS -n -Pn -T4`.

Runs as root. A fresh network namespace gets `ip route add local 198.18.0.0/20 dev lo`, so every one of
the 4096 addresses answers (a RST for a closed port); both tools sweep the `tf` port set there. With
--mixed the set holds all three verdicts: a listener makes port 8500 open on 16 addresses, and an
nftables table in the namespace silently drops one /24 and rejects another with ICMP admin-prohibited
(filtered). Also prints `netaudit --help` cold start and the scan's peak RSS. Nothing leaves the namespace.

    python bench/engines_vs_nmap.py [--engine connect|syn] [--cidr 198.18.0.0/20] [--repeat 3] [--mixed]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netaudit.lab.netns import Netns  # noqa: E402
from netaudit.targets.parse import named_port_sets  # noqa: E402


def timed(ns: Netns, argv: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in MB (GNU time) and stdout of one command inside the namespace."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as rss:
        started = time.perf_counter()
        proc = ns.run("/usr/bin/time", "-f", "%M", "-o", rss.name, *argv, timeout=1800)
        seconds = time.perf_counter() - started
        kb = int(rss.read().strip().splitlines()[-1])
    return seconds, kb // 1024, proc.stdout


def nmap_counts(xml_text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for host in ET.fromstring(xml_text).iter("host"):
        for extra in host.iter("extraports"):
            counts[extra.get("state")] = counts.get(extra.get("state"), 0) + int(extra.get("count"))
        for port in host.iter("port"):
            state = port.find("state").get("state")
            counts[state] = counts.get(state, 0) + 1
    return counts


MIXED_OPEN_PORT, MIXED_OPEN = 8500, 16
MIXED_FIREWALL = """table inet bench {
    chain input {
        type filter hook input priority 0; policy accept;
        ip daddr 198.18.8.0/24 tcp flags syn drop
        ip daddr 198.18.9.0/24 tcp flags syn reject with icmpx admin-prohibited
    }
}
"""
# A connect() scan cannot see "filtered": the kernel reports a drop as a timeout and admin-prohibited as
# EHOSTUNREACH, so netaudit's connect engine says "undetermined" (with that reason) where nmap says filtered.
CONNECT_AS_NMAP = {"undetermined": "filtered"}


def mixed(ns: Netns) -> subprocess.Popen:
    """Port 8500 open on the first 16 addresses (each then fingerprinted by netaudit, as it would be in a
    real scan), two /24s filtered: one dropped, one rejected."""
    ns.nft(MIXED_FIREWALL)
    listener = ns.popen(sys.executable, "-c", LISTENER, stdout=subprocess.PIPE, text=True)
    assert "READY" in listener.stdout.readline()
    return listener


LISTENER = f"""import selectors, socket
sel = selectors.DefaultSelector()
for i in range(1, {MIXED_OPEN} + 1):
    sel.register(socket.create_server(("198.18.0." + str(i), {MIXED_OPEN_PORT})), selectors.EVENT_READ)
print("READY", flush=True)
while True:
    for key, _ in sel.select():
        key.fileobj.accept()[0].close()
"""


def cold_start(runs: int = 10) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "netaudit", "--help"], capture_output=True, check=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cidr", default="198.18.0.0/20")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=512)
    parser.add_argument("--engine", choices=["connect", "syn"], default="connect")
    parser.add_argument("--mixed", action="store_true", help="open, closed and filtered ports, not only closed")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root for the network namespace")
    ports = named_port_sets()["tf"]
    port_list = ",".join(map(str, ports))
    with Netns("bench") as ns:
        ns.add_local_route(args.cidr)
        listener = mixed(ns) if args.mixed else None
        rows = {"netaudit": [], "nmap": []}
        for _ in range(args.repeat):
            secs, rss, out = timed(ns, [sys.executable, "-m", "netaudit", "scan", args.cidr, "--scope", args.cidr,
                                        "-p", "tf", "--engine", args.engine, "--concurrency", str(args.concurrency),
                                        "--format", "json", "--no-history"])
            data = json.loads(out)
            rows["netaudit"].append((secs, rss, data["stats"]["states"]))
            technique = "-sS" if args.engine == "syn" else "-sT"
            secs, rss, out = timed(ns, ["nmap", technique, "-n", "-Pn", "-T4", "-p", port_list, args.cidr, "-oX", "-"])
            rows["nmap"].append((secs, rss, nmap_counts(out)))
        if listener:
            listener.kill()
            listener.wait()
    help_s = cold_start()
    na = statistics.median(r[0] for r in rows["netaudit"])
    nm = statistics.median(r[0] for r in rows["nmap"])
    probes = rows["netaudit"][0][2]
    shape = (f"port {MIXED_OPEN_PORT} open on {MIXED_OPEN} addresses, 198.18.8.0/24 dropped, 198.18.9.0/24 "
             "rejected (admin-prohibited), the rest closed (RST)") if args.mixed else "closed ports answer RST"
    print(f"targets: {args.cidr} x {len(ports)} tf ports = {sum(probes.values())} probes, every address local "
          f"({shape}); {args.repeat} runs each, medians")
    print(f"engine: netaudit --engine {args.engine} vs nmap {'-sS' if args.engine == 'syn' else '-sT'}")
    print(f"{'tool':10} {'seconds':>8} {'probes/s':>9} {'peak RSS MB':>12}  states")
    for tool, median in (("netaudit", na), ("nmap", nm)):
        rss = max(r[1] for r in rows[tool])
        states = rows[tool][-1][2]
        print(f"{tool:10} {median:8.2f} {sum(probes.values()) / median:9.0f} {rss:12d}  {states}")
    print(f"ratio nmap/netaudit: {nm / na:.2f}x  (>1 means netaudit is faster)")
    ours = dict(rows["netaudit"][-1][2])
    if args.engine == "connect":
        ours = {CONNECT_AS_NMAP.get(state, state): count for state, count in ours.items()}
        print("(connect engine: its 'undetermined' -- a timeout or EHOSTUNREACH -- is compared with nmap's "
              "'filtered')")
    print(f"same verdicts: {ours == rows['nmap'][-1][2]}")
    print(f"netaudit --help cold start: {help_s * 1000:.0f} ms (median of 10)")


if __name__ == "__main__":
    main()
