"""Reading cluster snapshots: kubectl's List, the API's typed lists, multi-document YAML, merging, bounds,
and one-line errors for every malformed input."""

from __future__ import annotations

import json
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from netaudit.core.errors import UsageError
from netaudit.targets import k8s_snapshot as snapshot_module
from netaudit.targets.k8s_snapshot import (
    ContainerPort, IPBlock, LabelSelector, OwnerRef, PolicyPeer, PolicyPort, PolicyRule, SelectorRequirement, ServicePort,
    load_snapshot, snapshot_from_documents,
)

FIXTURES = Path(__file__).parent / "k8s"


def test_kubectl_list_with_mixed_kinds() -> None:
    snap = load_snapshot([str(FIXTURES / "kubectl-list.json")])
    assert dict(snap.namespaces["web"].labels) == {"kubernetes.io/metadata.name": "web", "tier": "front"}
    (pod,) = snap.pods
    assert (pod.key, pod.node, pod.phase, pod.host_network) == ("web/frontend-5d8f7c9b6-abcde", "node-1", "Running", False)
    assert pod.owner == OwnerRef("ReplicaSet", "frontend-5d8f7c9b6")
    web, sidecar = pod.containers
    assert web.ports == (ContainerPort(8080, "TCP", "http"), ContainerPort(9090, "TCP", None, 9090))
    # Literal values only: TOKEN comes from a Secret; EMPTY has no value, which the API reads as "".
    assert dict(web.env) == {"MODE": "prod", "EMPTY": ""}
    assert (sidecar.name, sidecar.ports, dict(sidecar.env)) == ("sidecar", (), {})
    assert pod.ports_named("http", "TCP") == {8080} and pod.ports_named("http", "UDP") == frozenset()
    (svc,) = snap.services
    assert (svc.type, svc.headless, dict(svc.selector)) == ("NodePort", False, {"app": "frontend"})
    assert svc.ports == (ServicePort(80, "http", "TCP", "http", 30080),)
    assert svc.external_ips == (ip_address("203.0.113.5"),) and svc.load_balancer_ips == ()
    (policy,) = snap.network_policies
    assert policy.policy_types == {"Ingress", "Egress"}  # omitted, and an egress section is present
    assert policy.pod_selector == LabelSelector({"app": "frontend"}, ())
    assert policy.ingress == (PolicyRule(
        (PolicyPeer(ip_block=IPBlock(ip_network("0.0.0.0/0"), (ip_network("10.0.0.0/8"),))),), (PolicyPort("TCP", "http"),)),)
    assert policy.egress[0].ports == (PolicyPort("UDP", 53),)
    assert policy.spec["podSelector"] == {"matchLabels": {"app": "frontend"}}
    (revision,) = snap.custom_objects["Revision"]
    assert (revision.api_version, revision.namespace, revision.name) == ("serving.knative.dev/v1", "web", "hello-00001")
    assert dict(snap.ignored_kinds) == {"ControllerRevision": 1, "Deployment": 1}


def test_dual_stack_addresses() -> None:
    snap = load_snapshot([str(FIXTURES / "kubectl-list.json")])
    pod, svc = snap.pods[0], snap.services[0]
    assert pod.ips == (ip_address("10.244.1.7"), ip_address("fd00:244:1::7"))
    assert pod.host_ips == (ip_address("192.168.10.1"), ip_address("fd00:10::1"))
    assert svc.cluster_ips == (ip_address("10.96.12.34"), ip_address("fd00:96::1234"))


def test_typed_list_items_without_kind() -> None:
    snap = load_snapshot([str(FIXTURES / "podlist.json")])
    db, pending = snap.pods
    assert (db.key, db.ips, db.owner) == ("data/db-0", (ip_address("10.244.2.9"),), OwnerRef("StatefulSet", "db"))
    assert (pending.key, pending.ips, pending.node, pending.phase) == ("data/pending-x", (), None, "Pending")


def test_several_files_merge(tmp_path: Path) -> None:
    again = tmp_path / "again.json"
    again.write_text((FIXTURES / "podlist.json").read_text())  # the same objects twice: merged, not refused
    snap = load_snapshot([str(FIXTURES / "kubectl-list.json"), str(FIXTURES / "podlist.json"), str(again)])
    assert [p.key for p in snap.pods] == ["data/db-0", "data/pending-x", "web/frontend-5d8f7c9b6-abcde"]
    changed = json.loads((FIXTURES / "podlist.json").read_text())
    changed["items"][0]["metadata"]["labels"]["app"] = "other"
    again.write_text(json.dumps(changed))
    with pytest.raises(UsageError) as caught:
        load_snapshot([str(FIXTURES / "podlist.json"), str(again)])
    assert str(caught.value) == (f"{again}: Pod data/db-0: defined again with different content "
                                 f"(first in {FIXTURES / 'podlist.json'}): merge only files of one moment")


def test_multi_document_yaml(tmp_path: Path) -> None:
    path = tmp_path / "multi.yaml"
    path.write_text("---\n"
                    "kind: Namespace\nmetadata: {name: a}\n"
                    "---\n"
                    "# a comment-only document is empty\n"
                    "---\n"
                    "kind: ServiceList\napiVersion: v1\nitems:\n"
                    "- metadata: {name: s, namespace: a}\n  spec: {clusterIP: None, ports: [{port: 53, protocol: UDP}]}\n"
                    "---\n")
    snap = load_snapshot([str(path)])
    assert list(snap.namespaces) == ["a"]
    (svc,) = snap.services
    assert (svc.key, svc.type, svc.headless, svc.cluster_ips, svc.ports) == ("a/s", "ClusterIP", True, (), (ServicePort(53, 53, "UDP"),))


def test_tfjob_fixture() -> None:
    """The fixture other tests reuse holds what the training operator and KServe create."""
    snap = load_snapshot([str(FIXTURES / "tfjob-cluster.yaml")])
    assert list(snap.namespaces) == ["apps", "corp", "ml-serving", "ml-training"]
    training = [p for p in snap.pods if p.namespace == "ml-training"]
    assert [p.name for p in training] == ["mnist-chief-0", "mnist-ps-0", "mnist-worker-0", "mnist-worker-1"]
    expected_cluster = {
        "chief": ["mnist-chief-0.ml-training.svc:2222"], "ps": ["mnist-ps-0.ml-training.svc:2222"],
        "worker": ["mnist-worker-0.ml-training.svc:2222", "mnist-worker-1.ml-training.svc:2222"],
    }
    for pod in training:
        rtype, index = pod.labels["training.kubeflow.org/replica-type"], pod.labels["training.kubeflow.org/replica-index"]
        assert pod.name == f"mnist-{rtype}-{index}" and pod.owner == OwnerRef("TFJob", "mnist")
        (container,) = pod.containers
        assert container.name == "tensorflow" and container.ports == (ContainerPort(2222, "TCP", "tfjob-port"),)
        config = json.loads(container.env["TF_CONFIG"])
        assert config == {"cluster": expected_cluster, "task": {"type": rtype, "index": int(index)}, "environment": "cloud"}
        assert ("training.kubeflow.org/job-role" in pod.labels) == (rtype == "chief")
        assert all(ip_address(a) in ip_network("198.18.8.0/24") for a in pod.ips if a.version == 4)
    assert snap.pod("ml-training", "mnist-chief-0").ips == (ip_address("198.18.8.10"), ip_address("fd00:198:18::10"))
    headless = [s for s in snap.services if s.namespace == "ml-training"]
    assert [s.name for s in headless] == [p.name for p in training]
    for svc, pod in zip(headless, training):
        assert svc.headless and svc.ports == (ServicePort(2222, 2222, "TCP", "tfjob-port"),)
        assert all(pod.labels[k] == v for k, v in svc.selector.items()) and len(svc.selector) == 4
    predictor = snap.pod("ml-serving", "flowers-predictor-7c9d8f6b4-k8m2p")
    # The TF Serving runtime listens on gRPC 9000 but declares no port: only the labels say what it is.
    assert (predictor.containers[0].name, predictor.containers[0].ports) == ("kserve-container", ())
    assert predictor.labels["serving.kserve.io/inferenceservice"] == "flowers" and predictor.labels["component"] == "predictor"
    resnet = snap.pod("ml-serving", "resnet-6b8f9c7d5-x2x9q")
    assert [p.container_port for p in resnet.containers[0].ports] == [8500, 8501]
    lb = next(s for s in snap.services if s.name == "resnet-service")
    assert (lb.type, lb.load_balancer_ips, lb.ports[0].node_port) == ("LoadBalancer", (ip_address("203.0.113.10"),), 30334)
    assert [o.name for o in snap.custom_objects["TFJob"]] == ["mnist"]
    assert snap.custom_objects["TFJob"][0].raw["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == 2
    assert [o.name for o in snap.custom_objects["InferenceService"]] == ["flowers"]
    assert dict(snap.ignored_kinds) == {"Deployment": 1}
    assert [p.name for p in snap.network_policies] == ["resnet-grpc-from-apps", "training-peers-only"]


POD = {"kind": "Pod", "metadata": {"name": "a", "namespace": "x"}}

# (file content, the message after "<file>: "). Each must be one UsageError line naming object and field.
MALFORMED = [
    ('{"kind": "Pod", "metadata": {"namespace": "x"}}', "Pod: metadata.name: missing"),
    ('{"kind": "Pod", "metadata": {"name": "a"}}', "Pod: metadata.namespace: missing"),
    ('{"kind": "Pod", "metadata": []}', "Pod: metadata: must be a mapping, got a list"),
    ('{"kind": "Pod", "metadata": {"name": "Web_1", "namespace": "x"}}',
     "Pod: metadata.name: not a valid Kubernetes name (DNS-1123: lower-case letters, digits, '-'): 'Web_1'"),
    ('{"kind": "Pod", "metadata": {"name": "a\\nb", "namespace": "x"}}',
     "Pod: metadata.name: not a valid Kubernetes name (DNS-1123: lower-case letters, digits, '-'): 'a\\nb'"),
    ('{"metadata": {"name": "a"}}', "document: kind: missing or not a string"),
    ('[{"kind": "Pod"}]', "document: must be a Kubernetes object or List, got a list"),
    ('{"kind": "PodList", "items": {"a": 1}}', "PodList: items: must be a list, got a mapping"),
    ('{"kind": "PodList", "items": ["a"]}', "items[0]: must be a mapping, got a string"),
    ('{"kind": "List", "items": [{"metadata": {"name": "a"}}]}', "items[0]: kind: missing or not a string"),
    ('{"kind": "List", "items": [{"kind": "PodList", "items": []}]}', "items[0]: a PodList inside a List is not a snapshot shape"),
    ('{"kind": "Bad\\nList", "items": 1}', "'Bad\\nList': items: must be a list, got an integer"),  # input quoted, one line
    (json.dumps({**POD, "metadata": {**POD["metadata"], "labels": {"replica-index": 0}}}),
     "Pod x/a: metadata.labels.replica-index: must be a string, got 0"),
    (json.dumps({**POD, "spec": {"containers": [{"name": "c", "ports": [{"containerPort": "80"}]}]}}),
     "Pod x/a: spec.containers[0].ports[0].containerPort: must be an integer 1-65535, got '80'"),
    (json.dumps({**POD, "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "protocol": "tcp"}]}]}}),
     "Pod x/a: spec.containers[0].ports[0].protocol: must be one of TCP, UDP, SCTP, got 'tcp'"),
    (json.dumps({**POD, "spec": {"containers": [{"ports": []}]}}), "Pod x/a: spec.containers[0].name: missing"),
    (json.dumps({**POD, "spec": {"containers": "c"}}), "Pod x/a: spec.containers: must be a list, got a string"),
    (json.dumps({**POD, "spec": {"hostNetwork": "yes"}}), "Pod x/a: spec.hostNetwork: must be true or false, got 'yes'"),
    (json.dumps({**POD, "status": {"podIPs": [{"ip": "10.0.0.300"}]}}), "Pod x/a: status.podIPs[0].ip: not an IP address: '10.0.0.300'"),
    (json.dumps({**POD, "status": {"podIP": 167772161}}), "Pod x/a: status.podIP: must be a string, got an integer"),
    (json.dumps({**POD, "metadata": {**POD["metadata"], "ownerReferences": [{"kind": "ReplicaSet"}]}}),
     "Pod x/a: metadata.ownerReferences[0].name: missing"),
    ('{"kind": "Service", "metadata": {"name": "s", "namespace": "x"}, "spec": {"clusterIP": "10.96.0.999"}}',
     "Service x/s: spec.clusterIP: not an IP address: '10.96.0.999'"),
    ('{"kind": "Service", "metadata": {"name": "s", "namespace": "x"}, "spec": {"type": "Ingress"}}',
     "Service x/s: spec.type: must be one of ClusterIP, NodePort, LoadBalancer, ExternalName, got 'Ingress'"),
    ('{"kind": "Service", "metadata": {"name": "s", "namespace": "x"}, "spec": {"ports": [{"port": 70000}]}}',
     "Service x/s: spec.ports[0].port: must be an integer 1-65535, got 70000"),
    ('{"kind": "EndpointSlice", "metadata": {"name": "e", "namespace": "x"}, "addressType": "ipv4"}',
     "EndpointSlice x/e: addressType: must be one of IPv4, IPv6, FQDN, got 'ipv4'"),
    ('{"kind": "EndpointSlice", "metadata": {"name": "e", "namespace": "x"}, "addressType": "IPv4", '
     '"endpoints": [{"addresses": ["10.1.2.300"]}]}',
     "EndpointSlice x/e: endpoints[0].addresses[0]: not an IP address: '10.1.2.300'"),
]
NETPOL_MALFORMED = [
    ({"policyTypes": ["ingress"]}, "spec.policyTypes[0]: must be one of Ingress, Egress, got 'ingress'"),
    ({"ingress": [{"from": [{}]}]}, "spec.ingress[0].from[0]: must set podSelector, namespaceSelector or ipBlock"),
    ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]},
     "spec.ingress[0].from[0]: ipBlock cannot be combined with podSelector or namespaceSelector"),
    ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["192.168.0.0/16"]}}]}]},
     "spec.ingress[0].from[0].ipBlock.except[0]: must be a strict subset of cidr 10.0.0.0/8: 192.168.0.0/16"),
    ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}]}]},
     "spec.ingress[0].from[0].ipBlock.except[0]: must be a strict subset of cidr 10.0.0.0/8: 10.0.0.0/8"),
    ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.1"}}]}]},
     "spec.egress[0].to[0].ipBlock.cidr: not a CIDR such as 10.0.0.0/8: '10.0.0.1'"),
    ({"ingress": [{"ports": [{"port": "http", "endPort": 90}]}]}, "spec.ingress[0].ports[0].endPort: needs a numeric port"),
    ({"ingress": [{"ports": [{"port": 100, "endPort": 90}]}]}, "spec.ingress[0].ports[0].endPort: must be at least port 100, got 90"),
    ({"ingress": [{"ports": [{"port": ""}]}]}, "spec.ingress[0].ports[0].port: must not be empty"),
    ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}},
     "spec.podSelector.matchExpressions[0].operator: must be one of In, NotIn, Exists, DoesNotExist, got 'Gt'"),
    ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["1"]}]}},
     "spec.podSelector.matchExpressions[0].values: Exists takes no values"),
    ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
     "spec.podSelector.matchExpressions[0].values: In needs at least one value"),
    ({"podSelector": {"matchLabels": {"a": True}}}, "spec.podSelector.matchLabels.a: must be a string, got True"),
]
MALFORMED += [(json.dumps({"kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": "x"}, "spec": spec}),
               f"NetworkPolicy x/p: {message}") for spec, message in NETPOL_MALFORMED]


@pytest.mark.parametrize(("content", "message"), MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_input_is_one_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "snap.json"
    path.write_text(content)
    with pytest.raises(UsageError) as caught:
        load_snapshot([str(path)])
    assert str(caught.value) == f"{path}: {message}"
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("name", "content", "message"), [
    # The problem's wording differs between PyYAML's C and Python parsers: only its position is compared.
    ("bad.yaml", "kind: Pod\nmetadata: {name: a\n", "not valid YAML at line 3 column 1: "),
    ("bad.json", '{"kind": "Pod",', "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 16"),
    ("deep.json", "[" * 100_000, "nested too deeply to be a Kubernetes object"),
    ("alias.yaml", "kind: Pod\nmetadata: &m {name: a, namespace: x}\nspec: {containers: [{name: c, env: *m}]}\n",
     "not valid YAML at line 3 column 36: alias *m refused: a snapshot must be plain data"),
    # libyaml's C composer would overflow the C stack on this and kill the process.
    ("deep.yaml", "x: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested too deeply to be a Kubernetes object"),
    ("labels.yaml", "kind: Pod\nmetadata:\n  name: a\n  namespace: x\n  labels: {enabled: no}\n",
     "Pod x/a: metadata.labels.enabled: must be a string, got False"),
    ("second.yaml", "kind: Namespace\nmetadata: {name: a}\n---\nkind: Pod\nmetadata: {name: b}\n",
     "document 2 (Pod): metadata.namespace: missing"),
])
def test_malformed_files(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(UsageError) as caught:
        load_snapshot([str(path)])
    assert str(caught.value) == f"{path}: {message}" or message.endswith(": ") and str(caught.value).startswith(f"{path}: {message}")
    assert "\n" not in str(caught.value)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"missing\.json: cannot read: No such file or directory$"):
        load_snapshot([str(tmp_path / "missing.json")])
    binary = tmp_path / "latin1.yaml"
    binary.write_bytes(b"kind: Pod\nmetadata: {name: caf\xe9}\n")
    with pytest.raises(UsageError, match=r"latin1\.yaml: not UTF-8 text \(byte 30\)$"):
        load_snapshot([str(binary)])


def test_file_size_bound(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    with open(big, "wb") as handle:
        handle.truncate(snapshot_module.MAX_FILE_BYTES + 1)  # sparse: refused before a byte is read
    with pytest.raises(UsageError, match=r"big\.json: larger than 64 MiB: split the snapshot$"):
        load_snapshot([str(big)])


def test_object_count_bound(tmp_path: Path) -> None:
    path = tmp_path / "many.json"
    path.write_text(json.dumps({"kind": "EventList", "items": [{}] * (snapshot_module.MAX_OBJECTS + 1)}))
    with pytest.raises(UsageError, match=r"many\.json: more than 200000 objects in the snapshot"):
        load_snapshot([str(path)])
    exactly = snapshot_from_documents([{"kind": "EventList", "items": [{}] * snapshot_module.MAX_OBJECTS}])
    assert dict(exactly.ignored_kinds) == {"Event": snapshot_module.MAX_OBJECTS}


def test_custom_kind_of_another_group_is_ignored() -> None:
    snap = snapshot_from_documents([
        {"apiVersion": "example.com/v1", "kind": "Revision", "metadata": {"name": "r", "namespace": "x"}},
        {"apiVersion": "kubeflow.org/v1", "kind": "TFJobList", "items": [{"metadata": {"name": "j", "namespace": "x"}, "spec": {}}]},
    ])
    assert dict(snap.ignored_kinds) == {"Revision": 1}
    (job,) = snap.custom_objects["TFJob"]
    assert (job.api_version, job.name) == ("kubeflow.org/v1", "j")  # the list's apiVersion, as its items lack one


def test_policy_defaults() -> None:
    """policyTypes default to Ingress, plus Egress when egress rules exist; protocol defaults to TCP; a
    missing podSelector decodes as {} (every pod of the namespace)."""
    snap = snapshot_from_documents([
        {"kind": "NetworkPolicy", "metadata": {"name": "a", "namespace": "x"}, "spec": {"egress": []}},
        {"kind": "NetworkPolicy", "metadata": {"name": "b", "namespace": "x"}, "spec": {"egress": [{}], "policyTypes": []}},
        {"kind": "NetworkPolicy", "metadata": {"name": "c", "namespace": "x"},
         "spec": {"policyTypes": ["Egress"], "ingress": [{"ports": [{"port": 80}]}],
                  "podSelector": {"matchExpressions": [{"key": "k", "operator": "NotIn", "values": ["v"]}]}}},
    ])
    a, b, c = snap.network_policies
    assert (a.policy_types, b.policy_types, c.policy_types) == ({"Ingress"}, {"Ingress", "Egress"}, {"Egress"})
    assert a.pod_selector == LabelSelector({}, ()) and b.egress == (PolicyRule((), ()),)
    assert c.ingress[0].ports == (PolicyPort("TCP", 80),)
    assert c.pod_selector.match_expressions == (SelectorRequirement("k", "NotIn", frozenset({"v"})),)


def test_missing_pod_lookup() -> None:
    with pytest.raises(UsageError, match="^no pod x/a in the snapshot$"):
        snapshot_from_documents([]).pod("x", "a")
