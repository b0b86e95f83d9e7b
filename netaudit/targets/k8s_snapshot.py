"""A cluster snapshot: namespaces, pods, Services, EndpointSlices, NetworkPolicies and a few ML custom objects.

Why a typed copy instead of the raw JSON: everything downstream (target lists, the NetworkPolicy engine)
reads the same few fields, and checking every one of them here, once, turns a malformed file into one
line naming the file, the object (kind namespace/name) and the field, instead of a KeyError deep inside
an analysis. Nothing here talks to a cluster; the input is what `kubectl get ... -A -o json` prints, what
the API returns for a list call, or YAML manifests.

Accepted shapes (kubernetes/kubectl pkg/cmd/get/get.go, kubernetes/kubernetes#63676):
- kubectl's `{"kind": "List", "items": [...]}`, whose items each carry their own `kind`, mixed kinds allowed;
- the API's typed lists (`PodList`, `ServiceList`, ...), whose items usually lack `kind`: it is the list's
  kind without the `List` suffix;
- single objects, and several YAML documents in one file. Several files merge into one snapshot.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache, cached_property
from types import MappingProxyType
from typing import Callable, Iterable, Literal, Mapping, NoReturn

from netaudit.core.errors import UsageError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_FILE_BYTES = 64 << 20
MAX_OBJECTS = 200_000
PROTOCOLS = ("TCP", "UDP", "SCTP")  # core/v1 Protocol; the default everywhere is TCP
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
# Custom objects kept raw, with the API group they must belong to when the file says (a `Revision` of
# another group is some other resource and is ignored like any unknown kind).
CUSTOM_KINDS = {"TFJob": "kubeflow.org", "InferenceService": "serving.kserve.io", "Revision": "serving.knative.dev"}

# Object names as the API server validates them (apimachinery validation: DNS-1123 subdomain; namespaces
# are DNS-1123 labels). Checking them keeps "ns/name" unambiguous in every verdict and report line.
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_MISSING = object()
_EMPTY: Mapping[str, str] = MappingProxyType({})


# --- what a snapshot holds ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class ContainerPort:
    container_port: int
    protocol: str
    name: str | None = None
    host_port: int | None = None  # also open on the node's addresses


@dataclass(frozen=True)
class Container:
    name: str
    ports: tuple[ContainerPort, ...]
    env: Mapping[str, str]  # literal `value`s only: `valueFrom` (secrets, config maps) is not in a snapshot
    image: str = ""
    argv: tuple[str, ...] = ()  # command, then args: how a TF Serving container shows what it runs


@dataclass(frozen=True)
class OwnerRef:
    kind: str
    name: str


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    labels: Mapping[str, str]
    node: str | None  # spec.nodeName; None while unscheduled
    ips: tuple[IPAddress, ...]  # status.podIPs: one per family on a dual-stack cluster
    host_ips: tuple[IPAddress, ...]  # status.hostIPs: the node's addresses
    host_network: bool
    containers: tuple[Container, ...]
    owner: OwnerRef | None  # the controller owner reference (else the first one)
    phase: str | None = None  # status.phase: a Succeeded TFJob replica is kept but no longer listens

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def ports_named(self, name: str, protocol: str) -> frozenset[int]:
        """The containerPorts a NetworkPolicy's named port resolves to on this pod (core/v1 ContainerPort:
        a name "must be ... unique within the pod", so more than one number means a malformed pod)."""
        return frozenset(p.container_port for c in self.containers for p in c.ports
                         if p.name == name and p.protocol == protocol)


@dataclass(frozen=True)
class ServicePort:
    port: int
    target_port: int | str  # a number, or the name of a container port; defaults to `port`
    protocol: str
    name: str | None = None
    node_port: int | None = None


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    type: str
    cluster_ips: tuple[IPAddress, ...]  # empty for a headless Service (clusterIP "None") and ExternalName
    headless: bool
    selector: Mapping[str, str]  # empty: the Service's endpoints are not chosen by labels
    ports: tuple[ServicePort, ...]
    external_ips: tuple[IPAddress, ...]
    load_balancer_ips: tuple[IPAddress, ...]  # status.loadBalancer.ingress[].ip
    # How NodePort, externalIP and load-balancer traffic is handed on: Local keeps the client's address and
    # the node's own pods only, Cluster (the default) may masquerade it (core/v1 ServiceSpec).
    external_traffic_policy: str = "Cluster"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class EndpointSlice:
    """discovery.k8s.io/v1 EndpointSlice: which pods a Service routes to, also for a Service without a
    selector (Knative's revision Services, manual endpoints), whose pods no label names."""

    namespace: str
    name: str
    service: str | None  # label kubernetes.io/service-name
    pods: tuple[str, ...]  # names of the pods the endpoints' targetRefs point at, in the slice's namespace
    addresses: tuple[IPAddress, ...]  # of every IPv4/IPv6 endpoint (FQDN slices have none)


@dataclass(frozen=True)
class SelectorRequirement:
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: frozenset[str]


@dataclass(frozen=True)
class LabelSelector:
    """meta/v1 LabelSelector: matchLabels and matchExpressions, all ANDed; empty selects everything."""

    match_labels: Mapping[str, str]
    match_expressions: tuple[SelectorRequirement, ...]


@dataclass(frozen=True)
class IPBlock:
    cidr: IPNetwork
    except_: tuple[IPNetwork, ...]  # each a strict subset of cidr, as the API server validates


@dataclass(frozen=True)
class PolicyPeer:
    """One `from`/`to` entry: either ipBlock alone, or podSelector and/or namespaceSelector (ANDed)."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None


@dataclass(frozen=True)
class PolicyPort:
    protocol: str
    port: int | str | None  # None: every port of the protocol; a str is a named port of the destination pod
    end_port: int | None = None  # inclusive end of a numeric range


@dataclass(frozen=True)
class PolicyRule:
    """One ingress or egress rule. Empty `peers` means every peer and empty `ports` every port
    (kubernetes/api networking/v1/types.go NetworkPolicyIngressRule / NetworkPolicyEgressRule)."""

    peers: tuple[PolicyPeer, ...]
    ports: tuple[PolicyPort, ...]


@dataclass(frozen=True)
class NetworkPolicy:
    namespace: str
    name: str
    pod_selector: LabelSelector
    policy_types: frozenset[str]  # defaulted as the API server does when the file leaves it out
    ingress: tuple[PolicyRule, ...]
    egress: tuple[PolicyRule, ...]
    spec: Mapping[str, object]  # the spec as read, for reports that quote it


@dataclass(frozen=True)
class CustomObject:
    """A TFJob, InferenceService or Knative Revision, kept as read: their schemas change between operator
    releases, so callers pick the fields they need (training-operator release-1.9, kserve v1beta1)."""

    kind: str
    api_version: str | None
    namespace: str
    name: str
    raw: Mapping[str, object]


@dataclass(frozen=True, eq=False)
class Snapshot:
    """Everything read, sorted by namespace and name. Compared and hashed by identity: two snapshots are two
    readings of a cluster, and analyses cache their indexes per snapshot object."""

    namespaces: Mapping[str, Namespace]
    pods: tuple[Pod, ...]
    services: tuple[Service, ...]
    network_policies: tuple[NetworkPolicy, ...]
    custom_objects: Mapping[str, tuple[CustomObject, ...]]  # by kind
    endpoint_slices: tuple[EndpointSlice, ...]
    ignored_kinds: Mapping[str, int]  # objects of kinds this module does not read, counted

    @cached_property
    def _pods_by_key(self) -> Mapping[tuple[str, str], Pod]:
        return {(p.namespace, p.name): p for p in self.pods}

    def pod(self, namespace: str, name: str) -> Pod:
        try:
            return self._pods_by_key[namespace, name]
        except KeyError:
            raise UsageError(f"no pod {namespace}/{name} in the snapshot") from None


# --- reading files ---------------------------------------------------------------------------------------


def load_snapshot(paths: list[str]) -> Snapshot:
    """Read and merge snapshot files (JSON or YAML). Every problem is a one-line UsageError."""
    builder = _Builder()
    for path in paths:
        shown = _display(path)
        documents = read_documents(path, shown)
        for index, document in enumerate(documents):
            builder.add_document(document, shown, f"document {index + 1}" if len(documents) > 1 else "")
    return builder.build()


def snapshot_from_documents(documents: Iterable[object], source: str = "<memory>") -> Snapshot:
    """The same as load_snapshot for already-parsed documents (an API client's JSON, a test's dicts)."""
    builder = _Builder()
    for index, document in enumerate(documents):
        builder.add_document(document, source, f"document {index + 1}")
    return builder.build()


def _display(path: str) -> str:
    return path if path.isprintable() else repr(path)


def read_documents(path: str, shown: str | None = None) -> list[object]:
    """The documents of one JSON or YAML file, bounded: what load_snapshot and `k8s expect` read."""
    shown = shown or _display(path)
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size > MAX_FILE_BYTES:
                raise UsageError(f"{shown}: larger than {MAX_FILE_BYTES >> 20} MiB: split the snapshot")
            data = handle.read(MAX_FILE_BYTES + 1)  # a pipe or a growing file has no trustworthy size
    except OSError as exc:
        raise UsageError(f"{shown}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise UsageError(f"{shown}: larger than {MAX_FILE_BYTES >> 20} MiB: split the snapshot")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{shown}: not UTF-8 text (byte {exc.start})") from None
    if text.lstrip()[:1] in ("{", "["):
        try:
            return [json.loads(text)]
        except json.JSONDecodeError as exc:
            raise UsageError(f"{shown}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        except RecursionError:
            raise UsageError(f"{shown}: nested too deeply to be a Kubernetes object") from None
    return _yaml_documents(text, shown)


def _yaml_documents(text: str, shown: str) -> list[object]:
    import yaml  # only YAML input needs PyYAML

    try:
        documents = list(yaml.load_all(text, Loader=_yaml_loader()))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise UsageError(f"{shown}: not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise UsageError(f"{shown}: nested too deeply to be a Kubernetes object") from None
    return [d for d in documents if d is not None]  # `---` at the start or end makes empty documents


@cache
def _yaml_loader() -> type:
    """PyYAML's safe loader (the constructors of yaml.safe_load_all), with two changes for hostile input.

    - Composition is always PyYAML's Python Composer, even over libyaml's C parser (kept for speed: a
      64 MiB file is slow in pure Python). libyaml's own composer recurses in C and crashes the process
      on input nested some ten thousand levels deep; the Python one raises RecursionError.
    - Aliases are refused where they appear: an alias shares one node between many places, so a small
      file can stand for an exponential amount of data to walk (the "billion laughs"), and kubectl
      never writes them.
    """
    import yaml
    from yaml.composer import Composer, ComposerError
    from yaml.constructor import SafeConstructor
    from yaml.resolver import Resolver

    class PlainComposer(Composer):
        def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise ComposerError(None, None, f"alias *{event.anchor} refused: a snapshot must be plain data",
                                    event.start_mark)
            return super().compose_node(parent, index)

    try:
        from yaml.cyaml import CParser
    except ImportError:  # PyYAML built without libyaml
        class PythonLoader(PlainComposer, yaml.SafeLoader):
            pass

        return PythonLoader

    class Loader(PlainComposer, CParser, SafeConstructor, Resolver):  # type: ignore[misc]
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    return Loader


class _Builder:
    """Collects objects from any number of documents and files, counting and de-duplicating them."""

    def __init__(self) -> None:
        self._count = 0
        self._seen: dict[tuple[str, str, str], tuple[object, str]] = {}
        self._namespaces: list[Namespace] = []
        self._pods: list[Pod] = []
        self._services: list[Service] = []
        self._policies: list[NetworkPolicy] = []
        self._custom: dict[str, list[CustomObject]] = {}
        self._slices: list[EndpointSlice] = []
        self._ignored: Counter[str] = Counter()

    def add_document(self, document: object, source: str, where: str) -> None:
        if not isinstance(document, dict):
            raise UsageError(f"{source}: {where or 'document'}: must be a Kubernetes object or List, "
                             f"got {_type_name(document)}")
        kind = document.get("kind")
        if not isinstance(kind, str) or not kind:
            raise UsageError(f"{source}: {where or 'document'}: kind: missing or not a string")
        if not kind.endswith("List"):
            self._add_object(document, kind, document.get("apiVersion"), source, where)
            return
        items = document.get("items")
        if items is None:
            items = []
        if not isinstance(items, list):
            raise UsageError(f"{source}: {where or _display(kind)}: items: must be a list, got {_type_name(items)}")
        item_kind = kind[: -len("List")] or None  # kubectl's plain `List` names each item's kind
        for index, item in enumerate(items):
            here = f"{where}, items[{index}]" if where else f"items[{index}]"
            if not isinstance(item, dict):
                raise UsageError(f"{source}: {here}: must be a mapping, got {_type_name(item)}")
            own = item.get("kind", item_kind)
            if not isinstance(own, str) or not own:
                raise UsageError(f"{source}: {here}: kind: missing or not a string")
            if own.endswith("List"):
                raise UsageError(f"{source}: {here}: a {_display(own)} inside a {_display(kind)} "
                                 "is not a snapshot shape")
            self._add_object(item, own, item.get("apiVersion", document.get("apiVersion")), source, here)

    def _add_object(self, raw: dict, kind: str, api_version: object, source: str, where: str) -> None:
        self._count += 1
        if self._count > MAX_OBJECTS:
            raise UsageError(f"{source}: more than {MAX_OBJECTS} objects in the snapshot: "
                             "narrow it (kubectl get -n, -l)")
        obj = _Object(source, where, kind)
        if api_version is not None and not isinstance(api_version, str):
            obj.fail("apiVersion", f"must be a string, got {_type_name(api_version)}")
        group = CUSTOM_KINDS.get(kind)
        parse = _PARSERS.get(kind)
        if parse is None or (group is not None and api_version is not None and api_version.rpartition("/")[0] != group):
            self._ignored[_display(kind)] += 1  # kinds are input: quoted if they could break a report line
            return
        root = _At(obj, "", raw)
        meta = root["metadata"]
        name = _name(meta["name"], _LABEL if kind == "Namespace" else _SUBDOMAIN)
        namespace = "" if kind == "Namespace" else _name(meta["namespace"], _LABEL)
        obj.label = f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"
        key = (kind, namespace, name)
        if key in self._seen:
            first, first_source = self._seen[key]
            if first == raw:
                return  # the same object in two overlapping dumps
            obj.fail("", f"defined again with different content (first in {first_source}): "
                         "merge only files of one moment")
        self._seen[key] = (raw, source)
        parse(self, root, namespace, name, api_version)

    def build(self) -> Snapshot:
        return Snapshot(
            namespaces=MappingProxyType({n.name: n for n in sorted(self._namespaces, key=lambda n: n.name)}),
            pods=tuple(sorted(self._pods, key=_by_key)),
            services=tuple(sorted(self._services, key=_by_key)),
            network_policies=tuple(sorted(self._policies, key=_by_key)),
            custom_objects=MappingProxyType({kind: tuple(sorted(objects, key=_by_key))
                                             for kind, objects in sorted(self._custom.items())}),
            endpoint_slices=tuple(sorted(self._slices, key=_by_key)),
            ignored_kinds=MappingProxyType(dict(sorted(self._ignored.items()))),
        )

    # One reader per kind; each has the object's namespace and name already checked.

    def _namespace(self, root: _At, namespace: str, name: str, api_version: str | None) -> None:
        self._namespaces.append(Namespace(name, root["metadata"]["labels"].string_map()))

    def _pod(self, root: _At, namespace: str, name: str, api_version: str | None) -> None:
        meta, spec, status = root["metadata"], root["spec"], root["status"]
        self._pods.append(Pod(
            namespace=namespace,
            name=name,
            labels=meta["labels"].string_map(),
            node=spec["nodeName"].string(None),
            ips=_addresses(status, "podIPs", "podIP"),
            host_ips=_addresses(status, "hostIPs", "hostIP"),
            host_network=spec["hostNetwork"].boolean(False),
            containers=tuple(_container(c) for c in spec["containers"].items()),
            owner=_owner(meta["ownerReferences"]),
            phase=status["phase"].string(None),
        ))

    def _service(self, root: _At, namespace: str, name: str, api_version: str | None) -> None:
        spec = root["spec"]
        kind = spec["type"].choice(SERVICE_TYPES, "ClusterIP")
        # spec.clusterIPs (one per family) supersedes spec.clusterIP; "None" makes the Service headless.
        entries = spec["clusterIPs"].items() or [spec["clusterIP"]]
        headless = any(e.value == "None" for e in entries)
        cluster_ips = () if headless else tuple(e.address() for e in entries if not e.absent and e.value != "")
        self._services.append(Service(
            namespace=namespace,
            name=name,
            type=kind,
            cluster_ips=cluster_ips,
            headless=headless,
            selector=spec["selector"].string_map(),
            ports=tuple(_service_port(p) for p in spec["ports"].items()),
            external_ips=tuple(i.address() for i in spec["externalIPs"].items()),
            load_balancer_ips=tuple(i["ip"].address() for i in root["status"]["loadBalancer"]["ingress"].items()
                                    if not i["ip"].absent),  # entries with only a hostname have no IP
            external_traffic_policy=spec["externalTrafficPolicy"].choice(("Cluster", "Local"), "Cluster"),
        ))

    def _network_policy(self, root: _At, namespace: str, name: str, api_version: str | None) -> None:
        spec = root["spec"]
        ingress = tuple(_rule(r, "from") for r in spec["ingress"].items())
        egress = tuple(_rule(r, "to") for r in spec["egress"].items())
        types = frozenset(t.choice(("Ingress", "Egress")) for t in spec["policyTypes"].items())
        if not types:
            # The API server's defaulting (kubernetes/kubernetes pkg/apis/networking/v1/defaults.go
            # SetDefaults_NetworkPolicy): Ingress always, Egress only when there are egress rules.
            types = frozenset({"Ingress", "Egress"} if egress else {"Ingress"})
        self._policies.append(NetworkPolicy(
            namespace=namespace,
            name=name,
            pod_selector=_selector(spec["podSelector"]),  # left out, Go decodes it as {}: every pod
            policy_types=types,
            ingress=ingress,
            egress=egress,
            spec=MappingProxyType(spec.mapping()),
        ))

    def _endpoint_slice(self, root: _At, namespace: str, name: str, api_version: str | None) -> None:
        kind = root["addressType"].choice(("IPv4", "IPv6", "FQDN"))
        pods, addresses = [], []
        for endpoint in root["endpoints"].items():
            ref = endpoint["targetRef"]
            if not ref.absent and ref["kind"].string(None) == "Pod" and \
                    ref["namespace"].string(namespace) == namespace:
                pods.append(ref["name"].string())
            if kind != "FQDN":
                addresses += [a.address() for a in endpoint["addresses"].items()]
        self._slices.append(EndpointSlice(
            namespace=namespace,
            name=name,
            service=root["metadata"]["labels"].string_map().get("kubernetes.io/service-name"),
            pods=tuple(dict.fromkeys(pods)),
            addresses=tuple(dict.fromkeys(addresses)),
        ))

    def _custom_object(self, root: _At, namespace: str, name: str, api_version: str | None) -> None:
        kind = root.obj.kind
        raw = MappingProxyType(root.mapping())
        self._custom.setdefault(kind, []).append(CustomObject(kind, api_version, namespace, name, raw))


_PARSERS: dict[str, Callable[[_Builder, _At, str, str, str | None], None]] = {
    "Namespace": _Builder._namespace,
    "Pod": _Builder._pod,
    "Service": _Builder._service,
    "NetworkPolicy": _Builder._network_policy,
    "EndpointSlice": _Builder._endpoint_slice,
    **{kind: _Builder._custom_object for kind in CUSTOM_KINDS},
}


def _by_key(obj: Pod | Service | NetworkPolicy | CustomObject | EndpointSlice) -> tuple[str, str]:
    return obj.namespace, obj.name


# --- field readers ---------------------------------------------------------------------------------------


class _Object:
    """The object being read, so that every complaint names the file, the object and the field."""

    def __init__(self, source: str, where: str, kind: str) -> None:
        self.source = source
        self.kind = kind
        self.label = f"{where} ({_display(kind)})" if where else _display(kind)  # until its name is known

    def fail(self, path: str, problem: str) -> NoReturn:
        raise UsageError(f"{self.source}: {self.label}: {path + ': ' if path else ''}{problem}")


class _At:
    """One field of one object: its value and its path. JSON null counts as absent, as the API treats it."""

    __slots__ = ("obj", "path", "value")

    def __init__(self, obj: _Object, path: str, value: object) -> None:
        self.obj, self.path, self.value = obj, path, value

    @property
    def absent(self) -> bool:
        return self.value is _MISSING or self.value is None

    def fail(self, problem: str) -> NoReturn:
        self.obj.fail(self.path, problem)

    def __getitem__(self, key: str) -> _At:
        return _At(self.obj, f"{self.path}.{key}" if self.path else key, self.mapping().get(key, _MISSING))

    def mapping(self) -> dict:
        if self.absent:
            return {}
        if not isinstance(self.value, dict):
            self.fail(f"must be a mapping, got {_type_name(self.value)}")
        return self.value

    def items(self) -> list[_At]:
        if self.absent:
            return []
        if not isinstance(self.value, list):
            self.fail(f"must be a list, got {_type_name(self.value)}")
        return [_At(self.obj, f"{self.path}[{i}]", v) for i, v in enumerate(self.value)]

    def string(self, default: str | None | object = _MISSING) -> str:
        if self.absent:
            if default is _MISSING:
                self.fail("missing")
            return default  # type: ignore[return-value]
        if not isinstance(self.value, str):
            self.fail(f"must be a string, got {_type_name(self.value)}")
        return self.value

    def choice(self, allowed: tuple[str, ...], default: str | object = _MISSING) -> str:
        value = self.string(default)
        if value not in allowed:
            self.fail(f"must be one of {', '.join(allowed)}, got {_show(value)}")
        return value

    def integer(self, low: int, high: int, default: int | None | object = _MISSING) -> int:
        if self.absent:
            if default is _MISSING:
                self.fail("missing")
            return default  # type: ignore[return-value]
        if not isinstance(self.value, int) or isinstance(self.value, bool) or not low <= self.value <= high:
            self.fail(f"must be an integer {low}-{high}, got {_show(self.value)}")
        return self.value

    def boolean(self, default: bool) -> bool:
        if self.absent:
            return default
        if not isinstance(self.value, bool):
            self.fail(f"must be true or false, got {_show(self.value)}")
        return self.value

    def string_map(self) -> Mapping[str, str]:
        """Labels, selectors: string keys to string values (YAML's unquoted `0` or `no` are not strings)."""
        result = {}
        for key, value in self.mapping().items():
            if not isinstance(key, str):
                self.fail(f"keys must be strings, got {_show(key)}")
            path = f"{self.path}.{key}" if key.isprintable() else f"{self.path}[{key!r}]"
            if not isinstance(value, str):
                self.obj.fail(path, f"must be a string, got {_show(value)}")
            result[key] = value
        return MappingProxyType(result) if result else _EMPTY

    def address(self) -> IPAddress:
        text = self.string()
        try:
            return ipaddress.ip_address(text)
        except ValueError:
            self.fail(f"not an IP address: {_show(text)}")

    def network(self) -> IPNetwork:
        text = self.string()
        try:
            if "/" not in text:
                raise ValueError
            # Host bits are masked, not refused: older API servers accepted them (ParseCIDRSloppy) and
            # stored policies keep them.
            return ipaddress.ip_network(text, strict=False)
        except ValueError:
            self.fail(f"not a CIDR such as 10.0.0.0/8: {_show(text)}")


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            dict: "a mapping", list: "a list"}.get(type(value), type(value).__name__)


def _show(value: object) -> str:
    """A value quoted on one line and short: the input may be hostile, the message is one terminal line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _name(at: _At, pattern: re.Pattern[str]) -> str:
    name = at.string()
    if len(name) > (63 if pattern is _LABEL else 253) or not pattern.fullmatch(name):
        at.fail(f"not a valid Kubernetes name (DNS-1123: lower-case letters, digits, '-'): {_show(name)}")
    return name


def _addresses(status: _At, plural: str, singular: str) -> tuple[IPAddress, ...]:
    """status.podIPs / hostIPs (one entry per family), else the older single podIP / hostIP field."""
    entries = status[plural]
    if not entries.absent:
        found = [e["ip"].address() for e in entries.items()]
    else:
        one = status[singular]
        found = [one.address()] if not one.absent else []
    return tuple(dict.fromkeys(found))


def _container(at: _At) -> Container:
    env = {}
    for item in at["env"].items():
        if item["valueFrom"].absent:  # the value is in a Secret or ConfigMap, which a snapshot does not read
            env[item["name"].string()] = item["value"].string("")
    return Container(
        name=at["name"].string(),
        ports=tuple(ContainerPort(
            container_port=p["containerPort"].integer(1, 65535),
            protocol=p["protocol"].choice(PROTOCOLS, "TCP"),
            name=p["name"].string(None),
            host_port=p["hostPort"].integer(1, 65535, None),
        ) for p in at["ports"].items()),
        env=MappingProxyType(env),
        image=at["image"].string(""),
        argv=tuple(a.string() for a in at["command"].items()) + tuple(a.string() for a in at["args"].items()),
    )


def _owner(refs: _At) -> OwnerRef | None:
    """The controller (a Pod's ReplicaSet, a TFJob), else the first reference: hand-written files often
    leave out `controller: true`."""
    owners = [(r["controller"].boolean(False), OwnerRef(r["kind"].string(), r["name"].string())) for r in refs.items()]
    for controller, owner in owners:
        if controller:
            return owner
    return owners[0][1] if owners else None


def _service_port(at: _At) -> ServicePort:
    port = at["port"].integer(1, 65535)
    target = at["targetPort"]
    if isinstance(target.value, str):
        target_port: int | str = target.string()
        if not target_port:
            target.fail("must not be empty")
    else:
        target_port = target.integer(1, 65535, port)
    return ServicePort(
        port=port,
        target_port=target_port,
        protocol=at["protocol"].choice(PROTOCOLS, "TCP"),
        name=at["name"].string(None),
        node_port=at["nodePort"].integer(1, 65535, None),
    )


def _selector(at: _At) -> LabelSelector:
    requirements = []
    for item in at["matchExpressions"].items():
        operator = item["operator"].choice(("In", "NotIn", "Exists", "DoesNotExist"))
        values = frozenset(v.string() for v in item["values"].items())
        # meta/v1 LabelSelectorRequirement: In/NotIn need values, Exists/DoesNotExist must have none.
        if (operator in ("In", "NotIn")) != bool(values):
            item["values"].fail(f"{operator} {'needs at least one value' if not values else 'takes no values'}")
        requirements.append(SelectorRequirement(item["key"].string(), operator, values))  # type: ignore[arg-type]
    return LabelSelector(at["matchLabels"].string_map(), tuple(requirements))


def _rule(at: _At, peers_field: str) -> PolicyRule:
    peers = tuple(_peer(p) for p in at[peers_field].items())
    return PolicyRule(peers, tuple(_policy_port(p) for p in at["ports"].items()))


def _peer(at: _At) -> PolicyPeer:
    pods, namespaces, block = at["podSelector"], at["namespaceSelector"], at["ipBlock"]
    if not block.absent:
        if not (pods.absent and namespaces.absent):
            at.fail("ipBlock cannot be combined with podSelector or namespaceSelector")
        return PolicyPeer(ip_block=_ip_block(block))
    if pods.absent and namespaces.absent:
        at.fail("must set podSelector, namespaceSelector or ipBlock")
    return PolicyPeer(pod_selector=None if pods.absent else _selector(pods),
                      namespace_selector=None if namespaces.absent else _selector(namespaces))


def _ip_block(at: _At) -> IPBlock:
    cidr = at["cidr"].network()
    excepts = []
    for item in at["except"].items():
        net = item.network()
        # kubernetes/kubernetes pkg/apis/networking/validation ValidateIPBlock: "must be a strict subset of `cidr`".
        if net.version != cidr.version or net.prefixlen <= cidr.prefixlen or not net.subnet_of(cidr):  # type: ignore
            item.fail(f"must be a strict subset of cidr {cidr}: {net}")
        excepts.append(net)
    return IPBlock(cidr, tuple(excepts))


def _policy_port(at: _At) -> PolicyPort:
    protocol = at["protocol"].choice(PROTOCOLS, "TCP")
    port_at, end_at = at["port"], at["endPort"]
    if isinstance(port_at.value, str):
        port: int | str | None = port_at.string()
        if not port:
            port_at.fail("must not be empty")
    else:
        port = port_at.integer(1, 65535, None)
    end = end_at.integer(1, 65535, None)
    if end is not None and not isinstance(port, int):
        end_at.fail("needs a numeric port")  # networking/v1 NetworkPolicyPort.endPort
    if end is not None and end < port:  # type: ignore[operator]
        end_at.fail(f"must be at least port {port}, got {end}")
    return PolicyPort(protocol, port, end)
