"""Benchmark: a scan that meets hostile servers, with nmap on the same ports where that means something.

Two runs on 127.0.0.1, each measured in a child process (wall time, peak RSS, JSON size):

1. the hostile lab (every case of lab/hostile.py) beside the loopback lab's seven real TF servers;
2. 500 tarpit ports plus one real TF server, against the bound (500 / probe concurrency) x budget.

nmap -sT (connect discovery only) and nmap -sT -sV (its service detection, which also meets every
hostile server) scan the same ports. Only ports this benchmark opened are touched.

    python bench/hostile.py [--timeout 2] [--retries 1] [--tarpits 500] [--no-nmap]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netaudit.core.faults import budget  # noqa: E402
from netaudit.lab.hostile import HostileLab, measured_run, measured_scan  # noqa: E402
from netaudit.lab.loopback import LoopbackLab  # noqa: E402
from netaudit.scanner.scan import ScanOptions  # noqa: E402


def netaudit_row(label: str, targets: list[str], work: Path, timeout: float, retries: int) -> dict:
    out = work / f"{label}.json"
    measured = measured_scan(targets, out, "--timeout", f"{timeout:g}", "--retries", str(retries))
    data = json.loads(out.read_text())
    sizes = [len(json.dumps(e)) for e in data["endpoints"]]
    return {"tool": "netaudit scan", "seconds": measured.seconds, "rss": measured.peak_rss_mb,
            "json": out.stat().st_size, "largest": max(sizes), "exit": measured.returncode,
            "tf": sum(e["kind"] == "tf-server" for e in data["endpoints"]),
            "probe_errors": data["stats"].get("probe_errors", 0)}


def nmap_rows(targets: list[str], version: bool, limit: float = 3600) -> dict:
    """nmap on the same ports; -sV is stopped after `limit` seconds (its row then shows exit -9 and the
    peak RSS it had reached)."""
    ports = ",".join(t.rsplit(":", 1)[1] for t in targets)
    argv = ["nmap", "-sT", "-Pn", "-n", "-p", ports, "127.0.0.1", "-oX", "-"] + (["-sV"] if version else [])
    measured = measured_run(argv, timeout=limit if version else 3600)
    return {"tool": "nmap -sT" + (" -sV" if version else ""), "seconds": measured.seconds, "rss": measured.peak_rss_mb,
            "json": None, "largest": None, "exit": measured.returncode, "tf": None, "probe_errors": None}


def show(title: str, rows: list[dict], bound: float | None = None) -> None:
    print(f"\n{title}" + (f" (bound: {bound:.0f} s)" if bound else ""))
    print("| tool | wall time | peak RSS | JSON size (largest endpoint) | tf-server found | probe errors | exit |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        size = f"{r['json'] / 1024:.0f} KiB ({r['largest'] / 1024:.1f} KiB)" if r["json"] else "-"
        print(f"| {r['tool']} | {r['seconds']:.1f} s | {r['rss']:.0f} MB | {size} | {r['tf'] if r['tf'] is not None else '-'} "
              f"| {r['probe_errors'] if r['probe_errors'] is not None else '-'} | {r['exit']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--retries", type=int, default=1)
    parser.add_argument("--tarpits", type=int, default=500)
    parser.add_argument("--no-nmap", action="store_true")
    parser.add_argument("--nmap-limit", type=float, default=300, metavar="SECONDS",
                        help="stop nmap -sV after this long (default 300: against the hostile lab it grows past "
                             "4 GB RSS in 10 minutes)")
    args = parser.parse_args()
    nmap = shutil.which("nmap") and not args.no_nmap
    seconds = budget(args.timeout, args.retries)
    print(f"fingerprint budget at --timeout {args.timeout:g} --retries {args.retries}: {seconds:g} s")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with LoopbackLab(work / "lab", decoys=False, modelserver=False, tls=False) as lab, \
                HostileLab(work / "hostile") as hostile:
            targets = lab.targets() + hostile.targets()
            rows = [netaudit_row("hostile", targets, work, args.timeout, args.retries)]
            if nmap:
                rows += [nmap_rows(targets, False), nmap_rows(targets, True, args.nmap_limit)]
            show(f"hostile lab ({len(hostile.targets())} servers) + {len(lab.targets())} real TF servers", rows)
            tf = lab.targets()[0]
            with HostileLab(work / "tarpits", tarpits=args.tarpits - 1, cases=("tarpit",)) as tarpits:
                targets = tarpits.targets() + [tf]
                rows = [netaudit_row("tarpits", targets, work, args.timeout, args.retries)]
                if nmap:
                    rows += [nmap_rows(targets, False), nmap_rows(targets, True, args.nmap_limit)]
                bound = math.ceil(len(targets) / ScanOptions().probe_concurrency) * seconds
                show(f"{args.tarpits} tarpit ports + 1 real TF server", rows, bound)


if __name__ == "__main__":
    main()
