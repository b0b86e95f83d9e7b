"""Benchmark: how long identifying each server family takes, next to a TF server.

Starts the families lab (KServe, MLServer, Triton when its venv can be built, TensorBoard, the TF Serving
stand-in, a plain FastAPI app and grpcio server) plus one tf.distribute.Server on 127.0.0.1, then times per
endpoint: the engine's fingerprint (first-bytes sniff, TLS check, the registry's probes), the family's own
probe function (probes/tensorboard/rest.py, inference_v1/rest.py, inference_v2/protocol.py) run on its own, and, with nmap
installed, `nmap -sT -sV -n -Pn --versiondb FILE -p PORT` with the file `netaudit export nmap-probes`
writes (wall time of the command, one port per run, and the service line nmap printed). Prints the
figures; nothing is asserted.

    python bench/families.py [--repeat 5] [--no-nmap]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netaudit.discovery.nmap import parse_nmap_xml  # noqa: E402
from netaudit.fingerprint.runner import fingerprint  # noqa: E402
from netaudit.outputs.nmap_probes import export  # noqa: E402
from netaudit.lab.loopback import LoopbackLab  # noqa: E402
from netaudit.lab.processes import free_port, module_argv, spawn, stop, wait_ready  # noqa: E402
from netaudit.core.model import Endpoint  # noqa: E402
from netaudit.probes.tensorboard import rest as tensorboard  # noqa: E402
from netaudit.probes.inference_v1 import rest as inference_v1
from netaudit.probes.inference_v2 import protocol as inference_v2
from netaudit.probes.base import ProbeContext  # noqa: E402

TIMEOUT = 5.0


class BenchLab(LoopbackLab):
    def _plan(self, deadline: float) -> None:
        self._plan_decoys()
        self._plan_modelserver(deadline)
        self._plan_peers()


def family_probe(kind: str):
    """The family probe for a lab endpoint kind, or None for kinds the engine already handles."""
    return {"inference-v1-rest": lambda h, p: inference_v1.probe(h, p, TIMEOUT),
            "inference-v2-rest": lambda h, p: inference_v2.probe_rest(h, p, TIMEOUT),
            "inference-v2-grpc": lambda h, p: inference_v2.probe_grpc(h, p, TIMEOUT),
            "tensorboard": lambda h, p: tensorboard.probe(h, p, TIMEOUT)}.get(kind)


async def timed(make) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = await make()
    return time.perf_counter() - t0, result


async def engine(host: str, port: int) -> Endpoint:
    endpoint = Endpoint(host, port, "open")
    await fingerprint(endpoint, TIMEOUT, ProbeContext())
    return endpoint


def nmap_once(probes: Path, port: int) -> tuple[float, str]:
    """Wall time of one `nmap -sV --versiondb` run on one port, and its service line."""
    argv = ["nmap", "-sT", "-sV", "-n", "-Pn", "--versiondb", str(probes), "-p", str(port), "127.0.0.1", "-oX", "-"]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - t0
    rows, _ = parse_nmap_xml(proc.stdout)
    service = dict(rows[0].service) if rows else {}
    return elapsed, " ".join(service[k] for k in ("name", "product", "version") if service.get(k)) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-nmap", action="store_true", help="leave out the nmap -sV --versiondb column")
    args = parser.parse_args()
    use_nmap = not args.no_nmap and shutil.which("nmap") is not None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        probes = work / "netaudit-probes"
        probes.write_text(export())
        port = free_port()
        tf = spawn("tf-worker", module_argv("netaudit.lab.tf_task", "--cluster",
                                            json.dumps({"worker": [f"127.0.0.1:{port}"]}), "--job", "worker",
                                            "--task", "0"), work)
        try:
            started = time.perf_counter()
            with BenchLab(work / "lab", peers=True) as lab:
                wait_ready([tf], time.monotonic() + 300)
                print(f"lab up in {time.perf_counter() - started:.1f}s; {args.repeat} runs per endpoint, medians\n")
                rows = [("tf.distribute.Server", "tf-server", "127.0.0.1", port)]
                seen: set[int] = set()
                for e in lab.endpoints:
                    if e.port not in seen and not (e.name.startswith("decoy/") and e.name not in ("decoy/fastapi", "decoy/grpc")):
                        seen.add(e.port)
                        rows.append((e.name, e.kind, e.host, e.port))
                print(f"{'endpoint':24} {'lab kind':20} {'engine':>9} {'engine says':18} {'family probe':>13}"
                      + (f" {'nmap -sV':>9}  nmap says" if use_nmap else ""))
                for name, kind, host, p in rows:
                    engine_times, family_times, nmap_times, said, nmap_said = [], [], [], None, "-"
                    probe = family_probe(kind)
                    for _ in range(args.repeat):
                        elapsed, found = asyncio.run(timed(lambda: engine(host, p)))
                        engine_times.append(elapsed)
                        said = found.kind
                        if probe:
                            family_times.append(asyncio.run(timed(lambda: probe(host, p)))[0])
                        if use_nmap:
                            elapsed, nmap_said = nmap_once(probes, p)
                            nmap_times.append(elapsed)
                    family = f"{statistics.median(family_times):12.3f}s" if family_times else f"{'-':>13}"
                    nmap_column = f" {statistics.median(nmap_times):8.2f}s  {nmap_said}" if nmap_times else ""
                    print(f"{name:24} {kind:20} {statistics.median(engine_times):8.3f}s {said or '-':18} {family}"
                          + nmap_column)
        finally:
            stop([tf])


if __name__ == "__main__":
    main()
