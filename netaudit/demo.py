"""`netaudit demo`: the whole job end to end on the built-in lab, ending in an HTML report."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from .lab.loopback import LoopbackLab
from .render import to_html, to_json, to_text
from .scan import ScanOptions, scan
from .targets import build_targets

EXIT_OK = 0


def run_demo(out_dir: Path) -> int:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from .errors import UsageError

        raise UsageError(f"cannot create {out_dir}: {exc.strerror}") from None
    print("netaudit demo: starting the loopback lab (real TensorFlow processes)…", file=sys.stderr)
    with LoopbackLab() as lab:
        print(f"netaudit demo: scanning {len(lab.endpoints)} lab endpoints from vantage 'loopback'…", file=sys.stderr)
        targets = build_targets(lab.targets(), scope="127.0.0.1/32")
        result = scan(targets, ScanOptions(vantage="loopback"))
        print("netaudit demo: bringing the lab down…", file=sys.stderr)
    files = {"report.html": to_html(result), "scan.json": to_json(result), "summary.txt": to_text(result)}
    for name, text in files.items():
        (out_dir / name).write_text(text, encoding="utf-8")
    counts = Counter(f.severity for f in result.findings)
    kinds = Counter(e.kind for e in result.endpoints if e.state == "open")
    print(to_text(result))
    print(f"endpoints: " + ", ".join(f"{n} {k}" for k, n in kinds.most_common()))
    print(f"findings: " + (", ".join(f"{counts[s]} {s}" for s in ("critical", "high", "medium", "low", "info") if counts[s])
                           or "none"))
    print(f"report: {(out_dir / 'report.html').resolve()}")
    return EXIT_OK
