"""The segmented lab (root): real network namespaces in 198.18.0.0/15 joined through a router namespace
whose nftables ruleset plays the VPC firewall.

    cluster 198.18.1.0/24  the TF cluster (chief, 2 workers, ps; one host namespace each) and a ModelServer
    apps    198.18.2.0/24  may reach the ModelServer, not the TF cluster
    corp    198.18.3.0/24  untrusted
    edge    198.18.4.0/24  untrusted

Each segment is a bridge in the router namespace; each host is its own namespace with a veth on that
bridge. Traffic between segments is routed by the router, so the nftables `forward` chain decides it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from netaudit.lab.base import Lab, LabEndpoint
from netaudit.lab.modelserver_launch import ModelServerSpec, start_modelserver, write_lab_models
from netaudit.lab.netns import NetnsError, ip_command
from netaudit.lab.peer_servers import start_kserve, start_mlserver, start_tensorboard
from netaudit.lab.peers import prepare_venvs
from netaudit.lab.processes import log_tail, module_argv, spawn, stop, wait_ready

SEGMENTS = {"cluster": "198.18.1", "apps": "198.18.2", "corp": "198.18.3", "edge": "198.18.4"}
TRUST = {"cluster": "trusted", "apps": "trusted", "corp": "untrusted", "edge": "untrusted"}
TF_PORT, GRPC_PORT, REST_PORT = 2222, 8500, 8501


@dataclass(frozen=True)
class Host:
    segment: str
    name: str
    octet: int

    @property
    def ip(self) -> str:
        return f"{SEGMENTS[self.segment]}.{self.octet}"



TF_HOSTS = {("chief", 0): Host("cluster", "chief", 10), ("worker", 0): Host("cluster", "worker0", 11),
            ("worker", 1): Host("cluster", "worker1", 12), ("ps", 0): Host("cluster", "ps", 13)}
MODELSERVER = Host("cluster", "serving", 20)
VANTAGES = {"cluster": Host("cluster", "ops", 50), "apps": Host("apps", "app", 10),
            "corp": Host("corp", "laptop", 10), "edge": Host("edge", "gateway", 10)}
HOSTS = (*TF_HOSTS.values(), MODELSERVER, *VANTAGES.values())
# Neighbour servers that serve TF models or TF tooling, on their usual ports, next to the TF servers.
PEERS_DEFAULT = True
KSERVE, MLSERVER, TENSORBOARD = Host("cluster", "kserve", 30), Host("cluster", "mlserver", 31), Host("cluster", "tensorboard", 32)
PEER_HOSTS = (KSERVE, MLSERVER, TENSORBOARD)
INFERENCE_HTTP, INFERENCE_GRPC, MLSERVER_METRICS, TENSORBOARD_PORT = 8080, 8081, 8082, 6006
APPS_TO_INFERENCE = (f"ip saddr 198.18.2.0/24 ip daddr {{ {KSERVE.ip}, {MLSERVER.ip} }} "
                     f"tcp dport {{ {INFERENCE_HTTP}, {INFERENCE_GRPC} }} accept")

# The firewall. `leaky` carries the mistakes a real VPC grows: a broad rule that lets edge reach a worker's
# 2222, and corp reaching the ModelServer's REST port. `isolated` allows only apps -> ModelServer.
# The firewall answers in all three ways a real one does: corp -> cluster:2222 is rejected with ICMP
# admin-prohibited, corp -> the ModelServer's gRPC port with a TCP reset sent in the server's name, and
# everything else is silently dropped.
APPS_TO_SERVING = "ip saddr 198.18.2.0/24 ip daddr 198.18.1.20 tcp dport { 8500, 8501 } accept"
CORP_REJECTED = "ip saddr 198.18.3.0/24 ip daddr 198.18.1.0/24 tcp dport 2222 reject with icmpx admin-prohibited"
CORP_RESET = "ip saddr 198.18.3.0/24 ip daddr 198.18.1.20 tcp dport 8500 reject with tcp reset"
RULES = {
    "leaky": [APPS_TO_SERVING,
              "ip saddr 198.18.4.0/24 ip daddr 198.18.1.11 tcp dport 2222 accept",
              "ip saddr 198.18.3.0/24 ip daddr 198.18.1.20 tcp dport 8501 accept",
              CORP_REJECTED, CORP_RESET],
    "isolated": [APPS_TO_SERVING, CORP_REJECTED, CORP_RESET],
}
# Hosts of one segment share a bridge; with br_netfilter loaded, bridged packets traverse this chain too.
INTRA_SEGMENT = [f"ip saddr {p}.0/24 ip daddr {p}.0/24 accept" for p in SEGMENTS.values()]


def ruleset_text(name: str, peers: bool = False) -> str:
    """The router's nftables table: drop by default, return traffic, intra-segment, then the named rules
    (apps may also reach the inference servers when the lab runs them; TensorBoard stays cluster-only)."""
    rules = ["ct state established,related accept", *INTRA_SEGMENT, *RULES[name], *([APPS_TO_INFERENCE] if peers else [])]
    return ("table inet nalab {\n    chain forward {\n        type filter hook forward priority 0; policy drop;\n"
            + "".join(f"        {rule}\n" for rule in rules) + "    }\n}\n")

# Who may reach what (netaudit report --policy), written from the same tables the network is built from.
POLICY = "# Who may reach what in the segmented lab (netaudit report --policy).\n" + "".join(
    f'[segments.{name}]\ncidrs = ["{prefix}.0/24"]\ntrust = "{TRUST[name]}"\n\n' for name, prefix in SEGMENTS.items()
) + """[[allow]]
kinds = ["tf-server"]
from = ["cluster"]

[[allow]]
kinds = ["modelserver-grpc", "modelserver-rest"]
from = ["cluster", "apps"]
"""
PEER_POLICY = """
[[allow]]
kinds = ["inference-v1-rest", "inference-v2-rest", "inference-v2-grpc"]
from = ["cluster", "apps"]

[[allow]]
kinds = ["tensorboard"]
from = ["cluster"]
"""


def add_netns(namespaces: list[str], name: str) -> None:
    """A namespace with its loopback up, recorded in `namespaces` the moment it exists, so teardown finds it
    even when the next step fails."""
    ip_command("netns", "add", name)
    namespaces.append(name)
    ip_command("-n", name, "link", "set", "lo", "up")


def run_in(netns: str, *argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, **kw)


class SegmentedLab(Lab):
    kind = "segments"
    rulesets = tuple(RULES)

    def __init__(self, state_dir: Path | None = None, ruleset: str = "leaky", peers: bool = PEERS_DEFAULT):
        super().__init__(state_dir)
        if ruleset not in RULES:
            raise ValueError(f"unknown ruleset {ruleset!r}; choose from {', '.join(RULES)}")
        self.ruleset = ruleset
        self.with_peers = peers
        self.hosts = HOSTS + (PEER_HOSTS if peers else ())
        # Namespace names carry a tag of the state directory, so two labs (a user's and the tests') coexist.
        self.tag = hashlib.sha1(str(self.dir.resolve()).encode()).hexdigest()[:4]
        self.router = f"na{self.tag}-router"

    def netns(self, host: Host) -> str:
        return f"na{self.tag}-{host.segment}-{host.name}"

    def _add_netns(self, name: str) -> None:
        add_netns(self.namespaces, name)

    def _build_network(self) -> None:
        self._add_netns(self.router)
        # Forward between segments; answer every rejected probe (no ICMP rate limit), so scans are repeatable.
        if run_in(self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.icmp_ratelimit=0",
                  "net.ipv4.icmp_msgs_per_sec=100000").returncode:
            raise NetnsError("cannot set forwarding and ICMP sysctls in the router namespace")
        for segment, prefix in SEGMENTS.items():
            ip_command("-n", self.router, "link", "add", f"br-{segment}", "type", "bridge")
            ip_command("-n", self.router, "addr", "add", f"{prefix}.254/24", "dev", f"br-{segment}")
            ip_command("-n", self.router, "link", "set", f"br-{segment}", "up")
        for index, host in enumerate(self.hosts):
            netns = self.netns(host)
            self._add_netns(netns)
            port = f"r{index}"
            ip_command("link", "add", port, "netns", self.router, "type", "veth", "peer", "name", "eth0", "netns", netns)
            ip_command("-n", self.router, "link", "set", port, "master", f"br-{host.segment}", "up")
            ip_command("-n", netns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
            ip_command("-n", netns, "link", "set", "eth0", "up")
            ip_command("-n", netns, "route", "add", "default", "via", f"{SEGMENTS[host.segment]}.254")
        self.apply_ruleset(self.ruleset)

    def apply_ruleset(self, ruleset: str) -> None:
        """Swap the router's firewall in place (tests flip between the leaky and the isolated one)."""
        if not self.namespaces:
            self.load()
        run_in(self.router, "nft", "delete", "table", "inet", "nalab")
        peers = self.with_peers or bool(self.info.get("peers"))
        proc = run_in(self.router, "nft", "-f", "-", input=ruleset_text(ruleset, peers))
        if proc.returncode:
            raise NetnsError(f"nft in {self.router}: {proc.stderr.strip()}")
        self.ruleset = ruleset
        self.info["ruleset"] = ruleset
        self.info["rules"] = RULES[ruleset] + ([APPS_TO_INFERENCE] if peers else [])

    def prepare(self) -> None:
        if self.with_peers:
            prepare_venvs(("mlserver",))

    def _plan_peers(self) -> None:
        ks = start_kserve(self.netns(KSERVE), INFERENCE_HTTP, INFERENCE_GRPC, self.dir, netns=self.netns(KSERVE))
        ml = start_mlserver(self.netns(MLSERVER), INFERENCE_HTTP, INFERENCE_GRPC, MLSERVER_METRICS,
                            self.dir / "mlserver", self.dir, netns=self.netns(MLSERVER))
        tb = start_tensorboard(self.netns(TENSORBOARD), TENSORBOARD_PORT, self.dir / "tensorboard-logs", self.dir,
                               netns=self.netns(TENSORBOARD))
        self.processes += [ks.process, ml.process, tb.process]
        planned = ((ks, KSERVE, INFERENCE_HTTP, "kserve-rest-v1", "inference-v1-rest"),
                   (ks, KSERVE, INFERENCE_HTTP, "kserve-rest-v2", "inference-v2-rest"),
                   (ks, KSERVE, INFERENCE_GRPC, "kserve-grpc", "inference-v2-grpc"),
                   (ml, MLSERVER, INFERENCE_HTTP, "mlserver-rest", "inference-v2-rest"),
                   (ml, MLSERVER, INFERENCE_GRPC, "mlserver-grpc", "inference-v2-grpc"),
                   (tb, TENSORBOARD, TENSORBOARD_PORT, "tensorboard", "tensorboard"))
        self.endpoints += [LabEndpoint(f"cluster/{name}", host.ip, port, kind, started.process.name, facts=started.facts)
                           for started, host, port, name, kind in planned]

    def _plan(self, deadline: float) -> None:
        self.info.update({"peers": self.with_peers})
        self.info.update({"ruleset": self.ruleset, "segments": {s: f"{p}.0/24" for s, p in SEGMENTS.items()},
                          "trust": TRUST, "vantages": {v: {"netns": self.netns(h), "ip": h.ip}
                                                       for v, h in VANTAGES.items()}})
        self._build_network()
        self._save()
        cluster = {job: [f"{TF_HOSTS[(job, i)].ip}:{TF_PORT}" for i in range(n)]
                   for job, n in (("chief", 1), ("worker", 2), ("ps", 1))}
        for (job, task), host in TF_HOSTS.items():
            self.processes.append(spawn(self.netns(host), ["ip", "netns", "exec", self.netns(host), *module_argv(
                "netaudit.lab.tf_task", "--cluster", json.dumps(cluster), "--job", job, "--task", str(task))],
                self.dir))
            self.endpoints.append(LabEndpoint(f"cluster/{job}:{task}", host.ip, TF_PORT, "tf-server", self.netns(host),
                                              job, task))
        config, secret = write_lab_models(self.dir / "models", self.processes, self.dir, deadline)
        spec = ModelServerSpec(GRPC_PORT, REST_PORT, config, monitoring=True,
                               audit_log=self.dir / "modelserver-audit.jsonl")
        proc, _ = start_modelserver(self.netns(MODELSERVER), spec, self.dir, netns=self.netns(MODELSERVER))
        self.processes.append(proc)
        facts = {"secret_model": secret, "audit_log": str(spec.audit_log)}
        self.endpoints += [LabEndpoint("cluster/modelserver-grpc", MODELSERVER.ip, GRPC_PORT, "modelserver-grpc",
                                       proc.name, facts=facts),
                           LabEndpoint("cluster/modelserver-rest", MODELSERVER.ip, REST_PORT, "modelserver-rest",
                                       proc.name, facts=facts)]
        if self.with_peers:
            self._plan_peers()
        self.info["peers"] = self.with_peers
        (self.dir / "policy.toml").write_text(POLICY + (PEER_POLICY if self.with_peers else ""))
        self.info["policy"] = str(self.dir / "policy.toml")

    def vantage_argv(self, vantage: str, *argv: str) -> list[str]:
        """A command run from a lab segment: inside that segment's vantage host namespace."""
        if not self.namespaces:
            self.load()
        return ["ip", "netns", "exec", self.netns(VANTAGES[vantage]), *argv]

    def scan_argv(self, vantage: str, engine: str | None = None) -> list[str]:
        """The scan a vantage runs: the cluster segment's host range and the tf ports."""
        return self._scan(f"{SEGMENTS['cluster']}.0/26", "--scope", "198.18.0.0/15", "--vantage", vantage,
                          engine=engine)

    def impair(self, vantage: str, delay_ms: int, loss: float) -> str:
        """Loss and delay on a vantage host's link, held by a lab process until cleared or `lab down`;
        returns how it was applied (netem, or the delay line where the kernel has no netem)."""
        self.clear_impairment(vantage)
        argv = self.vantage_argv(vantage, *module_argv("netaudit.lab.impair", "--delay-ms", str(delay_ms),
                                                       "--loss", f"{loss:g}"))
        proc = spawn(f"impair-{vantage}", argv, self.dir)
        self.processes.append(proc)
        self._save()
        wait_ready([proc], time.monotonic() + 30)
        how = next(line for line in Path(proc.log).read_text().splitlines() if line.startswith("READY"))[6:]
        self.info.setdefault("impaired", {})[vantage] = how
        self._save()
        return how

    def clear_impairment(self, vantage: str) -> str | None:
        """Stop the vantage's impairment, if any; returns what its process reported on the way out."""
        if not self.namespaces:
            self.load()
        held = [p for p in self.processes if p.name == f"impair-{vantage}"]
        if not held:
            return None
        stop(held)
        run_in(self.netns(VANTAGES[vantage]), *module_argv("netaudit.lab.impair", "--undo"))
        report = log_tail(held[0], 1).strip()
        for proc in held:
            self.processes.remove(proc)
            Path(proc.log).unlink(missing_ok=True)
        self.info.get("impaired", {}).pop(vantage, None)
        self._save()
        return report
