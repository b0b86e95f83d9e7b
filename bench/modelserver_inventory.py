"""Benchmark: how long netaudit takes to inventory a ModelServer that serves 50 models.

Writes 50 small SavedModels (plus the lab's two) with TensorFlow, serves them with the lab ModelServer
(or tensorflow_model_server when it is on PATH) on 127.0.0.1, and times `netaudit scan` of its gRPC and
REST ports with every model name given through --model-names, so each of the 52 models is found on both
ports (status plus signature metadata). Prints the figures; nothing is asserted.

    python bench/modelserver_inventory.py [--models 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netaudit.lab.modelserver_launch import ModelServerSpec, start_modelserver, write_lab_models  # noqa: E402
from netaudit.lab.processes import free_port, stop, wait_ready  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        procs: list = []
        started = time.perf_counter()
        config, secret = write_lab_models(work / "models", procs, work, time.monotonic() + 600, extra=args.models)
        written = time.perf_counter() - started
        names = [line.split('"')[1] for line in config.read_text().splitlines() if "name:" in line]
        (work / "names.txt").write_text("\n".join(names) + "\n")
        spec = ModelServerSpec(free_port(), free_port(), config)
        proc, binary = start_modelserver("bench-modelserver", spec, work)
        try:
            wait_ready([proc], time.monotonic() + 600)
            times, found = [], None
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                out = subprocess.run([sys.executable, "-m", "netaudit", "scan", f"127.0.0.1:{spec.grpc_port}",
                                      f"127.0.0.1:{spec.rest_port}", "--model-names", str(work / "names.txt"),
                                      "--format", "json"], capture_output=True, text=True, check=True).stdout
                times.append(time.perf_counter() - t0)
                found = {e["kind"]: len(e["details"].get("models", {})) for e in json.loads(out)["endpoints"]}
        finally:
            stop([proc])
    print(f"server: {binary or 'lab stand-in (netaudit.lab.modelserver)'}; {len(names)} models "
          f"(written in {written:.1f}s); {args.repeat} scans")
    print(f"models inventoried per port: {found}")
    print(f"scan of gRPC + REST ports: median {statistics.median(times):.2f}s, min {min(times):.2f}s, "
          f"max {max(times):.2f}s")


if __name__ == "__main__":
    main()
