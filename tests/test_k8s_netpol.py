"""The NetworkPolicy engine against truth tables, in the manner of the Kubernetes e2e netpol suite
(test/e2e/network/netpol: namespaces x, y, z, pods a, b, c, ports 80/81, TCP and UDP) and cyclonus:
each case is a set of policies and the full expected matrix from every pod to every pod."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fnmatch import fnmatch

import pytest

from netaudit.core.errors import UsageError
from netaudit.policy.netpol import ExternalAddress, NodeTraffic, PolicyEngine, UnlabeledPod, Verdict, verdict
from netaudit.targets.k8s_snapshot import Snapshot, load_snapshot, snapshot_from_documents

A, D, U = "allowed", "denied", "unknown"
NAMESPACES = ("x", "y", "z")
PODS = ("a", "b", "c")
ALL = [f"{ns}/{pod}" for ns in NAMESPACES for pod in PODS]
# Every model pod serves 80 and 81 over TCP and UDP; the TCP ports are named as the e2e model names them.
SERVER_PORTS = [
    {"name": "serve-80", "containerPort": 80, "protocol": "TCP"},
    {"name": "serve-81", "containerPort": 81, "protocol": "TCP"},
    {"name": "serve-80-udp", "containerPort": 80, "protocol": "UDP"},
    {"name": "serve-81-udp", "containerPort": 81, "protocol": "UDP"},
]


def pod_doc(namespace: str, name: str, labels: dict, ip: str, node: str, *, host_network: bool = False,
            host_ip: str | None = None) -> dict:
    return {
        "kind": "Pod",
        "metadata": {"namespace": namespace, "name": name, "labels": labels},
        "spec": {"nodeName": node, "hostNetwork": host_network,
                 "containers": [{"name": "server", "ports": SERVER_PORTS}]},
        "status": {"phase": "Running", "podIPs": [{"ip": ip}], **({"hostIP": host_ip} if host_ip else {})},
    }


def model(*policies: dict, namespaces: bool = True) -> Snapshot:
    """x, y, z labelled ns=<name>; pods labelled pod=<name>, IP 10.0.<ns>.<pod>, node node-<pod>. The b pods
    also carry tier=backend, which the other pods lack (for NotIn, Exists and DoesNotExist)."""
    docs: list[dict] = []
    for i, ns in enumerate(NAMESPACES, 1):
        if namespaces:
            docs.append({"kind": "Namespace", "metadata": {"name": ns, "labels": {"ns": ns}}})
        for j, name in enumerate(PODS, 1):
            labels = {"pod": name, **({"tier": "backend"} if name == "b" else {})}
            docs.append(pod_doc(ns, name, labels, f"10.0.{i}.{j}", f"node-{name}"))
    return snapshot_from_documents([*docs, *policies])


def netpol(namespace: str, name: str, **spec: object) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": namespace, "name": name}, "spec": spec}


def expect(default: str, *edits: tuple[str, str, str]) -> dict[tuple[str, str], str]:
    """The e2e suite's Reachability: a default for every (source, destination), then edits applied in
    order, each (source glob, destination glob, value). A pod always reaches itself."""
    cells = {(s, d): default for s in ALL for d in ALL}
    for src, dst, value in edits:
        for s, d in cells:
            if fnmatch(s, src) and fnmatch(d, dst):
                cells[s, d] = value
    for p in ALL:
        cells[p, p] = A
    return cells


def truth_table(cells: dict[tuple[str, str], str]) -> str:
    """cyclonus's grid: rows are sources, columns destinations; . allowed, X denied, ? unknown."""
    mark = {A: ".", D: "X", U: "?"}
    lines = ["    " + " ".join(f"{d:>3}" for d in ALL)]
    lines += [f"{s:>3} " + " ".join(f"{mark[cells[s, d]]:>3}" for d in ALL) for s in ALL]
    return "\n".join(lines)


def observed(snapshot: Snapshot, port: int, protocol: str) -> dict[tuple[str, str], str]:
    pods = {p.key: p for p in snapshot.pods}
    return {(s, d): verdict(snapshot, pods[s], pods[d], port, protocol).value for s in ALL for d in ALL}


@dataclass
class Case:
    name: str
    policies: list[dict]
    # (port, protocol) -> the expected matrix
    matrices: dict[tuple[int, str], dict[tuple[str, str], str]]
    namespaces: bool = True
    # further (source, destination, port, protocol, value) checks for sources that are not model pods
    extra: list[tuple[object, str, int, str, str]] = field(default_factory=list)


def labels(**match: str) -> dict:
    return {"matchLabels": match}


DENY_ALL = {"podSelector": {}}
POD_A = {"podSelector": labels(pod="a")}
NAME_Y = {"matchLabels": {"kubernetes.io/metadata.name": "y"}}
CASES = [
    Case("default allow: no policy", [], {
        (80, "TCP"): expect(A), (81, "TCP"): expect(A), (80, "UDP"): expect(A),
    }, extra=[(UnlabeledPod("x"), "x/a", 80, "TCP", A), (ExternalAddress("0.0.0.0/0"), "x/a", 80, "TCP", A)]),
    Case("deny all ingress", [netpol("x", "deny-ingress", **DENY_ALL, policyTypes=["Ingress"])], {
        (80, "TCP"): expect(A, ("*", "x/*", D)), (81, "UDP"): expect(A, ("*", "x/*", D)),
    }, extra=[(UnlabeledPod("x"), "x/a", 80, "TCP", D), (UnlabeledPod("y"), "y/a", 80, "TCP", A)]),
    Case("deny all egress", [netpol("x", "deny-egress", **DENY_ALL, policyTypes=["Egress"])], {
        (80, "TCP"): expect(A, ("x/*", "*", D)),
    }, extra=[(UnlabeledPod("x"), "y/a", 80, "TCP", D), (UnlabeledPod("y"), "x/a", 80, "TCP", A)]),
    # No policyTypes and no egress section: Ingress only, so x's egress stays open.
    Case("allow from the same namespace", [netpol("x", "same-ns", **DENY_ALL, ingress=[{"from": [{"podSelector": {}}]}])], {
        (80, "TCP"): expect(A, ("*", "x/*", D), ("x/*", "x/*", A)),
    }, extra=[(UnlabeledPod("x"), "x/b", 80, "TCP", A), (UnlabeledPod("z"), "x/b", 80, "TCP", D)]),
    Case("podSelector AND namespaceSelector in one peer", [netpol("x", "and", **POD_A, ingress=[
        {"from": [{"namespaceSelector": labels(ns="y"), "podSelector": labels(pod="b")}]}])], {
        (80, "TCP"): expect(A, ("*", "x/a", D), ("y/b", "x/a", A)),
    }),
    Case("podSelector OR namespaceSelector as two peers", [netpol("x", "or", **POD_A, ingress=[
        {"from": [{"namespaceSelector": labels(ns="y")}, {"podSelector": labels(pod="b")}]}])], {
        (80, "TCP"): expect(A, ("*", "x/a", D), ("y/*", "x/a", A), ("x/b", "x/a", A)),
    }),
    Case("ipBlock with except, sources outside the cluster", [netpol("x", "block", **POD_A, ingress=[
        {"from": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.128/25"]}}]}])], {
        (80, "TCP"): expect(A, ("*", "x/a", D)),  # no pod address is in the block: selectors and blocks both miss
    }, extra=[
        (ExternalAddress("192.0.2.1"), "x/a", 80, "TCP", A),
        (ExternalAddress("192.0.2.0/25"), "x/a", 80, "TCP", A),
        (ExternalAddress("192.0.2.200"), "x/a", 80, "TCP", D),
        (ExternalAddress("192.0.2.0/24"), "x/a", 80, "TCP", U),  # half allowed, half excepted
        (ExternalAddress("0.0.0.0/0"), "x/a", 80, "TCP", U),
        (ExternalAddress("198.51.100.7"), "x/a", 80, "TCP", D),
        (ExternalAddress("2001:db8::1"), "x/a", 80, "TCP", D),
        (ExternalAddress("192.0.2.1"), "x/b", 80, "TCP", A),  # x/b is not selected
    ]),
    # ipBlock "should be cluster-external IPs": whether it matches pod addresses depends on the plugin.
    Case("ipBlock over pod addresses is implementation-defined", [netpol("x", "pods-block", **POD_A, ingress=[
        {"from": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.3.0/24"]}}]}])], {
        (80, "TCP"): expect(A, ("*", "x/a", D), ("x/*", "x/a", U), ("y/*", "x/a", U)),
    }, extra=[(UnlabeledPod("z"), "x/a", 80, "TCP", U)]),  # its address is unknown
    Case("named port", [netpol("x", "named", **POD_A, ingress=[{"ports": [{"port": "serve-81"}]}])], {
        (81, "TCP"): expect(A), (80, "TCP"): expect(A, ("*", "x/a", D)), (81, "UDP"): expect(A, ("*", "x/a", D)),
    }),
    Case("named port serve-80", [netpol("x", "named", podSelector={}, ingress=[{"ports": [{"protocol": "TCP", "port": "serve-80"}]}])], {
        (80, "TCP"): expect(A), (81, "TCP"): expect(A, ("*", "x/*", D)),
    }),
    Case("named port the pod does not declare", [netpol("x", "undeclared", **POD_A, ingress=[
        {"ports": [{"port": "serve-99"}]}, {"ports": [{"protocol": "UDP", "port": "serve-99"}]}])], {
        # The TCP rule cannot be resolved; the UDP one surely misses TCP traffic, so it does not blur the verdict.
        (80, "TCP"): expect(A, ("*", "x/a", U)), (81, "TCP"): expect(A, ("*", "x/a", U)), (80, "SCTP"): expect(A, ("*", "x/a", D)),
    }),
    Case("ports of one rule are ORed", [netpol("x", "ports", **POD_A, ingress=[
        {"from": [{"namespaceSelector": labels(ns="y")}], "ports": [{"port": 81}, {"protocol": "UDP", "port": 80}]}])], {
        (81, "TCP"): expect(A, ("*", "x/a", D), ("y/*", "x/a", A)), (80, "UDP"): expect(A, ("*", "x/a", D), ("y/*", "x/a", A)),
        (80, "TCP"): expect(A, ("*", "x/a", D)),
    }),
    Case("a port entry without port allows every port of its protocol", [netpol("x", "udp-any", **POD_A, ingress=[
        {"ports": [{"protocol": "UDP"}]}])], {
        (80, "UDP"): expect(A), (81, "UDP"): expect(A), (80, "TCP"): expect(A, ("*", "x/a", D)),
    }),
    Case("endPort range", [netpol("x", "range", **POD_A, ingress=[{"ports": [{"port": 81, "endPort": 90}]}])], {
        (80, "TCP"): expect(A, ("*", "x/a", D)), (81, "TCP"): expect(A),
    }),
    Case("endPort range ending on the port", [netpol("x", "range", **POD_A, ingress=[{"ports": [{"port": 79, "endPort": 80}]}])], {
        (80, "TCP"): expect(A), (81, "TCP"): expect(A, ("*", "x/a", D)),
    }),
    Case("NotIn matches pods without the key", [netpol("x", "notin", **POD_A, ingress=[{"from": [
        {"namespaceSelector": {},
         "podSelector": {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["backend"]}]}}]}])], {
        (80, "TCP"): expect(A, ("*/b", "x/a", D)),
    }),
    Case("Exists", [netpol("x", "exists", **POD_A, ingress=[{"from": [
        {"namespaceSelector": {}, "podSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}}]}])], {
        (80, "TCP"): expect(A, ("*", "x/a", D), ("*/b", "x/a", A)),
    }),
    Case("matchLabels AND matchExpressions", [netpol("x", "both", **POD_A, ingress=[{"from": [
        {"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "In", "values": ["y", "z"]}]},
         "podSelector": {"matchLabels": {"pod": "b"},
                         "matchExpressions": [{"key": "tier", "operator": "In", "values": ["backend"]}]}}]}])], {
        (80, "TCP"): expect(A, ("*", "x/a", D), ("[yz]/b", "x/a", A)),
    }),
    Case("DoesNotExist, and NotIn on namespaces", [netpol("x", "absent", **POD_A, ingress=[{"from": [
        {"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["z"]}]},
         "podSelector": {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}}]}])], {
        (80, "TCP"): expect(A, ("*", "x/a", D), ("x/[ac]", "x/a", A), ("y/[ac]", "x/a", A)),
    }),
    # policyTypes left out with an egress section: the policy isolates both directions.
    Case("policyTypes omitted with egress rules", [netpol("x", "egress-rules", **DENY_ALL, egress=[
        {"to": [{"namespaceSelector": labels(ns="y")}]}])], {
        (80, "TCP"): expect(A, ("*", "x/*", D), ("x/*", "*", D), ("x/*", "y/*", A)),
    }),
    Case("policyTypes omitted with an empty egress list", [netpol("x", "empty-egress", **DENY_ALL, egress=[])], {
        (80, "TCP"): expect(A, ("*", "x/*", D)),
    }),
    Case("egress and ingress are both required", [
        netpol("x", "a-egress", **POD_A, policyTypes=["Egress"], egress=[
            {"to": [{"namespaceSelector": labels(ns="y")}], "ports": [{"port": 80}]}]),
        netpol("y", "b-ingress", podSelector=labels(pod="b"), ingress=[
            {"from": [{"namespaceSelector": labels(ns="x"), "podSelector": labels(pod="c")}]}]),
    ], {
        (80, "TCP"): expect(A, ("x/a", "*", D), ("x/a", "y/*", A), ("*", "y/b", D), ("x/c", "y/b", A)),
        (81, "TCP"): expect(A, ("x/a", "*", D), ("*", "y/b", D), ("x/c", "y/b", A)),
    }),
    # Egress allows x/b to y/c on 80 only, ingress lets x/b into y/c on 81 only: no port is allowed by both.
    Case("both directions must allow the same port", [
        netpol("x", "b-to-c-80", podSelector=labels(pod="b"), policyTypes=["Egress"], egress=[
            {"to": [{"namespaceSelector": {}, "podSelector": labels(pod="c")}], "ports": [{"port": 80}]}]),
        netpol("y", "c-from-b-81", podSelector=labels(pod="c"), ingress=[
            {"from": [{"namespaceSelector": labels(ns="x"), "podSelector": labels(pod="b")}],
             "ports": [{"port": 81}]}]),
    ], {
        (80, "TCP"): expect(A, ("x/b", "*", D), ("x/b", "*/c", A), ("*", "y/c", D)),
        (81, "TCP"): expect(A, ("x/b", "*", D), ("*", "y/c", D), ("x/b", "y/c", D)),
    }),
    Case("a pod always reaches itself", [netpol("x", "deny-both", **DENY_ALL, policyTypes=["Ingress", "Egress"], ingress=[], egress=[])], {
        (80, "TCP"): expect(A, ("x/*", "*", D), ("*", "x/*", D)),
    }),
    Case("union of two policies", [
        netpol("x", "from-b", **POD_A, ingress=[{"from": [{"podSelector": labels(pod="b")}]}]),
        netpol("x", "from-z", **POD_A, ingress=[{"from": [{"namespaceSelector": labels(ns="z")}]}]),
    ], {
        (80, "TCP"): expect(A, ("*", "x/a", D), ("x/b", "x/a", A), ("z/*", "x/a", A)),
    }),
    Case("protocol: UDP rule, TCP traffic", [netpol("x", "udp", **POD_A, ingress=[{"ports": [{"protocol": "UDP", "port": 80}]}])], {
        (80, "UDP"): expect(A), (80, "TCP"): expect(A, ("*", "x/a", D)), (81, "UDP"): expect(A, ("*", "x/a", D)),
    }),
    # Without Namespace objects only the kubernetes.io/metadata.name label of a namespace is known.
    Case("namespaceSelector without namespace labels", [netpol("x", "from-y", **POD_A, ingress=[
        {"from": [{"namespaceSelector": labels(ns="y")}]}])], {
        (80, "TCP"): expect(A, ("*", "x/a", U)),
    }, namespaces=False),
    Case("namespaceSelector on the name label without namespace objects", [netpol("x", "from-y", **POD_A, ingress=[
        {"from": [{"namespaceSelector": NAME_Y}, {"namespaceSelector": {}, "podSelector": labels(pod="c")}]}])], {
        (80, "TCP"): expect(A, ("*", "x/a", D), ("y/*", "x/a", A), ("*/c", "x/a", A)),
    }, namespaces=False),
    Case("a source namespace not in the snapshot", [netpol("x", "from-y", **POD_A, ingress=[
        {"from": [{"namespaceSelector": labels(ns="y")}]}])], {
        (80, "TCP"): expect(A, ("*", "x/a", D), ("y/*", "x/a", A)),
    }, extra=[(UnlabeledPod("q"), "x/a", 80, "TCP", U), (UnlabeledPod("y"), "x/a", 80, "TCP", A),
              (UnlabeledPod("z"), "x/a", 80, "TCP", D)]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_truth_table(case: Case) -> None:
    snapshot = model(*case.policies, namespaces=case.namespaces)
    for (port, protocol), expected in case.matrices.items():
        got = observed(snapshot, port, protocol)
        assert got == expected, (f"{protocol}/{port}\nexpected:\n{truth_table(expected)}\n"
                                 f"observed:\n{truth_table(got)}")
    for source, dest, port, protocol, value in case.extra:
        result = verdict(snapshot, source, snapshot.pod(*dest.split("/")), port, protocol)
        assert result.value == value, (source, dest, port, protocol, result)


def test_rules_and_reasons_name_what_decides() -> None:
    snapshot = model(
        netpol("x", "from-b", **POD_A, ingress=[{"from": [{"podSelector": labels(pod="b")}]}]),
        netpol("x", "from-z", **POD_A, ingress=[
            {"ports": [{"port": 81}]}, {"from": [{"namespaceSelector": labels(ns="z")}]}]),
        netpol("x", "named", podSelector=labels(pod="c"), ingress=[{"ports": [{"port": "metrics"}]}]),
    )
    xa, xc, xb, zb = (snapshot.pod(*p.split("/")) for p in ("x/a", "x/c", "x/b", "z/b"))
    allowed = verdict(snapshot, zb, xa, 81)
    assert allowed == Verdict(A, ("x/from-z#ingress[0]", "x/from-z#ingress[1]"),
                              "no NetworkPolicy selects z/b for egress; "
                              "ingress from z/b is allowed by x/from-z#ingress[0], x/from-z#ingress[1]")
    denied = verdict(snapshot, snapshot.pod("y", "b"), xa, 80)
    assert denied.rules == ("x/from-b#ingress", "x/from-z#ingress")
    assert denied.reason == "x/a is isolated for ingress by x/from-b#ingress, x/from-z#ingress and no rule allows TCP/80 from y/b"
    unknown = verdict(snapshot, xb, xc, 80)
    assert unknown.value == U and unknown.rules == ("x/named#ingress[0]",)
    assert "declares no TCP port named 'metrics'" in unknown.reason
    assert verdict(snapshot, xa, xa, 80).reason == "x/a is the source itself, and a pod cannot block access to itself"


def test_unknown_namespace_reason() -> None:
    snapshot = model(netpol("x", "from-y", podSelector={}, ingress=[{"from": [{"namespaceSelector": labels(ns="y")}]}]),
                     namespaces=False)
    result = verdict(snapshot, snapshot.pod("y", "a"), snapshot.pod("x", "a"), 80)
    assert result == Verdict(U, ("x/from-y#ingress[0]",), "namespace y is not in the snapshot, so its labels are unknown")


def test_external_block_reason_names_each_part() -> None:
    block = {"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.128/25"]}}
    snapshot = model(netpol("x", "block", podSelector={}, ingress=[{"from": [block]}]))
    result = verdict(snapshot, ExternalAddress("192.0.2.0/24"), snapshot.pod("x", "a"), 80)
    assert result.value == U and result.rules == ("x/block#ingress[0]", "x/block#ingress")
    assert result.reason == "the verdict differs within 192.0.2.0/24: allowed for 192.0.2.0/25; denied for 192.0.2.128/25"


def node_model(*policies: dict) -> Snapshot:
    """Pods x/a on node-1 and x/b on node-2, and a hostNetwork pod infra/h on node-1 (its IP is node-1's)."""
    return snapshot_from_documents([
        {"kind": "Namespace", "metadata": {"name": "x"}},
        {"kind": "Namespace", "metadata": {"name": "infra"}},
        pod_doc("x", "a", {"pod": "a"}, "10.0.1.1", "node-1", host_ip="192.168.0.1"),
        pod_doc("x", "b", {"pod": "b"}, "10.0.1.2", "node-2", host_ip="192.168.0.2"),
        pod_doc("infra", "h", {"pod": "h"}, "192.168.0.1", "node-1", host_network=True, host_ip="192.168.0.1"),
        *policies,
    ])


@pytest.mark.parametrize(("policies", "source", "dest", "value"), [
    # Traffic from a pod's own node is always allowed; from another node it needs a rule.
    ([netpol("x", "deny", **DENY_ALL)], NodeTraffic("node-1"), "x/a", A),
    ([netpol("x", "deny", **DENY_ALL)], NodeTraffic("node-2"), "x/a", D),
    ([netpol("x", "deny", **DENY_ALL)], NodeTraffic("node-1"), "x/b", D),
    # A node's address in an ipBlock: plugins differ on matching in-cluster addresses.
    ([netpol("x", "nodes", **DENY_ALL, ingress=[{"from": [{"ipBlock": {"cidr": "192.168.0.0/24"}}]}])], NodeTraffic("node-1"), "x/b", U),
    ([netpol("x", "nodes", **DENY_ALL, ingress=[{"from": [{"ipBlock": {"cidr": "172.16.0.0/12"}}]}])], NodeTraffic("node-1"), "x/b", D),
    # hostNetwork: treated as node traffic (most plugins) or as a pod (others); certain only when both agree.
    ([], "infra/h", "x/a", A),
    ([netpol("x", "deny", **DENY_ALL)], "infra/h", "x/a", U),  # own node vs isolated pod
    ([netpol("x", "deny", **DENY_ALL)], "infra/h", "x/b", D),  # another node: denied either way
    ([netpol("x", "from-infra", **DENY_ALL,
             ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "infra"}}}]}])],
     "infra/h", "x/b", U),  # selectors ignore hostNetwork pods under the node reading
    ([netpol("x", "all", **DENY_ALL, ingress=[{}])], "infra/h", "x/b", A),  # an empty rule matches every source
    # hostNetwork destinations, and egress to a pod's own node.
    ([netpol("infra", "deny", **DENY_ALL)], "x/a", "infra/h", U),
    ([netpol("x", "deny-egress", **DENY_ALL, policyTypes=["Egress"])], "x/a", "infra/h", U),  # x/a is on h's node
    ([netpol("x", "deny-egress", **DENY_ALL, policyTypes=["Egress"])], "x/b", "infra/h", D),
])
def test_node_and_host_network(policies: list[dict], source: object, dest: str, value: str) -> None:
    snapshot = node_model(*policies)
    if isinstance(source, str):
        source = snapshot.pod(*source.split("/"))
    result = verdict(snapshot, source, snapshot.pod(*dest.split("/")), 80)  # type: ignore[arg-type]
    assert result.value == value, result


def test_host_network_reason() -> None:
    snapshot = node_model(netpol("x", "deny", **DENY_ALL))
    result = verdict(snapshot, snapshot.pod("infra", "h"), snapshot.pod("x", "a"), 80)
    assert result.rules == ("x/deny#ingress",)
    assert result.reason == ("NetworkPolicy for hostNetwork pods is implementation-defined: it is allowed where the plugin treats "
                             "them as node traffic (the most common) and denied where it applies policies to them as to any pod")
    own = verdict(snapshot, NodeTraffic("node-1"), snapshot.pod("x", "a"), 80)
    assert own == Verdict(A, (), "traffic between a pod and its own node (node-1) is always allowed")


@pytest.mark.parametrize(("args", "message"), [
    ((0, "TCP"), "port must be an integer 1-65535, got 0"),
    ((True, "TCP"), "port must be an integer 1-65535, got True"),
    ((80, "tcp"), "protocol must be one of TCP, UDP, SCTP, got 'tcp'"),
])
def test_bad_queries(args: tuple, message: str) -> None:
    snapshot = model()
    with pytest.raises(UsageError, match=message):
        verdict(snapshot, UnlabeledPod("x"), snapshot.pod("x", "a"), *args)


@pytest.mark.parametrize("text", ["10.0.0.1/8", "not-an-ip", "300.1.1.1"])
def test_bad_external_address(text: str) -> None:
    with pytest.raises(UsageError, match="not an IP address or CIDR"):
        ExternalAddress(text)


def test_ten_thousand_pods() -> None:
    """Selection is worked out once per snapshot; each verdict then only reads the rules that apply."""
    docs: list[dict] = []
    for n in range(20):
        ns = f"ns-{n}"
        docs.append({"kind": "Namespace", "metadata": {"name": ns, "labels": {"team": f"t{n % 4}"}}})
        docs.append(netpol(ns, "deny", podSelector={}, policyTypes=["Ingress", "Egress"]))
        docs.append(netpol(ns, "web", podSelector=labels(app="web"), ingress=[
            {"from": [{"namespaceSelector": labels(team="t0"), "podSelector": {"matchExpressions": [
                {"key": "role", "operator": "In", "values": ["client", "probe"]}]}}], "ports": [{"port": "serve-80"}]}]))
        docs.append(netpol(ns, "out", podSelector=labels(role="client"), egress=[{"to": [{"namespaceSelector": {}}]}]))
        for i in range(500):
            pod_labels = {"app": "web" if i % 2 else "db", "role": "client" if i % 3 == 0 else "server"}
            docs.append(pod_doc(ns, f"pod-{i}", pod_labels, f"10.{n}.{i // 250}.{i % 250 + 1}", f"node-{i % 50}"))
    started = time.monotonic()
    snapshot = snapshot_from_documents(docs)
    engine = PolicyEngine(snapshot)
    pods = snapshot.pods
    assert len(pods) == 10_000
    values = [engine.verdict(pods[(i * 7919) % 10_000], pods[(i * 104729) % 10_000], 80).value for i in range(10_000)]
    elapsed = time.monotonic() - started
    assert set(values) <= {A, D} and A in values and D in values
    assert elapsed < 30, elapsed  # about two seconds on one core



@pytest.fixture(scope="module")
def cluster() -> Snapshot:
    from pathlib import Path
    return load_snapshot([str(Path(__file__).parent / "k8s" / "tfjob-cluster.yaml")])


@pytest.mark.parametrize(("source", "dest", "port", "value", "rules"), [
    # ml-training admits only its own pods, on 2222.
    (UnlabeledPod("apps"), "ml-training/mnist-worker-0", 2222, D, ("ml-training/training-peers-only#ingress",)),
    (UnlabeledPod("corp"), "ml-training/mnist-chief-0", 2222, D, ("ml-training/training-peers-only#ingress",)),
    (ExternalAddress("0.0.0.0/0"), "ml-training/mnist-ps-0", 2222, D, ("ml-training/training-peers-only#ingress",)),
    (ExternalAddress("::/0"), "ml-training/mnist-chief-0", 2222, D, ("ml-training/training-peers-only#ingress",)),
    (UnlabeledPod("ml-training"), "ml-training/mnist-ps-0", 2222, A, ("ml-training/training-peers-only#ingress[0]",)),
    (UnlabeledPod("ml-training"), "ml-training/mnist-ps-0", 6006, D, ("ml-training/training-peers-only#ingress",)),
    ("ml-training/mnist-worker-1", "ml-training/mnist-ps-0", 2222, A, ("ml-training/training-peers-only#ingress[0]",)),
    # TF Serving's gRPC port admits apps only; its REST port nobody.
    (UnlabeledPod("apps"), "ml-serving/resnet-6b8f9c7d5-x2x9q", 8500, A, ("ml-serving/resnet-grpc-from-apps#ingress[0]",)),
    (UnlabeledPod("apps"), "ml-serving/resnet-6b8f9c7d5-x2x9q", 8501, D, ("ml-serving/resnet-grpc-from-apps#ingress",)),
    (UnlabeledPod("corp"), "ml-serving/resnet-6b8f9c7d5-x2x9q", 8500, D, ("ml-serving/resnet-grpc-from-apps#ingress",)),
    (ExternalAddress("0.0.0.0/0"), "ml-serving/resnet-6b8f9c7d5-x2x9q", 8500, D, ("ml-serving/resnet-grpc-from-apps#ingress",)),
    ("ml-training/mnist-chief-0", "ml-serving/resnet-6b8f9c7d5-x2x9q", 8500, D, ("ml-serving/resnet-grpc-from-apps#ingress",)),
    # The KServe predictor is selected by no policy: its undeclared gRPC port 9000 is open to everyone.
    (UnlabeledPod("apps"), "ml-serving/flowers-predictor-7c9d8f6b4-k8m2p", 9000, A, ()),
    (UnlabeledPod("corp"), "ml-serving/flowers-predictor-7c9d8f6b4-k8m2p", 9000, A, ()),
    (ExternalAddress("0.0.0.0/0"), "ml-serving/flowers-predictor-7c9d8f6b4-k8m2p", 9000, A, ()),
    (ExternalAddress("0.0.0.0/0"), "ml-serving/flowers-predictor-7c9d8f6b4-k8m2p", 8080, A, ()),
])
def test_tfjob_fixture_verdicts(cluster: Snapshot, source: object, dest: str, port: int, value: str, rules: tuple) -> None:
    if isinstance(source, str):
        source = cluster.pod(*source.split("/"))
    result = verdict(cluster, source, cluster.pod(*dest.split("/")), port)  # type: ignore[arg-type]
    assert (result.value, result.rules) == (value, rules), result
