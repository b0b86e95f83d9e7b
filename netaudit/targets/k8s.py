"""Which pods of a cluster snapshot run TF code or serve TF models, and what to scan on each (`k8s:FILE`).

Targets are pod IPs and ports, not Services alone: the KServe TF runtime listens on gRPC 9000, which no
Service declares (kserve/kserve pkg/constants: the TF Serving runtime's `--port=9000`), and a headless
per-replica Service of a TFJob has no address of its own. A pod counts when any of these holds:
- it is a TFJob replica: the training operator's `training.kubeflow.org/*` labels, or a `TF_CONFIG` env
  (kubeflow/training-operator pkg/controller.v1/tensorflow/tensorflow.go sets it on the `tensorflow`
  container of every replica of a distributed job);
- it runs TF Serving: an image `tensorflow/serving` or a `tensorflow_model_server` command;
- it is a KServe predictor (the `serving.kserve.io/inferenceservice` label the controller sets);
- it runs TensorBoard (an image or command named so);
- it declares a container port of the `tf` port set.
"""

from __future__ import annotations

import json
import re
import weakref
from dataclasses import dataclass
from typing import Any

from netaudit.targets.k8s_snapshot import Pod, Service, Snapshot
from netaudit.targets.parse import named_port_sets

TFJOB_LABELS = ("training.kubeflow.org/job-name", "training.kubeflow.org/replica-type",
                "training.kubeflow.org/replica-index")
KSERVE_LABEL = "serving.kserve.io/inferenceservice"
SERVING_IMAGE = re.compile(r"(^|/)tensorflow/serving([:@]|$)")
KSERVE_TF_GRPC = 9000  # the KServe TF runtime's gRPC port, declared by no Service
# Ports a role's server listens on whether or not the pod declares them: TF Serving's defaults (--port 8500,
# --rest_api_port 8501), KServe's container port 8080 and its TF runtime's 9000, TensorBoard's 6006.
ROLE_PORTS = {"tf-serving": (8500, 8501), "kserve": (8080, KSERVE_TF_GRPC), "tensorboard": (6006,)}
# A TFJob replica listens where its own TF_CONFIG entry says, on the `tfjob-port` the operator's defaulting
# always declares (training-operator tensorflow_defaults.go setTensorflowDefaultPort); the operator's default
# port (TFJobDefaultPort) only when the pod says neither.
TFJOB_DEFAULT_PORT = 2222


@dataclass(frozen=True)
class Workload:
    """A pod that matters, with the identity every endpoint on it carries (details.k8s)."""

    pod: Pod
    role: str  # tfjob | tf-serving | kserve | tensorboard | tf-port
    ports: tuple[int, ...]
    identity: dict[str, Any]


def _tf_config(pod: Pod) -> dict[str, Any] | None:
    for container in pod.containers:
        text = container.env.get("TF_CONFIG")
        if text:
            try:
                parsed = json.loads(text)
            except ValueError:
                return {"unparsable": True}
            return parsed if isinstance(parsed, dict) else {"unparsable": True}
    return None


def _runs(pod: Pod, word: str) -> bool:
    return any(word in container.image or any(word in arg for arg in container.argv) for container in pod.containers)


def tf_ports() -> frozenset[int]:
    return frozenset(named_port_sets()["tf"])


class _Routes:
    """Which Services may route to a pod, indexed once per snapshot: asked for every pod, a scan over all
    Services and slices is quadratic (3,000 pods, Services and slices took 13 s).

    A selector Service is filed under one of its (label, value) pairs, so a pod meets only the Services that
    share a label with it; a Service without a selector under the pods its EndpointSlices name."""

    def __init__(self, snapshot: Snapshot):
        self.order = {id(s): i for i, s in enumerate(snapshot.services)}
        self.by_label: dict[tuple[str, str, str], list[Service]] = {}
        unselected = {(s.namespace, s.name): s for s in snapshot.services if not s.selector}
        for service in snapshot.services:
            if service.selector:
                key, value = next(iter(service.selector.items()))
                self.by_label.setdefault((service.namespace, key, value), []).append(service)
        self.sliced: dict[tuple[str, str], list[Service]] = {}
        for slice_ in snapshot.endpoint_slices:
            service = unselected.get((slice_.namespace, slice_.service or ""))
            if service is None or not slice_.service:
                continue
            for name in slice_.pods:
                self.sliced.setdefault((slice_.namespace, name), []).append(service)

    def of(self, pod: Pod) -> list[Service]:
        found = {id(s): s for k, v in pod.labels.items() for s in self.by_label.get((pod.namespace, k, v), ())
                 if all(pod.labels.get(sk) == sv for sk, sv in s.selector.items())}
        found.update((id(s), s) for s in self.sliced.get((pod.namespace, pod.name), ()))
        return sorted(found.values(), key=lambda s: self.order[id(s)])


_ROUTES: weakref.WeakKeyDictionary[Snapshot, _Routes] = weakref.WeakKeyDictionary()


def routing_services(snapshot: Snapshot, pod: Pod) -> list[Service]:
    """The Services whose selector picks this pod, and those without a selector whose EndpointSlices name it
    (Knative's revision Services, manual endpoints), in the snapshot's order."""
    routes = _ROUTES.get(snapshot)
    if routes is None:
        routes = _ROUTES[snapshot] = _Routes(snapshot)
    return routes.of(pod)


def workload(snapshot: Snapshot, pod: Pod) -> Workload | None:
    declared = tuple(p.container_port for c in pod.containers for p in c.ports if p.protocol == "TCP")
    tf_config = _tf_config(pod)
    labels = pod.labels
    role = None
    if any(k in labels for k in TFJOB_LABELS) or tf_config is not None:
        role = "tfjob"
    elif KSERVE_LABEL in labels:
        role = "kserve"
    elif any(SERVING_IMAGE.search(c.image) for c in pod.containers) or _runs(pod, "tensorflow_model_server"):
        role = "tf-serving"
    elif _runs(pod, "tensorboard"):
        role = "tensorboard"
    elif set(declared) & tf_ports():
        role = "tf-port"
    if role is None:
        return None
    task = (tf_config or {}).get("task") if isinstance((tf_config or {}).get("task"), dict) else {}
    services = routing_services(snapshot, pod)
    identity = {
        "namespace": pod.namespace, "pod": pod.name, "node": pod.node, "host_network": pod.host_network,
        "owner_kind": pod.owner.kind if pod.owner else None, "owner_name": pod.owner.name if pod.owner else None,
        "role": role, "services": sorted(s.key for s in services),
    }
    if role == "tfjob":
        identity.update(tfjob=labels.get("training.kubeflow.org/job-name") or (pod.owner.name if pod.owner and
                                                                                   pod.owner.kind == "TFJob" else None),
                        replica_type=labels.get("training.kubeflow.org/replica-type") or task.get("type"),
                        replica_index=_index(labels.get("training.kubeflow.org/replica-index"), task.get("index")),
                        tf_config_task={"type": task.get("type"), "index": task.get("index")} if task else None,
                        replica_labels={"type": labels.get("training.kubeflow.org/replica-type"),
                                        "index": _index(labels.get("training.kubeflow.org/replica-index"), None)}
                        if any(k in labels for k in TFJOB_LABELS[1:]) else None)
    if role == "kserve":
        identity["inferenceservice"] = labels[KSERVE_LABEL]
    wanted = set(declared) | set(ROLE_PORTS.get(role, ()))
    if role == "tfjob":
        wanted |= _own_port(tf_config or {}, task)
        wanted = wanted or {TFJOB_DEFAULT_PORT}
    ports = tuple(sorted(wanted)) or tuple(sorted(tf_ports()))
    return Workload(pod, role, ports, identity)


def _own_port(tf_config: dict[str, Any], task: dict[str, Any]) -> set[int]:
    """The port of this task's own address in TF_CONFIG (`cluster[type][index]`, a list or, in the sparse
    form of enableDynamicWorker, a mapping of index strings)."""
    cluster = tf_config.get("cluster")
    members = cluster.get(task.get("type")) if isinstance(cluster, dict) else None
    index = task.get("index")
    if isinstance(members, list) and isinstance(index, int) and 0 <= index < len(members):
        address = members[index]
    elif isinstance(members, dict):
        address = members.get(str(index))
    else:
        return set()
    port = address.rpartition(":")[2] if isinstance(address, str) else ""
    return {int(port)} if port.isdigit() and 0 < int(port) < 65536 else set()


def _index(label: str | None, task_index: Any) -> int | None:
    if label is not None and label.isdigit():
        return int(label)
    return task_index if isinstance(task_index, int) and not isinstance(task_index, bool) else None


def workloads(snapshot: Snapshot) -> list[Workload]:
    found = [workload(snapshot, pod) for pod in snapshot.pods]
    return [w for w in found if w is not None and w.pod.phase not in ("Succeeded", "Failed")]


def service_addresses(snapshot: Snapshot, found: list[Workload]) -> list[tuple[str, int, dict[str, Any]]]:
    """ClusterIP, NodePort and LoadBalancer addresses of the Services in front of the workloads."""
    out = []
    picked = {w.pod.key for w in found}
    behind: dict[int, list[Pod]] = {}
    for pod in snapshot.pods:
        if pod.key in picked:
            for service in routing_services(snapshot, pod):
                behind.setdefault(id(service), []).append(pod)
    for service in snapshot.services:
        pods = behind.get(id(service))
        if not pods:
            continue
        identity = {"namespace": service.namespace, "service": service.name, "type": service.type,
                    "pods": sorted(p.name for p in pods)}
        for port in service.ports:
            if port.protocol != "TCP":
                continue
            for address in (*service.cluster_ips, *service.external_ips, *service.load_balancer_ips):
                out.append((str(address), port.port, identity))
            if port.node_port:
                for host in sorted({ip for p in pods for ip in p.host_ips}, key=lambda a: (a.version, int(a))):
                    out.append((str(host), port.node_port, {**identity, "node_port": True}))
    return out


def read_snapshot(spec: str) -> Snapshot:
    """`k8s:FILE[,FILE...]` reads snapshot files; `k8s:` alone the live API (targets/k8s_live.py), once per
    process, so the targets and the policy of one scan see the same moment of the cluster."""
    from netaudit.targets.k8s_live import live_snapshot
    from netaudit.targets.k8s_snapshot import load_snapshot

    paths = [p for p in spec.removeprefix("k8s:").split(",") if p]
    return load_snapshot(paths) if paths else live_snapshot()


def planned_pods(documents: list[object]) -> list[dict[str, Any]]:
    """The pods that TFJob, Deployment, StatefulSet and InferenceService manifests will make, as the API
    would show them before they have addresses: `k8s expect` judges a workload before it is deployed.
    TFJob pods follow the training operator (kubeflow/training-operator release-1.9: names
    `<job>-<type>-<i>`, the `training.kubeflow.org/*` labels, the `tensorflow` container's `tfjob-port`
    (default 2222) and TF_CONFIG for a job of more than one replica); InferenceService predictors carry the
    `serving.kserve.io/inferenceservice` label the KServe controller sets."""
    out: list[dict[str, Any]] = []
    for doc in documents:
        if not isinstance(doc, dict) or not isinstance(doc.get("spec"), dict):
            continue
        meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
        name, namespace = meta.get("name"), meta.get("namespace") or "default"
        if not isinstance(name, str):
            continue
        kind, spec = doc.get("kind"), doc["spec"]
        if kind == "TFJob" and isinstance(spec.get("tfReplicaSpecs"), dict):
            out += _tfjob_pods(name, namespace, spec["tfReplicaSpecs"])
        elif kind in ("Deployment", "StatefulSet") and isinstance(spec.get("template"), dict):
            count = spec.get("replicas", 1) if isinstance(spec.get("replicas", 1), int) else 1
            out += [_pod(f"{name}-{i}", namespace, spec["template"], {}, kind, name) for i in range(min(count, 64))]
        elif kind == "InferenceService":
            predictor = spec.get("predictor") if isinstance(spec.get("predictor"), dict) else {}
            containers = [{"name": "kserve-container", "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]
            template = {"metadata": {"labels": {KSERVE_LABEL: name, "component": "predictor"}},
                        "spec": {"containers": predictor.get("containers") or containers}}
            out.append(_pod(f"{name}-predictor-0", namespace, template, {}, kind, name))
    return out


def _tfjob_pods(job: str, namespace: str, replicas: dict[str, Any]) -> list[dict[str, Any]]:
    specs = {rtype.lower(): spec for rtype, spec in replicas.items() if isinstance(spec, dict)}
    counts = {rtype: spec.get("replicas", 1) if isinstance(spec.get("replicas", 1), int) else 1
              for rtype, spec in specs.items()}
    ports = {rtype: _tfjob_port(spec) for rtype, spec in specs.items()}
    cluster = {rtype: [f"{job}-{rtype}-{i}.{namespace}.svc:{ports[rtype]}" for i in range(min(counts[rtype], 64))]
               for rtype in specs}
    pods = []
    for rtype, spec in specs.items():
        for index in range(min(counts[rtype], 64)):
            labels = {"training.kubeflow.org/job-name": job, "training.kubeflow.org/replica-type": rtype,
                      "training.kubeflow.org/replica-index": str(index),
                      "training.kubeflow.org/operator-name": "tfjob-controller"}
            env = {}
            if sum(counts.values()) > 1:
                env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": rtype, "index": index},
                                               "environment": "cloud"})
            pods.append(_pod(f"{job}-{rtype}-{index}", namespace, spec.get("template") or {}, labels, "TFJob", job,
                             env, ports[rtype]))
    return pods


def _tfjob_port(spec: dict[str, Any]) -> int:
    template = spec.get("template") if isinstance(spec.get("template"), dict) else {}
    for container in (template.get("spec") or {}).get("containers") or []:
        if isinstance(container, dict) and container.get("name") == "tensorflow":
            for port in container.get("ports") or []:
                if isinstance(port, dict) and port.get("name") == "tfjob-port" and isinstance(port.get("containerPort"), int):
                    return port["containerPort"]
    return 2222


def _pod(name: str, namespace: str, template: dict[str, Any], labels: dict[str, str], owner_kind: str,
         owner: str, env: dict[str, str] | None = None, tf_port: int | None = None) -> dict[str, Any]:
    meta = template.get("metadata") if isinstance(template.get("metadata"), dict) else {}
    spec = template.get("spec") if isinstance(template.get("spec"), dict) else {}
    containers = []
    for container in spec.get("containers") or []:
        if not isinstance(container, dict):
            continue
        container = dict(container)
        if tf_port is not None and container.get("name") == "tensorflow":
            ports = [p for p in container.get("ports") or [] if isinstance(p, dict)]
            if not any(p.get("name") == "tfjob-port" for p in ports):
                ports.append({"name": "tfjob-port", "containerPort": tf_port, "protocol": "TCP"})
            container["ports"] = ports
            container["env"] = [*(container.get("env") or []), *({"name": k, "value": v} for k, v in (env or {}).items())]
        containers.append(container)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {**(meta.get("labels") or {}), **labels},
                         "ownerReferences": [{"kind": owner_kind, "name": owner, "controller": True}]},
            "spec": {"containers": containers, "hostNetwork": bool(spec.get("hostNetwork", False))},
            "status": {}}
