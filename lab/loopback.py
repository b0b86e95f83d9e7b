"""The loopback lab: real TF clusters, a ModelServer, TLS variants and decoys on 127.0.0.1.

Used by `netaudit lab` without root and by the tests, which assert exact scan results against the
endpoints the lab says it started.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from netaudit.lab.base import Lab, LabEndpoint
from netaudit.lab.certs import LabCA
from netaudit.lab.modelserver_launch import ModelServerSpec, start_modelserver, write_lab_models, write_ssl_config
from netaudit.lab.nginx import start_nginx_mtls
from netaudit.lab.peer_servers import start_kserve, start_mlserver, start_tensorboard, start_triton, triton_available
from netaudit.lab.peers import prepare_venvs
from netaudit.lab.processes import free_port, module_argv, spawn

# Two clusters (docs/wire-facts.md §5): a classic chief/worker/ps cluster of plain servers, and a
# two-worker MultiWorkerMirroredStrategy cluster whose worker 0 runs the coordination service.
TF_CLUSTERS: tuple[tuple[str, str, dict[str, int]], ...] = (
    ("train", "server", {"chief": 1, "worker": 2, "ps": 1}),
    ("mwms", "mwms", {"worker": 2}),
)
# What each decoy must be reported as.
DECOYS: dict[str, str] = {"grpc": "grpc", "http": "http", "tls": "tls", "banner": "unknown", "silent": "unknown"}
HOST = "127.0.0.1"
# The neighbour servers (KServe, MLServer, Triton, TensorBoard, a FastAPI decoy) start with `lab up` and
# `demo` (the CLI asks for them); the tests' shared loopback lab leaves them out, and tests/test_families.py
# starts its own.
PEERS_DEFAULT = False


class LoopbackLab(Lab):
    kind = "loopback"

    def __init__(self, state_dir: Path | None = None, decoys: bool = True, modelserver: bool = True,
                 tls: bool = True, peers: bool = PEERS_DEFAULT, hostile: bool = False, tarpits: int = 0):
        super().__init__(state_dir)
        self.with_hostile = hostile
        self.tarpits = tarpits
        self.with_decoys = decoys
        self.with_modelserver = modelserver
        self.with_tls = tls
        self.with_peers = peers

    def prepare(self) -> None:
        """Build the peer servers' venvs (minutes, once) before the start-up deadline starts running."""
        if self.with_peers:
            prepare_venvs(("mlserver", "triton") if triton_available() else ("mlserver",))

    def _plan_tf(self) -> None:
        for cluster, mode, jobs in TF_CLUSTERS:
            spec = {job: [f"{HOST}:{free_port()}" for _ in range(count)] for job, count in jobs.items()}
            for job, addresses in spec.items():
                for task, address in enumerate(addresses):
                    name = f"{cluster}-{job}-{task}"
                    self.processes.append(spawn(name, module_argv(
                        "netaudit.lab.tf_task", "--cluster", json.dumps(spec), "--job", job, "--task", str(task),
                        "--mode", mode), self.dir))
                    self.endpoints.append(LabEndpoint(f"{cluster}/{job}:{task}", HOST, int(address.rsplit(":", 1)[1]),
                                                      "tf-server", name, job, task,
                                                      coordination_leader=mode == "mwms" and task == 0))
            self._save()

    def _plan_decoys(self) -> None:
        ports = {kind: free_port() for kind in DECOYS}
        self.processes.append(spawn("decoys", module_argv("netaudit.lab.decoys", "--ports", json.dumps(ports),
                                                          "--dir", str(self.dir)), self.dir))
        self.endpoints += [LabEndpoint(f"decoy/{kind}", HOST, port, DECOYS[kind], "decoys") for kind, port in ports.items()]
        self._save()

    def _plan_modelserver(self, deadline: float) -> Path:
        models = self.dir / "models"
        config, secret = write_lab_models(models, self.processes, self.dir, deadline)
        spec = ModelServerSpec(grpc_port=free_port(), rest_port=free_port(), model_config_file=config,
                               monitoring=True, audit_log=self.dir / "modelserver-audit.jsonl")
        proc, binary = start_modelserver("modelserver", spec, self.dir)
        self.processes.append(proc)
        facts = {"models": {"half_plus_two": [1, 2], secret: [1]}, "secret_model": secret, "binary": binary,
                 "audit_log": None if binary else str(spec.audit_log)}
        self.endpoints += [LabEndpoint("modelserver/grpc", HOST, spec.grpc_port, "modelserver-grpc", proc.name, facts=facts),
                           LabEndpoint("modelserver/rest", HOST, spec.rest_port, "modelserver-rest", proc.name, facts=facts)]
        self._save()
        return config

    def _plan_tls(self, models_config: Path | None) -> None:
        """TLS variants: TF servers behind TLS proxies with good and bad certificates, an nginx mTLS proxy,
        and ModelServers with --ssl_config_file. Each endpoint's `kind` is what a scan without a client
        certificate reports; facts say what the certificate is and where the client identity lives."""
        ca = LabCA(self.dir / "pki")
        good = ca.issue("server", "localhost")
        client_cert, client_key = ca.issue("client", "netaudit lab client")
        pki = {"ca": str(ca.cert_path), "client_cert": str(client_cert), "client_key": str(client_key)}
        backends = {e.name: e for e in self.endpoints if e.kind == "tf-server"}
        proxies = (("no-alpn", "train/worker:0", good, ["--no-alpn"]),
                   ("expired", "train/worker:1", ca.issue("expired", "localhost", expired=True), []),
                   ("self-signed", "train/ps:0", ca.issue("self-signed", "localhost", self_signed=True), []),
                   ("mismatch", "mwms/worker:1", ca.issue("mismatch", "wrong.example", sans=("wrong.example",)), []),
                   ("dual", "train/chief:0", good, ["--dual"]),
                   ("legacy", "train/chief:0", good, ["--legacy"]))
        for variant, backend, (cert, key), flags in proxies:
            port, tf = free_port(), backends[backend]
            proc = spawn(f"tls-{variant}", module_argv("netaudit.lab.tlsproxy", "--listen", str(port), "--backend",
                                                       tf.target, "--cert", str(cert), "--key", str(key), *flags),
                         self.dir)
            self.processes.append(proc)
            self.endpoints.append(LabEndpoint(f"tls/{variant}", HOST, port, "tf-server", proc.name, tf.job, tf.task,
                                              facts={"variant": variant, "backend": backend, **pki}))
        if shutil.which("nginx"):
            ports, tf = {"on": free_port(), "optional": free_port()}, backends["train/chief:0"]
            proc = start_nginx_mtls(self.dir / "nginx", ports, tf.target, good, ca.cert_path)
            self.processes.append(proc)
            self.endpoints += [
                LabEndpoint("tls/nginx-mtls", HOST, ports["on"], "tls", proc.name, tf.job, tf.task,
                            facts={"variant": "nginx-mtls", "backend": "train/chief:0",
                                   "kind_with_client_cert": "tf-server", **pki}),
                LabEndpoint("tls/nginx-optional", HOST, ports["optional"], "tf-server", proc.name, tf.job, tf.task,
                            facts={"variant": "nginx-optional", "backend": "train/chief:0", **pki})]
        if models_config:
            for variant, verify in (("tls", False), ("mtls", True)):
                ssl_config = write_ssl_config(self.dir / "pki" / f"modelserver-{variant}.config", good, ca.cert_path,
                                              verify)
                spec = ModelServerSpec(free_port(), free_port(), models_config, ssl_config_file=ssl_config)
                proc, _ = start_modelserver(f"modelserver-{variant}", spec, self.dir)
                self.processes.append(proc)
                kind = "tls" if verify else "modelserver-grpc"
                self.endpoints.append(LabEndpoint(f"modelserver-{variant}/grpc", HOST, spec.grpc_port, kind, proc.name,
                                                  facts={"variant": f"modelserver-{variant}",
                                                         "kind_with_client_cert": "modelserver-grpc", **pki}))
        self._save()

    def _plan_v2_server(self, name: str, start) -> None:
        """An Open Inference Protocol server with its REST, gRPC and metrics ports (MLServer, Triton)."""
        ports = [free_port() for _ in range(3)]
        server = start(name, *ports, self.dir / name, self.dir)
        self.processes.append(server.process)
        self.endpoints += [LabEndpoint(f"{name}/{role}", HOST, port, kind, name, facts=server.facts) for role, port, kind
                           in zip(("rest", "grpc", "metrics"), ports, ("inference-v2-rest", "inference-v2-grpc", "http"))]

    def _plan_peers(self) -> None:
        """KServe (V1 + V2 REST, V2 gRPC), MLServer (V2 REST + gRPC, metrics), Triton when its venv can be
        built, TensorBoard on a log directory it writes, and a plain FastAPI app that must be none of them."""
        http, grpc = free_port(), free_port()
        ks = start_kserve("kserve", http, grpc, self.dir)
        self.processes.append(ks.process)
        # One KServe HTTP port speaks V1 and V2: both kinds, on the same port.
        self.endpoints += [LabEndpoint("kserve/rest-v1", HOST, http, "inference-v1-rest", "kserve", facts=ks.facts),
                           LabEndpoint("kserve/rest-v2", HOST, http, "inference-v2-rest", "kserve", facts=ks.facts),
                           LabEndpoint("kserve/grpc", HOST, grpc, "inference-v2-grpc", "kserve", facts=ks.facts)]
        self._plan_v2_server("mlserver", start_mlserver)
        if triton_available():
            self._plan_v2_server("triton", start_triton)
        port = free_port()
        tb = start_tensorboard("tensorboard", port, self.dir / "tensorboard-logs", self.dir)
        self.processes.append(tb.process)
        self.endpoints.append(LabEndpoint("tensorboard", HOST, port, "tensorboard", "tensorboard", facts=tb.facts))
        port = free_port()
        self.processes.append(spawn("fastapi", module_argv("netaudit.lab.fastapi_app", "--port", str(port)), self.dir))
        self.endpoints.append(LabEndpoint("decoy/fastapi", HOST, port, "http", "fastapi"))
        self._save()

    def _plan(self, deadline: float) -> None:
        self._plan_tf()
        if self.with_decoys:
            self._plan_decoys()
        models_config = self._plan_modelserver(deadline) if self.with_modelserver else None
        if self.with_tls:
            self._plan_tls(models_config)
        if self.with_peers:
            self._plan_peers()
        if self.with_hostile:
            from netaudit.lab.hostile import plan_hostile

            plan_hostile(self, self.tarpits)
            self._save()
