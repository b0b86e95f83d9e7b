"""`--policy k8s:SNAPSHOT` for `scan` and `report`: the cluster's NetworkPolicies as the intent, next to what the
scan measured from one vantage.

Why this is worth a policy of its own: Kubernetes accepts NetworkPolicies that nothing enforces. A policy
only has effect when the network plugin implements it, and the API gives no way to tell (kubernetes.io
"Network Policies", Prerequisites). A scan from inside the cluster measures the truth; the NetworkPolicy
engine (policy/netpol.py) says what the policies intend for the same (source, pod, port). Where they
disagree there is a finding, declared in data/k8s_policy_rules.toml.

The vantage is the scanning pod: `--vantage k8s:NS/POD` (or `k8s:NS`, an unlabeled pod of NS, or an address
outside the cluster), else the downward API's POD_NAMESPACE and POD_NAME, else the address this machine
sends from, looked up in the snapshot (a pod, a node, or an outside address).

A scanned address is judged at the pod and pod port it reaches, because policies see traffic after the
Service's DNAT: a pod IP directly; a Service's ClusterIP, external or load-balancer address, or a node's
NodePort, at each pod behind it and its targetPort (all must agree, else unknown); a node address with a
hostPort or a hostNetwork pod at that pod. An address the snapshot does not hold is listed, not judged.

K8sPolicy is a reachability.VantagePolicy; segments.Policy is the other, with network segments.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any

from netaudit.assess.rules import FROM_KIND
from netaudit.assess.scoring import scores
from netaudit.core import registry
from netaudit.core.errors import UsageError
from netaudit.core.model import Finding
from netaudit.core.registry import RegistryError, check_cvss, check_data_rules, data_rules
from netaudit.policy.netpol import ExternalAddress, NodeTraffic, Source, UnlabeledPod, Verdict, verdict
from netaudit.policy.reachability import ScanView, VantagePolicy, base_row
from netaudit.policy.reachability import verdict as cell_verdict
from netaudit.targets.k8s import routing_services
from netaudit.targets.k8s_snapshot import Pod, Service, Snapshot

INTENTS = ("allowed", "denied", "unknown")
STATES = ("open", "closed", "filtered", "undetermined")
ANY_POD = "(any pod)"


@dataclass(frozen=True)
class IntentRule:
    id: str
    intent: str
    states: tuple[str, ...]
    severity: str
    cvss: str | None
    title: str
    remediation: str
    references: tuple[str, ...]
    compliance: dict[str, list[str]]
    why: str


@cache
def intent_rules() -> tuple[IntentRule, ...]:
    """data/k8s_policy_rules.toml, checked: a wrong key, intent, state, severity or vector stops every command."""
    where = "data/k8s_policy_rules.toml"
    return checked_intent_rules(data_rules(where), where)


def checked_intent_rules(rules: list[Any], where: str) -> tuple[IntentRule, ...]:
    out = []
    for entry in check_data_rules(rules, where, needs=frozenset({"when"}), takes=frozenset({"cvss"})):
        rule_id = entry["id"]
        when = entry["when"]
        states = when.get("state", list(STATES)) if isinstance(when, dict) else None
        if not isinstance(when, dict) or set(when) - {"intent", "state"} or when.get("intent") not in INTENTS \
                or not isinstance(states, list) or not set(states) <= set(STATES):
            raise RegistryError(f"{where}: rule {rule_id!r}: when needs intent ({', '.join(INTENTS)}) and a state "
                                f"list of {', '.join(STATES)}")
        cvss = entry.get("cvss")
        if cvss is not None and cvss != FROM_KIND:
            check_cvss(cvss, f"{where}: rule {rule_id!r}")
        out.append(IntentRule(rule_id, when["intent"], tuple(states), entry["severity"], cvss, entry["title"],
                              entry["remediation"], tuple(entry.get("references", ())), entry.get("compliance", {}),
                              entry["why"]))
    return tuple(out)


@dataclass(frozen=True)
class Destination:
    """Where a scanned (address, port) lands as NetworkPolicy sees it: pods and the pod port on each."""

    via: str  # "pod IP", "Service ns/name ClusterIP", "NodePort 30222 of Service ns/name", ...
    targets: tuple[tuple[Pod, int | None], ...]  # None: the Service's named targetPort does not resolve
    unresolved: str = ""  # why there is no pod, when targets is empty
    # Whose address NetworkPolicy sees: "all" sources keep theirs (pod IP, ClusterIP); "outside" ones only
    # (a NodePort, externalIP or load-balancer route with externalTrafficPolicy Local: a client inside the
    # cluster does not get Local, kube-proxy hands it to any pod of the Service and may masquerade node
    # traffic); "none" (externalTrafficPolicy Cluster), where kube-proxy may masquerade any source as a node
    # address, before or after NetworkPolicy (undefined).
    keeps_source: str = "all"


class K8sPolicy:
    """The NetworkPolicy engine over one snapshot, as a `--policy` of scan and report."""

    def __init__(self, spec: str, snapshot: Snapshot):
        self.spec = spec
        self.snapshot = snapshot

    def to_dict(self) -> dict[str, Any]:
        """What the report shows of the policy, and under `scope` what makes two runs comparable in history
        (results/history.py scope_key): the spec as typed, not the pods and policies, which change between
        any two readings of a cluster and would leave every run without a baseline."""
        return {"type": "k8s-networkpolicy", "snapshot": self.spec.removeprefix("k8s:") or "the live API",
                "network_policies": [f"{p.namespace}/{p.name}" for p in self.snapshot.network_policies],
                "pods": len(self.snapshot.pods), "scope": {"type": "k8s-networkpolicy", "spec": self.spec}}

    # --- the vantage -------------------------------------------------------------------------------------

    def source(self, segment: str | None) -> Source | None:
        """The traffic source a vantage key names (the `segment` a scan result records)."""
        if not segment:
            return None
        if segment.startswith("node "):
            return NodeTraffic(segment[len("node "):])
        try:
            ipaddress.ip_network(segment)
        except ValueError:
            pass
        else:
            return ExternalAddress(segment)
        namespace, _, pod = segment.partition("/")
        if pod == ANY_POD or not pod:
            return UnlabeledPod(namespace)
        found = [p for p in self.snapshot.pods if (p.namespace, p.name) == (namespace, pod)]
        return found[0] if found else None

    def _key_of_address(self, address: str) -> tuple[str, str | None]:
        """(vantage key, a note) for the address this machine sends from."""
        ip = ipaddress.ip_address(address)
        pods = [p for p in self._live_pods if ip in p.ips and not p.host_network]
        if len(pods) == 1:
            return pods[0].key, None
        nodes = sorted({p.node for p in self.snapshot.pods if p.node and (ip in p.host_ips or
                                                                         (p.host_network and ip in p.ips))})
        if len(nodes) == 1:
            return f"node {nodes[0]}", None
        return str(ip), (f"the source address {ip} is no pod or node of the snapshot: the vantage is judged as an "
                         "address outside the cluster")

    def locate(self, targets, named: str | None) -> tuple[str, str | None, str | None]:
        """(vantage name, vantage key, what to tell the user)."""
        from netaudit.discovery.base import source_address

        if named and named.startswith("k8s:"):
            key = self._named_key(named[len("k8s:"):])
            return key, key, None
        pod_ns, pod_name = os.environ.get("POD_NAMESPACE"), os.environ.get("POD_NAME")
        if pod_ns and pod_name:
            if self.source(f"{pod_ns}/{pod_name}") is None:
                return named or f"{pod_ns}/{pod_name}", None, (
                    f"this pod ({pod_ns}/{pod_name}, from POD_NAMESPACE and POD_NAME) is not in the snapshot: the "
                    "NetworkPolicy verdicts for it cannot be judged")
            return named or f"{pod_ns}/{pod_name}", f"{pod_ns}/{pod_name}", None
        first = next(iter(targets.blocks[0].addresses()))
        try:
            address = source_address(str(first))
        except OSError as exc:
            return named or "unknown", None, f"no route to {first} ({exc.strerror}): the vantage is unknown"
        key, note = self._key_of_address(address)
        return named or key, key, note

    def _named_key(self, text: str) -> str:
        """`--vantage k8s:NS/POD`, `k8s:NS` or `k8s:ADDRESS`, checked against the snapshot."""
        try:
            ipaddress.ip_network(text)
        except ValueError:
            pass
        else:
            return self._key_of_address(text)[0] if "/" not in text else text
        namespace, _, pod = text.partition("/")
        if pod:
            self.snapshot.pod(namespace, pod)  # a UsageError naming the pod when it is not there
            return f"{namespace}/{pod}"
        if namespace not in self.snapshot.namespaces:
            raise UsageError(f"--vantage k8s:{text}: no namespace {namespace!r} in the snapshot (give k8s:NS/POD, "
                             "k8s:NS for an unlabeled pod of NS, or an address)")
        return f"{namespace}/{ANY_POD}"

    def place(self, scan: dict[str, Any]) -> tuple[str, str | None]:
        """(vantage name, key) of a scan result being merged by `report`: the key scan --policy k8s: recorded,
        else its vantage name if that names a pod, else its source address."""
        name = scan.get("vantage")
        for key in (scan.get("segment"), (name or "").removeprefix("k8s:")):
            if key and self._names_a_source(key) and self.source(key) is not None:
                return name or key, key
        for address in scan.get("stats", {}).get("source_addresses", []):
            key, _ = self._key_of_address(address)
            return name or key, key
        return name or "(unnamed)", None

    def _names_a_source(self, key: str) -> bool:
        """A bare word is a vantage's label (`--vantage corp`) unless it is a namespace of the snapshot."""
        if "/" in key or key.startswith("node ") or key in self.snapshot.namespaces:
            return True
        try:
            ipaddress.ip_network(key)
        except ValueError:
            return False
        return True

    # --- destinations ------------------------------------------------------------------------------------

    @cached_property
    def _live_pods(self) -> tuple[Pod, ...]:
        return tuple(p for p in self.snapshot.pods if p.phase not in ("Succeeded", "Failed"))

    @cached_property
    def _backends(self) -> dict[str, list[Pod]]:
        out: dict[str, list[Pod]] = {}
        for pod in self._live_pods:
            for service in routing_services(self.snapshot, pod):
                out.setdefault(service.key, []).append(pod)
        return out

    def destination(self, host: str, port: int) -> Destination:
        ip = ipaddress.ip_address(host)
        pods = [p for p in self._live_pods if ip in p.ips and not p.host_network]
        if len(pods) == 1:
            return Destination("pod IP", ((pods[0], port),))
        if len(pods) > 1:
            return Destination("pod IP", (), f"{len(pods)} running pods have the address {ip} in the snapshot")
        portless = []  # Services on the address without the port: several may share an external or LB address
        for service in self.snapshot.services:
            if ip in (*service.cluster_ips, *service.external_ips, *service.load_balancer_ips):
                for sp in service.ports:
                    if sp.port == port and sp.protocol == "TCP":
                        if ip in service.cluster_ips:
                            return self._through(service, sp.target_port, f"Service {service.key} ClusterIP address")
                        return self._through(service, sp.target_port,
                                             f"Service {service.key} external or load-balancer address", external=True)
                portless.append(service.key)
        if portless:
            return Destination(f"Service {portless[0]}", (), f"no Service on {ip} has TCP port {port} "
                                                             f"({', '.join(portless)} do not)")
        node = {p.node for p in self.snapshot.pods if ip in p.host_ips or (p.host_network and ip in p.ips)}
        if node:
            on_node = [p for p in self._live_pods if p.node in node]
            host_net = [p for p in on_node if p.host_network and any(cp.container_port == port and cp.protocol == "TCP"
                                                                    for c in p.containers for cp in c.ports)]
            if len(host_net) == 1:
                return Destination("hostNetwork pod on the node's address", ((host_net[0], port),))
            for service in self.snapshot.services:
                for sp in service.ports:
                    if sp.node_port == port and sp.protocol == "TCP":
                        return self._through(service, sp.target_port, f"NodePort {port} of Service {service.key}",
                                             external=True, reached=node)
            hosted = [(p, cp.container_port) for p in on_node for c in p.containers for cp in c.ports
                      if cp.host_port == port and cp.protocol == "TCP"]
            if len(hosted) == 1:
                return Destination(f"hostPort {port} of a pod on node {hosted[0][0].node}", (hosted[0],))
            return Destination(f"node {', '.join(sorted(n for n in node if n))}", (),
                               f"{ip}:{port} is a node's address with no NodePort, hostPort or hostNetwork pod of "
                               "the snapshot on that port: NetworkPolicy does not govern it")
        return Destination("address", (), f"{ip} is no pod, Service or node address of the snapshot")

    def _through(self, service: Service, target: int | str, via: str, external: bool = False,
                 reached: set[str] | None = None) -> Destination:
        """`external`: a NodePort, externalIP or load-balancer route, whose source the Service's
        externalTrafficPolicy decides (Destination.keeps_source). `reached`: the nodes a NodePort was sent to;
        with Local a client outside the cluster gets their pods only, and "traffic mistakenly sent to a node
        with no endpoints will be dropped" (ServiceSpec)."""
        local = service.external_traffic_policy == "Local"
        keeps_source = ("outside" if local else "none") if external else "all"
        backends = self._backends.get(service.key, [])
        if not backends:
            return Destination(via, (), f"Service {service.key} routes to no running pod of the snapshot")
        if local and reached is not None:
            backends = [pod for pod in backends if pod.node in reached]
            if not backends:
                return Destination(via, (), f"Service {service.key} has externalTrafficPolicy Local and no pod on "
                                            f"node {', '.join(sorted(n for n in reached if n))}: the node drops "
                                            "a connection from outside the cluster before NetworkPolicy",
                                   keeps_source)
        out = []
        for pod in backends:
            if isinstance(target, int):
                out.append((pod, target))
            else:
                numbers = pod.ports_named(target, "TCP")
                out.append((pod, next(iter(numbers)) if len(numbers) == 1 else None))
        return Destination(via, tuple(out), keeps_source=keeps_source)

    def intent(self, source: Source, host: str, port: int) -> tuple[Destination, Verdict]:
        """The engine's verdict for `source` reaching (host, port), at the pods and pod ports behind it."""
        where = self.destination(host, port)
        outside = isinstance(source, ExternalAddress)
        if where.keeps_source == "none" or (where.keeps_source == "outside" and not outside):
            why = ("externalTrafficPolicy: Cluster" if where.keeps_source == "none" else
                   "externalTrafficPolicy: Local, which a client inside the cluster does not get: kube-proxy "
                   "hands it to any pod of the Service")
            return where, Verdict("unknown", (), (
                f"through {where.via}, kube-proxy may replace the source with a node address ({why}), and "
                "whether that happens before or after NetworkPolicy is not defined (kubernetes.io, Network "
                "Policies): the verdict is known for pod and ClusterIP addresses, and with externalTrafficPolicy "
                "Local for clients outside the cluster"))
        if not where.targets:
            return where, Verdict("unknown", (), where.unresolved)
        verdicts = []
        for pod, pod_port in where.targets:
            if pod_port is None:
                verdicts.append((pod, Verdict("unknown", (), f"the Service's named targetPort does not resolve on "
                                                             f"{pod.key}")))
            else:
                verdicts.append((pod, verdict(self.snapshot, source, pod, pod_port)))
        rules = tuple(dict.fromkeys(r for _, v in verdicts for r in v.rules))
        values = dict.fromkeys(v.value for _, v in verdicts)
        if len(verdicts) == 1:
            return where, verdicts[0][1]
        if len(values) == 1:
            return where, Verdict(verdicts[0][1].value, rules,
                                  f"for each of the {len(verdicts)} pods behind it: {verdicts[0][1].reason}")
        parts = "; ".join(f"{v.value} for {p.key}" for p, v in verdicts[:5])
        return where, Verdict("unknown", rules, f"the pods behind {where.via} differ: {parts}")

    # --- the cells, as reachability.VantagePolicy asks for them ---------------------------------------------

    def row(self, vantage: str, segment: str | None, view: ScanView, ep: dict[str, Any],
            kind: str | None) -> dict[str, Any]:
        base = base_row(vantage, segment, view, ep, kind)
        source = self.source(segment)
        if source is None:
            return {**base, "allowed": None, "verdict": cell_verdict(base["state"], None)}
        where, decided = self.intent(source, ep["host"], ep["port"])
        allowed = {"allowed": True, "denied": False}.get(decided.value)
        shown = cell_verdict(base["state"], allowed) if allowed is not None else "intent-unknown"
        to = [f"{p.key}:{port}" for p, port in where.targets if port is not None]
        return {**base, "allowed": allowed, "verdict": shown, "intent": decided.value, "rules": list(decided.rules),
                "intent_reason": decided.reason, "via": where.via, "to": to, "judged": bool(where.targets)}

    def policy_findings(self, rows: list[dict[str, Any]], endpoints: dict[tuple[str, int], dict[str, Any]]
                        ) -> list[Finding]:
        out = []
        for r in rows:
            if not r.get("judged") or r.get("reason") == "not-probed":
                continue
            rule = next((x for x in intent_rules() if x.intent == r["intent"] and r["state"] in x.states), None)
            if rule is None:
                continue
            ep = endpoints[(r["host"], r["port"])]
            kind = r.get("kind") or ep.get("kind")
            declared = registry.kind(kind)
            address = f"{r['host']}:{r['port']}"
            fields = {"vantage": r["vantage"], "address": address, "kind": kind or "unidentified",
                      "pod": ", ".join(sorted({t.rpartition(':')[0] for t in r["to"]})) or "?",
                      "pod_port": ", ".join(sorted({t.rpartition(':')[2] for t in r["to"]})) or "?",
                      "via": r["via"], "rules": ", ".join(r["rules"]) or "no rule", "state": r["state"],
                      "reason": r["intent_reason"]}
            evidence = [f"intent (NetworkPolicy, from {r['vantage']} to {', '.join(r['to']) or r['via']}): {r['intent']}: "
                        f"{r['intent_reason']}",
                        f"measured from {r['vantage']} through {r['via']}: {r['state']}: {r['evidence']}"]
            if ep.get("kind"):
                evidence.append(f"probe result: {ep['kind']}, transport {ep.get('transport')}, authenticated "
                                f"{ep.get('authenticated')}")
            vector = (declared.policy_cvss if declared else None) if rule.cvss == FROM_KIND else rule.cvss
            out.append(Finding(rule=f"{rule.id}@{r['segment']}", severity=rule.severity, host=r["host"],
                               port=r["port"], title=rule.title.format(**fields), evidence=evidence,
                               remediation=rule.remediation.format(**fields), references=list(rule.references),
                               compliance=rule.compliance, cvss_vector=vector,
                               cvss_score=scores(vector)[1] if vector else None,
                               context=f"seen from {r['vantage']} ({r['via']})"))
        return out

    def trust_context(self, finding: Finding, rows: list[dict[str, Any]]) -> None:
        """A NetworkPolicy names no trust levels, so a finding's severity is left as its rule set it."""


def load_policy_spec(spec: str) -> VantagePolicy:
    """`--policy FILE` (segments, TOML) or `--policy k8s:SNAPSHOT[,SNAPSHOT...]` / `k8s:` (the live API)."""
    if spec.startswith("k8s:"):
        from netaudit.targets.k8s import read_snapshot

        return K8sPolicy(spec, read_snapshot(spec))
    from netaudit.policy.segments import load_policy

    return load_policy(spec)
