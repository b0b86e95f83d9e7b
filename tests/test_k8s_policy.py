"""`scan --policy k8s:` and `report --policy k8s:`: the NetworkPolicy engine's intent for the scanning pod, next
to what a real scan measured. The "cluster" is a snapshot whose TF pod has the loopback address, served by a
real tf.distribute.Server; the policies intend what a non-enforcing CNI (this machine's loopback) does not do,
so every denied port that is open is the finding a cluster without NetworkPolicy enforcement gets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tf_worker
from netaudit.lab.processes import free_port
from netaudit.policy.k8s_policy import intent_rules

NETAUDIT = [sys.executable, "-m", "netaudit"]


def namespace(name: str, **labels: str) -> dict:
    return {"kind": "Namespace", "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **labels}}}


def pod(ns: str, name: str, ip: str, labels: dict, ports: list[dict], node: str = "node-1") -> dict:
    return {"kind": "Pod", "metadata": {"namespace": ns, "name": name, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "tensorflow", "image": "tensorflow/tensorflow:2.16.1",
                                                       "ports": ports}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "198.18.0.11"}}


def snapshot(tf: int, closed: int) -> dict:
    """ml/trainer-worker-0 at 127.0.0.1 declares the TF port `tf` and a port `closed` nothing listens on.
    ml admits only its own namespace, and corp on a named port the pod does not declare (unknown)."""
    items = [
        namespace("ml", team="ml"), namespace("apps", team="apps"), namespace("corp", team="corp"),
        pod("ml", "trainer-worker-0", "127.0.0.1",
            {"training.kubeflow.org/job-name": "trainer", "training.kubeflow.org/replica-type": "worker",
             "training.kubeflow.org/replica-index": "0"},
            [{"name": "tfjob-port", "containerPort": tf}, {"name": "debug", "containerPort": closed}]),
        pod("ml", "peer", "198.18.9.2", {"app": "peer"}, []),
        pod("apps", "scanner", "198.18.9.3", {"app": "netaudit"}, []),
        {"kind": "NetworkPolicy", "metadata": {"namespace": "ml", "name": "ml-only"},
         "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                  "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "ml"}}}]},
                              {"from": [{"namespaceSelector": {"matchLabels": {"team": "corp"}}}],
                               "ports": [{"port": "metrics"}]}]}},
    ]
    return {"apiVersion": "v1", "kind": "List", "items": items}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(snapshot path, TF port, closed port), with the TF worker running and the closed port held."""
    tmp = tmp_path_factory.mktemp("k8s-policy")
    with socket.socket() as held:  # bound, never listening: the pod port that answers RST
        held.bind(("127.0.0.1", 0))
        closed = held.getsockname()[1]
        tf = free_port()
        path = tmp / "cluster.json"
        path.write_text(json.dumps(snapshot(tf, closed)))
        with tf_worker(lambda *argv, **kw: subprocess.Popen(argv, **kw), tf):
            yield path, tf, closed


def scan(cluster, tmp_path: Path, *extra: str, env: dict | None = None, fmt: str = "json") -> tuple[int, dict]:
    path, _, _ = cluster
    out = tmp_path / f"scan.{fmt}"
    environ = {k: v for k, v in os.environ.items() if k not in ("POD_NAMESPACE", "POD_NAME")}
    proc = subprocess.run([*NETAUDIT, "scan", f"k8s:{path}", "--scope", "127.0.0.1/32", "--engine", "connect",
                           "--policy", f"k8s:{path}", "--format", fmt, "-o", str(out), "--store",
                           str(tmp_path / "history.sqlite"), "--timeout", "3", *extra],
                          capture_output=True, text=True, timeout=180, env={**environ, **(env or {})})
    assert proc.returncode in (0, 1), proc.stderr
    if fmt == "jsonl":
        from netaudit.results.stream import read_stream

        return proc.returncode, read_stream(str(out))
    return proc.returncode, json.loads(out.read_text())


def rules(data: dict) -> dict[tuple[str, int], dict]:
    return {(f["rule"], f["port"]): f for f in data["findings"] if f["rule"].startswith("k8s-netpol-")}


def test_denied_but_open_from_another_namespace(cluster, tmp_path):
    _, tf, closed = cluster
    code, data = scan(cluster, tmp_path, "--vantage", "k8s:apps/scanner", "--fail-on", "critical")
    assert code == 1 and data["segment"] == "apps/scanner" and data["vantage"] == "apps/scanner"
    assert data["policy"]["type"] == "k8s-networkpolicy" and data["policy"]["network_policies"] == ["ml/ml-only"]
    found = rules(data)
    assert set(found) == {("k8s-netpol-denied-but-open@apps/scanner", tf)}, found
    finding = found["k8s-netpol-denied-but-open@apps/scanner", tf]
    assert finding["severity"] == "critical" and finding["cvss_vector"]  # the tf-server kind's policy vector
    assert "ml/trainer-worker-0" in finding["title"] and "tf.distribute.Server" not in finding["title"]
    assert any("ml/ml-only#ingress" in line and "denied" in line for line in finding["evidence"])
    assert any(line.startswith("measured from apps/scanner through pod IP: open") for line in finding["evidence"])
    assert "does not enforce NetworkPolicy" in finding["remediation"]
    # The closed port is denied too, and blocked: as the policy wants, so no finding.
    assert not any(f["port"] == closed for f in data["findings"] if f["rule"].startswith("k8s-netpol-"))


def test_allowed_from_its_own_namespace_through_the_downward_api_in_a_stream(cluster, tmp_path):
    _, tf, closed = cluster
    code, data = scan(cluster, tmp_path, env={"POD_NAMESPACE": "ml", "POD_NAME": "peer"}, fmt="jsonl")
    assert data["segment"] == "ml/peer" and data["policy"]["type"] == "k8s-networkpolicy"
    found = rules(data)
    assert set(found) == {("k8s-netpol-allowed-but-closed@ml/peer", closed)}, found
    assert found["k8s-netpol-allowed-but-closed@ml/peer", closed]["severity"] == "info"
    assert [r["port"] for r in data["expected_unreachable"]] == []  # `debug` is no kind the policy judges


def test_unknown_is_listed_with_its_reason_also_with_workers(cluster, tmp_path):
    _, tf, closed = cluster
    code, data = scan(cluster, tmp_path, "--vantage", "k8s:corp", "--workers", "2")
    found = rules(data)
    assert set(found) == {("k8s-netpol-unknown@corp/(any pod)", tf), ("k8s-netpol-unknown@corp/(any pod)", closed)}
    reason = found["k8s-netpol-unknown@corp/(any pod)", tf]["remediation"]
    assert "declares no TCP port named 'metrics'" in reason


def test_report_applies_the_policy_to_scans_taken_without_it(cluster, tmp_path):
    path, tf, closed = cluster
    results = []
    for vantage in ("apps/scanner", "ml/peer"):
        out = tmp_path / f"{vantage.replace('/', '-')}.json"
        proc = subprocess.run([*NETAUDIT, "scan", f"k8s:{path}", "--scope", "127.0.0.1/32", "--engine", "connect",
                               "--vantage", f"k8s:{vantage}", "--format", "json", "-o", str(out), "--store",
                               str(tmp_path / "h.sqlite")], capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr
        results.append(str(out))
    report = tmp_path / "report.json"
    proc = subprocess.run([*NETAUDIT, "report", *results, "--policy", f"k8s:{path}", "--format", "json", "-o",
                           str(report), "--store", str(tmp_path / "h.sqlite")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    cells = {(r["vantage"], r["port"]): r for r in data["reachability"]}
    assert cells["k8s:apps/scanner", tf]["verdict"] == "open-not-allowed"
    assert cells["k8s:apps/scanner", tf]["intent"] == "denied"
    assert cells["k8s:ml/peer", tf]["verdict"] == "open-allowed"
    assert cells["k8s:ml/peer", tf]["rules"] == ["ml/ml-only#ingress[0]"]
    assert {f["rule"] for f in data["findings"] if f["rule"].startswith("k8s-")} == {
        "k8s-netpol-denied-but-open@apps/scanner"}
    text = subprocess.run([*NETAUDIT, "convert", str(report), "--format", "text"], capture_output=True, text=True,
                          timeout=60)
    assert "OPEN!" in text.stdout and "open+" in text.stdout, text.stdout


def test_a_vantage_not_in_the_snapshot_is_one_line(cluster, tmp_path):
    path, _, _ = cluster
    proc = subprocess.run([*NETAUDIT, "scan", f"k8s:{path}", "--scope", "127.0.0.1/32", "--policy", f"k8s:{path}",
                           "--vantage", "k8s:apps/nope"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "apps/nope" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_the_rules_are_data_and_cover_every_intent():
    assert {r.intent for r in intent_rules()} == {"allowed", "denied", "unknown"}
    denied = next(r for r in intent_rules() if r.intent == "denied")
    assert denied.severity == "critical" and denied.states == ("open",)


def test_the_shipped_k8s_rule_files_load():
    from netaudit.assess.k8s_identity import mismatch_rule

    assert mismatch_rule().id == "k8s-tf-task-mismatch" and mismatch_rule().why


GOOD_INTENT = {"id": "x", "when": {"intent": "denied", "state": ["open"]}, "severity": "critical", "title": "t",
               "why": "w", "remediation": "r"}


@pytest.mark.parametrize("change, message", [
    ({"whne": 1}, "takes only"),
    ({"when": None}, "needs "),
    ({"severity": "hgih"}, "severity 'hgih' is not one of"),
    ({"why": "two\nlines"}, "'why' must be one line"),
    ({"why": None}, "missing 'why'"),
    ({"when": {"intent": "maybe"}}, "when needs intent"),
    ({"when": {"intent": "denied", "state": ["opne"]}}, "when needs intent"),
    ({"cvss": "CVSS:3.1/AV:N"}, "does not parse"),
])
def test_a_broken_k8s_rule_is_a_clear_error_naming_it(change, message):
    """The loader both k8s rule files share (core/registry.check_data_rules) and the intent checks after it."""
    from netaudit.core.registry import RegistryError
    from netaudit.policy.k8s_policy import checked_intent_rules

    entry = {k: v for k, v in {**GOOD_INTENT, **change}.items() if v is not None}
    assert checked_intent_rules([GOOD_INTENT], "t.toml")[0].id == "x"
    with pytest.raises(RegistryError, match="t.toml") as caught:
        checked_intent_rules([entry], "t.toml")
    assert message in str(caught.value), caught.value


# --- where an address lands: the pod and pod port NetworkPolicy judges (no traffic) -------------------------

ROUTED = {"apiVersion": "v1", "kind": "List", "items": [
    namespace("ml", team="ml"), namespace("apps", team="apps"),
    pod("ml", "tf-0", "198.18.9.10", {"app": "tf", "tier": "a"}, [{"name": "grpc", "containerPort": 2222}]),
    pod("ml", "tf-1", "198.18.9.11", {"app": "tf", "tier": "b"}, [{"name": "grpc", "containerPort": 2223}]),
    {**pod("ml", "host-tf", "198.18.0.11", {"app": "host"}, [{"containerPort": 6006}]),
     "spec": {"nodeName": "node-1", "hostNetwork": True,
              "containers": [{"name": "tb", "ports": [{"containerPort": 6006}]}]}},
    pod("ml", "hp", "198.18.9.12", {"app": "hp"}, [{"containerPort": 8500, "hostPort": 18500}]),
    pod("apps", "client", "198.18.9.20", {"app": "client"}, []),
    {"kind": "Service", "metadata": {"namespace": "ml", "name": "tf"},
     "spec": {"type": "NodePort", "clusterIP": "198.18.40.1", "selector": {"app": "tf"},
              "ports": [{"port": 80, "targetPort": "grpc", "nodePort": 30222}]}},
    {"kind": "Service", "metadata": {"namespace": "ml", "name": "tf-a"},
     "spec": {"clusterIP": "198.18.40.2", "selector": {"tier": "a"}, "ports": [{"port": 2222}]}},
    {"kind": "Service", "metadata": {"namespace": "ml", "name": "tf-lb"},
     "spec": {"type": "LoadBalancer", "clusterIP": "198.18.40.3", "externalIPs": ["198.18.40.4"],
              "selector": {"tier": "a"}, "ports": [{"port": 2222, "nodePort": 30333}]},
     "status": {"loadBalancer": {"ingress": [{"ip": "198.18.40.5"}]}}},
    # externalTrafficPolicy Local: a client outside the cluster is handed to the node's own pods, its address
    # kept. lb-0 (node-1) is isolated by no policy, lb-1 (node-2) by deny-z2; node-3 runs none of them.
    pod("ml", "lb-0", "198.18.9.30", {"app": "lb"}, [{"containerPort": 2222}]),
    {**pod("ml", "lb-1", "198.18.9.31", {"app": "lb", "zone": "z2"}, [{"containerPort": 2222}], node="node-2"),
     "status": {"phase": "Running", "podIP": "198.18.9.31", "hostIP": "198.18.0.12"}},
    {**pod("apps", "elsewhere", "198.18.9.21", {"app": "other"}, [], node="node-3"),
     "status": {"phase": "Running", "podIP": "198.18.9.21", "hostIP": "198.18.0.13"}},
    {"kind": "Service", "metadata": {"namespace": "ml", "name": "lb-local"},
     "spec": {"type": "LoadBalancer", "clusterIP": "198.18.40.6", "externalIPs": ["198.18.40.7"],
              "externalTrafficPolicy": "Local", "selector": {"app": "lb"},
              "ports": [{"port": 2222, "nodePort": 30444}]}},
    # Two load balancers on one address, each with its own port.
    {"kind": "Service", "metadata": {"namespace": "ml", "name": "lb-http"},
     "spec": {"type": "LoadBalancer", "clusterIP": "198.18.40.8", "selector": {"app": "lb"},
              "externalTrafficPolicy": "Local", "ports": [{"port": 80, "targetPort": 2222}]},
     "status": {"loadBalancer": {"ingress": [{"ip": "198.18.50.1"}]}}},
    {"kind": "Service", "metadata": {"namespace": "ml", "name": "lb-grpc"},
     "spec": {"type": "LoadBalancer", "clusterIP": "198.18.40.9", "selector": {"zone": "z2"},
              "externalTrafficPolicy": "Local", "ports": [{"port": 443, "targetPort": 2222}]},
     "status": {"loadBalancer": {"ingress": [{"ip": "198.18.50.1"}]}}},
    {"kind": "NetworkPolicy", "metadata": {"namespace": "ml", "name": "deny-z2"},
     "spec": {"podSelector": {"matchLabels": {"zone": "z2"}}, "policyTypes": ["Ingress"]}},
    {"kind": "NetworkPolicy", "metadata": {"namespace": "ml", "name": "only-b-from-apps"},
     "spec": {"podSelector": {"matchLabels": {"tier": "b"}}, "policyTypes": ["Ingress"],
              "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "apps"}}}]}]}},
    {"kind": "NetworkPolicy", "metadata": {"namespace": "ml", "name": "deny-a"},
     "spec": {"podSelector": {"matchLabels": {"tier": "a"}}, "policyTypes": ["Ingress"]}},
]}


@pytest.mark.parametrize("host, port, via, to, value", [
    ("198.18.9.10", 2222, "pod IP", ["ml/tf-0:2222"], "denied"),
    ("198.18.9.11", 2223, "pod IP", ["ml/tf-1:2223"], "allowed"),
    # The Service's named targetPort resolves on each pod behind it; they disagree, so the Service is unknown.
    ("198.18.40.1", 80, "Service ml/tf ClusterIP address", ["ml/tf-0:2222", "ml/tf-1:2223"], "unknown"),
    ("198.18.0.11", 30222, "NodePort 30222 of Service ml/tf", ["ml/tf-0:2222", "ml/tf-1:2223"], "unknown"),
    ("198.18.40.2", 2222, "Service ml/tf-a ClusterIP address", ["ml/tf-0:2222"], "denied"),
    ("198.18.40.2", 2223, "Service ml/tf-a", [], "unknown"),
    # The same single pod, denied from apps/client by its pod IP and ClusterIP; through a NodePort, externalIP or
    # load balancer the source may be masqueraded as the node before NetworkPolicy sees it: unknown.
    ("198.18.40.3", 2222, "Service ml/tf-lb ClusterIP address", ["ml/tf-0:2222"], "denied"),
    ("198.18.40.4", 2222, "Service ml/tf-lb external or load-balancer address", ["ml/tf-0:2222"], "unknown"),
    ("198.18.40.5", 2222, "Service ml/tf-lb external or load-balancer address", ["ml/tf-0:2222"], "unknown"),
    ("198.18.0.11", 30333, "NodePort 30333 of Service ml/tf-lb", ["ml/tf-0:2222"], "unknown"),
    ("198.18.0.11", 6006, "hostNetwork pod on the node's address", ["ml/host-tf:6006"], "allowed"),
    ("198.18.0.11", 18500, "hostPort 18500 of a pod on node node-1", ["ml/hp:8500"], "allowed"),
    ("198.18.0.11", 9999, "node node-1", [], "unknown"),
    ("203.0.113.9", 2222, "address", [], "unknown"),
])
def test_where_an_address_lands(tmp_path, host, port, via, to, value):
    from netaudit.policy.k8s_policy import load_policy_spec

    path = tmp_path / "routed.json"
    path.write_text(json.dumps(ROUTED))
    policy = load_policy_spec(f"k8s:{path}")
    where, decided = policy.intent(policy.source("apps/client"), host, port)
    assert where.via == via and [f"{p.key}:{n}" for p, n in where.targets] == to
    assert decided.value == value, decided.reason
    if value == "unknown":
        assert decided.reason  # always said why
    if "NodePort" in via or "external" in via:
        assert "before or after NetworkPolicy" in decided.reason


OUTSIDE = "203.0.113.9"
INSIDE = "client inside the cluster does not get"


@pytest.mark.parametrize("source, host, port, to, value, why", [
    # From outside the cluster a Local NodePort reaches the pods of the node it was sent to, source kept.
    (OUTSIDE, "198.18.0.11", 30444, ["ml/lb-0:2222"], "allowed", None),
    (OUTSIDE, "198.18.0.12", 30444, ["ml/lb-1:2222"], "denied", None),
    (OUTSIDE, "198.18.0.13", 30444, [], "unknown", "no pod on node node-3: the node drops"),
    # From inside, kube-proxy hands the connection to any pod of the Service: not the node's alone.
    ("apps/client", "198.18.0.11", 30444, ["ml/lb-0:2222"], "unknown", INSIDE),
    ("apps/client", "198.18.0.13", 30444, [], "unknown", INSIDE),
    ("node node-1", "198.18.0.11", 30444, ["ml/lb-0:2222"], "unknown", INSIDE),
    # A Local external address: an outside client reaches every pod (the load balancer picks the node).
    (OUTSIDE, "198.18.40.7", 2222, ["ml/lb-0:2222", "ml/lb-1:2222"], "unknown", "ml/lb-1"),
    ("apps/client", "198.18.40.7", 2222, ["ml/lb-0:2222", "ml/lb-1:2222"], "unknown", INSIDE),
    # The same outside client through a Service with the default Cluster policy: unknown.
    (OUTSIDE, "198.18.40.4", 2222, ["ml/tf-0:2222"], "unknown", "externalTrafficPolicy: Cluster"),
    # Two Services on one load-balancer address: each port finds its own.
    (OUTSIDE, "198.18.50.1", 80, ["ml/lb-0:2222", "ml/lb-1:2222"], "unknown", "ml/lb-1"),
    (OUTSIDE, "198.18.50.1", 443, ["ml/lb-1:2222"], "denied", None),
    (OUTSIDE, "198.18.50.1", 8443, [], "unknown", "no Service on 198.18.50.1 has TCP port 8443"),
])
def test_external_traffic_policy_local_keeps_the_source(tmp_path, source, host, port, to, value, why):
    from netaudit.policy.k8s_policy import load_policy_spec

    path = tmp_path / "routed.json"
    path.write_text(json.dumps(ROUTED))
    policy = load_policy_spec(f"k8s:{path}")
    where, decided = policy.intent(policy.source(source), host, port)
    assert [f"{p.key}:{n}" for p, n in where.targets] == to
    assert decided.value == value, decided.reason
    assert why is None or why in decided.reason, decided.reason
    if value == "denied":
        assert decided.rules == ("ml/deny-z2#ingress",), decided.rules


def _routing_by_scan(snapshot, pod) -> list:
    """The definition routing_services indexes: every Service of the pod's namespace, checked one by one."""
    sliced = {(s.namespace, s.service) for s in snapshot.endpoint_slices if s.service and pod.name in s.pods}
    return [s for s in snapshot.services if s.namespace == pod.namespace and (
        all(pod.labels.get(k) == v for k, v in s.selector.items()) if s.selector else
        (s.namespace, s.name) in sliced)]


def test_the_routing_index_gives_what_a_scan_of_every_service_gives(tmp_path):
    from netaudit.targets.k8s import routing_services
    from netaudit.targets.k8s_snapshot import load_snapshot

    fixtures = Path(__file__).parent / "k8s"
    knative = tmp_path / "knative.yaml"  # a Service without selector, routed by its EndpointSlice alone
    from test_k8s_live import KNATIVE
    knative.write_text(KNATIVE)
    routed = tmp_path / "routed.json"
    routed.write_text(json.dumps(ROUTED))
    readings = [load_snapshot([str(p)]) for p in sorted(fixtures.iterdir())]
    readings += [load_snapshot([str(fixtures / "tfjob-cluster.yaml"), str(knative)]), load_snapshot([str(routed)])]
    compared = 0
    for snapshot in readings:
        for pod in snapshot.pods:
            expected = _routing_by_scan(snapshot, pod)
            assert routing_services(snapshot, pod) == expected, pod.key
            compared += bool(expected)
    assert compared > 5, "pods with Services were compared"
    assert any(not s.selector for snap in readings for pod in snap.pods for s in routing_services(snap, pod)), \
        "a Service without selector was routed to a pod"


def test_the_history_scope_of_a_k8s_policy_survives_pod_and_policy_changes(tmp_path):
    """Two readings of one cluster differ in pods and NetworkPolicies; runs against it must still compare."""
    from netaudit.policy.k8s_policy import load_policy_spec
    from netaudit.results.history import scope_key

    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(ROUTED))
    before = load_policy_spec(f"k8s:{path}").to_dict()
    changed = {**ROUTED, "items": [*ROUTED["items"], pod("ml", "tf-2", "198.18.9.13", {"app": "tf"}, []),
                                   {"kind": "NetworkPolicy", "metadata": {"namespace": "apps", "name": "new"},
                                    "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}]}
    path.write_text(json.dumps(changed))
    after = load_policy_spec(f"k8s:{path}").to_dict()
    assert (before["pods"], len(before["network_policies"])) != (after["pods"], len(after["network_policies"]))

    def report(policy: dict) -> dict:
        return {"reachability": [], "scans": [{"vantage": "apps/client"}], "policy": policy}

    assert scope_key(report(before)) == scope_key(report(after))
    other = tmp_path / "other.json"
    other.write_text(json.dumps(ROUTED))
    assert scope_key(report(load_policy_spec(f"k8s:{other}").to_dict())) != scope_key(report(before))


def test_both_kinds_of_policy_answer_every_call_a_scan_and_a_report_make():
    """reachability.VantagePolicy is a Protocol, checked by no one at run time: a method renamed or given
    another parameter in one policy kind would fail only when a scan used that kind."""
    import inspect

    from netaudit.policy.k8s_policy import K8sPolicy
    from netaudit.policy.reachability import VantagePolicy
    from netaudit.policy.segments import Policy

    calls = {name: inspect.signature(f) for name, f in vars(VantagePolicy).items()
             if inspect.isfunction(f) and not name.startswith("_")}
    assert set(calls) == {"to_dict", "locate", "place", "row", "policy_findings", "trust_context"}
    for kind in (Policy, K8sPolicy):
        answered = {name: list(inspect.signature(getattr(kind, name)).parameters) for name in calls}
        assert answered == {name: list(sig.parameters) for name, sig in calls.items()}, kind.__name__
