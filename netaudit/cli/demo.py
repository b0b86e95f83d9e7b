"""`netaudit demo`: the whole job end to end on the built-in lab, ending in an HTML report.

As root it builds the segmented lab, scans the cluster from every segment, merges the scans against the
lab's policy and writes the report; otherwise it scans the loopback lab from the one vantage there is.
Either way the lab comes down again, also when something fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from netaudit.core.errors import EXIT_OK, UsageError
from netaudit.lab.extra import require_lab
from netaudit.core.model import SEVERITIES
from netaudit.outputs.destination import Output, write_text
from netaudit.outputs.formats import FORMATS
from netaudit.core.textsafe import terminal_lines

OUTPUTS = {"report.html": "html", "report.json": "json", "report.sarif": "sarif", "junit.xml": "junit",
           "summary.txt": "text"}


def _say(text: str) -> None:
    """Lab processes' log lines come through here too: written as visible escapes, never as control codes."""
    print(f"netaudit demo: {terminal_lines(text)}", file=sys.stderr, flush=True)


def _skipped(lab) -> None:
    for name, why in lab.info.get("skipped", {}).items():
        _say(f"going on without {name}, which did not start ({why})")


def _exited(lab) -> None:
    for name, tail in lab.exited().items():
        _say(f"lab process {name} exited during the scan, so its endpoints are missing from the report: {tail}")


def _segmented(out_dir: Path):
    from netaudit.lab.segments import VANTAGES, SegmentedLab
    from netaudit.policy.segments import load_policy
    from netaudit.policy.report import build_report
    from netaudit.results.load import load_scan

    _say("building the segmented lab: network namespaces, an nftables router, real TensorFlow servers…")
    with SegmentedLab() as lab:
        _skipped(lab)
        paths = []
        for vantage in VANTAGES:
            _say(f"scanning the cluster segment from {vantage}…")
            proc = subprocess.run(lab.vantage_argv(vantage, *lab.scan_argv(vantage)), capture_output=True, text=True)
            if proc.returncode not in (0, 1):
                raise RuntimeError(f"scan from {vantage} failed: {proc.stderr.strip()}")
            path = out_dir / f"scan-{vantage}.json"
            path.write_text(proc.stdout, encoding="utf-8")
            paths.append(str(path))
        (out_dir / "policy.toml").write_text(Path(lab.info["policy"]).read_text(), encoding="utf-8")
        _exited(lab)
        _say("bringing the lab down…")
    return build_report([load_scan(p) for p in paths], load_policy(str(out_dir / "policy.toml")))


def _loopback():
    from netaudit.lab.loopback import LoopbackLab
    from netaudit.scanner.scan import ScanOptions, scan
    from netaudit.targets.parse import build_targets

    _say("using the loopback lab (real TensorFlow processes on 127.0.0.1), one vantage…")
    with LoopbackLab(peers=True) as lab:
        _skipped(lab)
        _say(f"scanning {len(lab.endpoints)} lab endpoints…")
        # 5 s deadlines: the lab's ~30 processes share the machine with the scan.
        result = scan(build_targets(lab.targets(), scope="127.0.0.1/32"), ScanOptions(vantage="loopback", timeout=5))
        _exited(lab)
        _say("bringing the lab down…")
    return result


# What the segmented lab runs, and the Debian package that ships it.
LAB_TOOLS = {"ip": "iproute2", "nft": "nftables", "sysctl": "procps"}


def segments_missing(install: bool = False) -> str | None:
    """Why the segmented lab cannot be built here (it needs root and LAB_TOOLS), or None. With `install`,
    as root on Debian, the missing packages are installed first, so a fresh machine's first run shows the
    real topology rather than the loopback fallback."""
    if os.geteuid() != 0:
        return "not root"
    missing = [tool for tool in LAB_TOOLS if shutil.which(tool) is None]
    if missing and install and shutil.which("apt-get"):
        packages = sorted({LAB_TOOLS[tool] for tool in missing})
        _say(f"installing the Debian packages the segmented lab needs: {' '.join(packages)} (--no-install skips)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                                                     *packages]):
            proc = subprocess.run(argv, capture_output=True, text=True, env=env)
            if proc.returncode:
                _say(f"{' '.join(argv[:2])} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
                break
        missing = [tool for tool in LAB_TOOLS if shutil.which(tool) is None]
    return f"{' and '.join(missing)} not installed" if missing else None


def run_demo(out_dir: Path, loopback: bool = False, install: bool = True) -> int:
    require_lab("the demo")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {out_dir}: {exc.strerror}") from None
    missing = None if loopback else segments_missing(install)
    if missing:
        _say(f"cannot build network segments ({missing}); falling back to the loopback lab")
    result = _loopback() if loopback or missing else _segmented(out_dir)
    for name, fmt in OUTPUTS.items():
        write_text(FORMATS[fmt](result), Output.open(str(out_dir / name)))
    counts = Counter(f.severity for f in result.findings)
    kinds = Counter(e["kind"] for e in result.to_dict()["endpoints"] if e["state"] == "open")
    print((out_dir / "summary.txt").read_text(encoding="utf-8"))
    print("endpoints: " + ", ".join(f"{n} {k}" for k, n in kinds.most_common()))
    print("findings: " + (", ".join(f"{counts[s]} {s}" for s in reversed(SEVERITIES) if counts[s]) or "none"))
    print(f"report: {(out_dir / 'report.html').resolve()}")
    return EXIT_OK
