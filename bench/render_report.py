"""Benchmark: render the HTML report for 10,000 endpoints and 20,000 findings; print time and size.

The data is synthetic but shaped like real scans (tf-server devices, transcripts of 8 RPC lines, ModelServer
inventories), because rendering cost depends on shape, not on where the data came from.

    python bench/render_report.py [--endpoints 10000] [--findings 20000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netaudit.assess import load_rules  # noqa: E402
from netaudit.model import Endpoint, ScanResult  # noqa: E402
from netaudit.render import to_html  # noqa: E402

TRANSCRIPT = [f"-> /tensorflow.WorkerService/Method{i} (empty request, no credentials, plaintext h2c) <- OK"
              for i in range(8)]


def synthetic(endpoints: int, findings: int) -> ScanResult:
    result = ScanResult(vantage="bench", started="2026-11-27T00:00:00Z", finished="2026-11-27T00:10:00Z",
                        complete=True, stats={"probes": endpoints * 12})
    for i in range(endpoints):
        host = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        if i % 2:
            ep = Endpoint(host, 8500, "open", "modelserver-grpc", "plaintext", False,
                          ["tensorflow.serving.ModelService", "tensorflow.serving.PredictionService"],
                          {"models": {f"model_{i}": {"versions": [{"version": 1, "state": "AVAILABLE"}]}},
                           "admin_reload": "reachable with no credentials"}, list(TRANSCRIPT))
        else:
            ep = Endpoint(host, 2222, "open", "tf-server", "plaintext", False, ["tensorflow.WorkerService"],
                          {"job": "worker", "task": i, "devices": [{"device_type": "CPU", "job": "worker", "task": i}],
                           "tf_version": {"range": ">= 2.21"}}, list(TRANSCRIPT))
        result.endpoints.append(ep)
    rules = [r for r in load_rules() if r.id in ("tf-server-unauthenticated-plaintext", "tf-profiler-exposed",
                                                 "modelserver-reload-exposed", "modelserver-plaintext")]
    per_endpoint = max(1, findings // endpoints)
    for ep in result.endpoints:
        for rule in (rules[:2] if ep.kind == "tf-server" else rules[2:])[:per_endpoint]:
            result.findings.append(rule.finding(ep))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, default=10000)
    parser.add_argument("--findings", type=int, default=20000)
    args = parser.parse_args()
    result = synthetic(args.endpoints, args.findings)
    started = time.perf_counter()
    html = to_html(result)
    seconds = time.perf_counter() - started
    size = len(html.encode())
    print(f"{len(result.endpoints)} endpoints, {len(result.findings)} findings: rendered in {seconds:.2f}s, "
          f"{size / 1e6:.1f} MB (goal: under 3 s and 15 MB)")


if __name__ == "__main__":
    main()
