"""Benchmark: `netaudit scan --engine syn` against masscan and zmap on the same target set, in one run.

Runs as root. masscan and zmap write Ethernet frames with libpcap and do not work on `lo`, so two fresh
namespaces are joined by a veth link (netaudit.lab.veth): every address of --cidr is local on the target
side (a closed port answers RST), and the scanner side routes the block over the link. With the default
/20 and the `tf` ports: port 8500 is open on 16 addresses (a listener), an nftables table on the target
side silently drops SYNs to the block's 9th /24 and rejects those to its 10th with ICMP admin-prohibited
(filtered), and the rest is closed. Expected verdicts are known, so each tool's accuracy is printed next
to its speed.

How each tool is run, with the same 2 s wait for late answers:
- netaudit: `scan CIDR -p tf --engine syn --scope CIDR` (its defaults: no rate limit, one retry of
  unanswered probes, and the 16 open ports are fingerprinted as in a real scan; discovery time printed too).
- masscan: `--rate R --show closed --wait 2`, sending from an address the scanner's kernel does not own
  (so the kernel never resets masscan's SYN-ACKs) to the target side's MAC as `--router-mac`.
- zmap 2.1.1: one port per run, so one run per port (times summed), `-r R -c 2`, `-G` the target MAC,
  `-S` the scanner's own address, an empty `-b` blacklist; RST rows are kept with the classification field.
Silence is "filtered" for every tool; masscan and zmap do not read ICMP unreachables, netaudit does.

    python bench/syn_vs_masscan.py [--cidr 198.18.16.0/20] [--rate 100000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import csv
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engines_vs_nmap import timed  # noqa: E402

from netaudit.lab.veth import VethLab  # noqa: E402
from netaudit.targets.parse import named_port_sets  # noqa: E402

OPEN_PORT, OPEN_COUNT, WAIT = 8500, 16, 2
FIREWALL = """table inet bench {{
    chain input {{
        type filter hook input priority 0; policy accept;
        ip daddr {drop} tcp flags syn drop
        ip daddr {reject} tcp flags syn reject with icmpx admin-prohibited
    }}
}}
"""
LISTENER = """import selectors, socket, sys
sel = selectors.DefaultSelector()
for address in sys.argv[2:]:
    sel.register(socket.create_server((address, int(sys.argv[1]))), selectors.EVENT_READ)
print("READY", flush=True)
while True:
    for key, _ in sel.select():
        key.fileobj.accept()[0].close()
"""


def target_set(lab: VethLab, cidr: str) -> tuple[subprocess.Popen, Counter]:
    """Open, filtered and closed ports on the target side, and the verdict counts a perfect scanner gives."""
    net = ipaddress.ip_network(cidr)
    subnets = list(net.subnets(new_prefix=24))
    drop, reject = subnets[8], subnets[9]
    lab.serve_block(cidr)
    lab.target.nft(FIREWALL.format(drop=drop, reject=reject))
    opened = [str(net[i]) for i in range(1, OPEN_COUNT + 1)]
    listener = lab.target.popen(sys.executable, "-c", LISTENER, str(OPEN_PORT), *opened, stdout=subprocess.PIPE,
                                text=True)
    assert "READY" in listener.stdout.readline()
    ports = len(named_port_sets()["tf"])
    filtered = (drop.num_addresses + reject.num_addresses) * ports
    return listener, Counter(open=OPEN_COUNT, filtered=filtered, closed=net.num_addresses * ports - OPEN_COUNT - filtered)


def run_netaudit(lab: VethLab, cidr: str) -> tuple[float, int, Counter, float]:
    secs, rss, out = timed(lab.scanner, [sys.executable, "-m", "netaudit", "scan", cidr, "--scope", cidr, "-p", "tf",
                                         "--engine", "syn", "--timeout", str(WAIT), "--format", "json",
                                         "--no-history"])
    data = json.loads(out)
    return secs, rss, Counter(data["stats"]["states"]), data["stats"]["discovery_seconds"]


def run_masscan(lab: VethLab, cidr: str, rate: int, total: int) -> tuple[float, int, Counter]:
    ports = ",".join(map(str, named_port_sets()["tf"]))
    with tempfile.NamedTemporaryFile("r", suffix=".masscan") as out:
        secs, rss, _ = timed(lab.scanner, ["masscan", cidr, "-p", ports, "--rate", str(rate), "--show", "closed",
                                           "--wait", str(WAIT), "-e", lab.scanner_if, "--adapter-ip", lab.spare_ip,
                                           "--router-mac", lab.target_mac, "-oL", out.name])
        states = Counter(line.split()[0] for line in out if line.startswith(("open ", "closed ")))
    states["filtered"] = total - states["open"] - states["closed"]
    return secs, rss, states


def run_zmap(lab: VethLab, cidr: str, rate: int, total: int) -> tuple[float, int, Counter]:
    seconds, peak, states = 0.0, 0, Counter()
    with tempfile.TemporaryDirectory() as tmp:
        blacklist = Path(tmp, "blacklist.conf")
        blacklist.write_text("# empty: the default list excludes private ranges\n")
        for port in named_port_sets()["tf"]:
            out = Path(tmp, f"{port}.csv")
            secs, rss, _ = timed(lab.scanner, ["zmap", "-p", str(port), "-i", lab.scanner_if, "-S", lab.scanner_ip,
                                               "-G", lab.target_mac, "-b", str(blacklist), "-r", str(rate), "-c",
                                               str(WAIT), "-q", "-O", "csv", "-f", "saddr,classification,success",
                                               "-o", str(out), cidr])
            seconds, peak = seconds + secs, max(peak, rss)
            with out.open() as fh:
                for row in csv.DictReader(fh):
                    states["open" if row["classification"] == "synack" else "closed"] += 1
    states["filtered"] = total - states["open"] - states["closed"]
    return seconds, peak, states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cidr", default="198.18.16.0/20", help="at least a /22 (the 9th and 10th /24 are filtered)")
    parser.add_argument("--rate", type=int, default=100000, help="masscan --rate and zmap -r, packets/s")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root for the network namespaces")
    rows: dict[str, list[tuple[float, int, Counter]]] = {"netaudit syn": [], "masscan": [], "zmap": []}
    discovery: list[float] = []
    with VethLab() as lab:
        listener, expected = target_set(lab, args.cidr)
        total = sum(expected.values())
        try:
            for _ in range(args.repeat):
                secs, rss, states, disc = run_netaudit(lab, args.cidr)
                rows["netaudit syn"].append((secs, rss, states))
                discovery.append(disc)
                rows["masscan"].append(run_masscan(lab, args.cidr, args.rate, total))
                rows["zmap"].append(run_zmap(lab, args.cidr, args.rate, total))
        finally:
            listener.kill()
            listener.wait()
    ports = len(named_port_sets()["tf"])
    print(f"targets: {args.cidr} x {ports} tf ports = {total} probes over a veth link; expected "
          f"{expected['open']} open, {expected['closed']} closed, {expected['filtered']} filtered "
          f"(one /24 dropped, one rejected admin-prohibited); masscan/zmap at {args.rate} pps; "
          f"{args.repeat} run(s), medians")
    print(f"{'tool':13} {'seconds':>8} {'probes/s':>9} {'peak RSS MB':>12} {'open':>6} {'closed':>8} {'filtered':>9}"
          "  verdicts right")
    for tool, runs in rows.items():
        secs = statistics.median(r[0] for r in runs)
        states = runs[-1][2]
        wrong = sum(abs(states[s] - expected[s]) for s in expected) // 2
        print(f"{tool:13} {secs:8.2f} {total / secs:9.0f} {max(r[1] for r in runs):12d} {states['open']:6d} "
              f"{states['closed']:8d} {states['filtered']:9d}  {'all' if not wrong else f'{wrong} off'}")
    print(f"netaudit discovery alone (before fingerprinting the open ports): {statistics.median(discovery):.2f} s, "
          f"{total / statistics.median(discovery):.0f} probes/s")


if __name__ == "__main__":
    main()
