"""Three-valued NetworkPolicy verdicts: may this source open a connection to this pod on this port?

Why three values: a static snapshot cannot always tell. A named port the destination does not declare,
a namespaceSelector over a namespace whose labels were not collected, an ipBlock that covers an in-cluster
address, a hostNetwork pod: the answer depends on the cluster or on the network plugin, so the engine says
"unknown" and why, and never guesses "denied" (a false sense of isolation) or "allowed".

The semantics, with their sources:
- kubernetes/api networking/v1/types.go (NetworkPolicySpec, NetworkPolicyPeer, NetworkPolicyPort, IPBlock);
- the kubernetes.io page "Network Policies" (concepts/services-networking/network-policies/): isolation
  per direction, "both the egress policy on the source pod and the ingress policy on the destination pod
  need to allow the connection", "a pod cannot block access to itself", "traffic to and from the node
  where a Pod is running is always allowed", ipBlock "should be cluster-external IPs", and the two
  permitted behaviours for hostNetwork pods;
- the kubernetes.io page "Labels and Selectors": NotIn matches objects without the key;
- the kubernetes.io page "Namespaces": every namespace carries `kubernetes.io/metadata.name: <name>`.

Each verdict is for one (protocol, port), so the source's egress and the destination's ingress are
intersected on the same port by construction (the bug in kubescape/kubescape#3903 was ANDing two booleans
computed over different ports). Combination is Kleene logic: any rule that surely matches allows, every
rule surely not matching denies, anything else is unknown.
"""

from __future__ import annotations

import ipaddress
import weakref
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Literal, Mapping

from netaudit.core.errors import UsageError
from netaudit.targets.k8s_snapshot import (
    PROTOCOLS, IPBlock, IPNetwork, LabelSelector, NetworkPolicy, Pod, PolicyPeer, PolicyPort, PolicyRule,
    SelectorRequirement, Snapshot,
)

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

Value = Literal["allowed", "denied", "unknown"]


@dataclass(frozen=True)
class Verdict:
    """`rules` names what decided: "ns/policy#ingress[0]" for a rule that allows (or, for unknown, may
    allow), "ns/policy#ingress" for a policy that isolates the pod with no rule allowing the traffic."""

    value: Value
    rules: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class UnlabeledPod:
    """A pod that does not exist, with no labels, in `namespace`: what an attacker who may create pods there
    would start. Its IP and node are unknown."""

    namespace: str


@dataclass(frozen=True)
class ExternalAddress:
    """An address or block outside the cluster (an IP, or a CIDR such as 0.0.0.0/0 for "the internet"),
    matched by ipBlock rules alone and exactly. A block's verdict is the one all its addresses get; when they
    differ it is unknown, and the reason names the parts (ask about a single address to decide one). Pod
    addresses inside the block are still taken as outside ones: ask with the Pod for those."""

    cidr: str
    network: IPNetwork = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "network", ipaddress.ip_network(self.cidr))
        except ValueError as exc:
            raise UsageError(f"not an IP address or CIDR: {self.cidr!r} ({exc})") from None


@dataclass(frozen=True)
class NodeTraffic:
    """Traffic from the host network of node `node`: kubelet probes, host processes, hostNetwork pods as
    most plugins see them."""

    node: str


Source = Pod | UnlabeledPod | ExternalAddress | NodeTraffic
# What _decide handles: a source, with an ExternalAddress already cut into pieces of one verdict each.
_Decidable = Pod | UnlabeledPod | NodeTraffic | IPNetwork


def verdict(snapshot: Snapshot, source: Source, dest_pod: Pod, port: int, protocol: str = "TCP") -> Verdict:
    """Whether `source` may open a `protocol` connection to `dest_pod` on `port` (the pod's port: a Service
    port must first be resolved to its targetPort, since policies see traffic after DNAT)."""
    engine = _ENGINES.get(snapshot)
    if engine is None:
        engine = _ENGINES[snapshot] = PolicyEngine(snapshot)
    return engine.verdict(source, dest_pod, port, protocol)


class PolicyEngine:
    """Verdicts over one snapshot. The policies selecting each pod, per direction, are worked out once, so
    a verdict costs only the rules of the policies that select its two ends."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._policies_in: dict[str, list[NetworkPolicy]] = {}
        for policy in snapshot.network_policies:
            self._policies_in.setdefault(policy.namespace, []).append(policy)
        self._pods = {(p.namespace, p.name): p for p in snapshot.pods}
        self._selecting = {key: self._select(pod.namespace, pod.labels) for key, pod in self._pods.items()}
        self._unlabeled: dict[str, _Selected] = {}
        self._namespaces: dict[str, _Labels] = {}
        node_addresses: dict[str, dict[IPNetwork, None]] = {}
        for pod in snapshot.pods:
            if pod.node is not None:
                found = node_addresses.setdefault(pod.node, {})
                for address in (*pod.host_ips, *(pod.ips if pod.host_network else ())):
                    found[ipaddress.ip_network(address)] = None
        self._node_addresses = {node: tuple(found) for node, found in node_addresses.items()}

    def verdict(self, source: Source, dest: Pod, port: int, protocol: str = "TCP") -> Verdict:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise UsageError(f"port must be an integer 1-65535, got {port!r}")
        if protocol not in PROTOCOLS:
            raise UsageError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        if not isinstance(source, (Pod, UnlabeledPod, ExternalAddress, NodeTraffic)):
            raise TypeError(f"not a traffic source: {source!r}")
        if isinstance(source, Pod) and (source.namespace, source.name) == (dest.namespace, dest.name):
            return Verdict("allowed", (), f"{dest.key} is the source itself, and a pod cannot block access to itself")
        if isinstance(source, ExternalAddress):
            return self._external(source, dest, port, protocol)
        return self._decide(source, dest, port, protocol)

    # --- the two readings of hostNetwork, and blocks of outside addresses -----------------------------------

    def _decide(self, source: _Decidable, dest: Pod, port: int, protocol: str) -> Verdict:
        """The network plugin either applies NetworkPolicy to hostNetwork pods like any pod, or treats their
        traffic as the node's (the most common): both are permitted, so a verdict involving a hostNetwork
        pod is only certain when both readings agree."""
        as_pod = self._evaluate(self._source_end(source, False), self._dest_end(dest, False), port, protocol)
        if not (dest.host_network or (isinstance(source, Pod) and source.host_network)):
            return as_pod
        as_node = self._evaluate(self._source_end(source, True), self._dest_end(dest, True), port, protocol)
        rules = tuple(dict.fromkeys(as_pod.rules + as_node.rules))
        if as_pod.value == as_node.value:
            return Verdict(as_pod.value, rules, as_pod.reason)
        return Verdict("unknown", rules,
                       f"NetworkPolicy for hostNetwork pods is implementation-defined: it is {as_node.value} where the "
                       f"plugin treats them as node traffic (the most common) and {as_pod.value} where it applies "
                       "policies to them as to any pod")

    def _external(self, source: ExternalAddress, dest: Pod, port: int, protocol: str) -> Verdict:
        """Cut the source block at every ipBlock boundary of the destination's ingress policies, so that
        each piece is wholly inside or outside every ipBlock, and decide each piece exactly."""
        bounds = [net for policy in self._selecting_pod(dest).ingress for rule in policy.ingress for peer in rule.peers
                  if peer.ip_block is not None for net in (peer.ip_block.cidr, *peer.ip_block.except_)]
        pieces = _split(source.network, bounds)
        decided = [(piece, self._decide(piece, dest, port, protocol)) for piece in pieces]
        if len(decided) == 1:
            return decided[0][1]
        rules = tuple(dict.fromkeys(rule for _, v in decided for rule in v.rules))
        values = dict.fromkeys(v.value for _, v in decided)
        if len(values) == 1:
            return Verdict(decided[0][1].value, rules, f"for every address of {source.network}: {decided[0][1].reason}")
        parts = []
        for value in values:
            nets = list(ipaddress.collapse_addresses(p for p, v in decided if v.value == value))  # type: ignore
            shown = ", ".join(map(str, nets[:3])) + (f" and {len(nets) - 3} more" if len(nets) > 3 else "")
            parts.append(f"{value} for {shown}")
        return Verdict("unknown", rules, f"the verdict differs within {source.network}: {'; '.join(parts)}")

    # --- one reading: egress of the source AND ingress of the destination ----------------------------------

    def _evaluate(self, src: _End, dst: _End, port: int, protocol: str) -> Verdict:
        egress = self._egress(src, dst, port, protocol)
        ingress = self._ingress(src, dst, port, protocol)
        for value in (False, None):
            deciding = [side for side in (egress, ingress) if side.value is value]
            if deciding:
                return Verdict("denied" if value is False else "unknown",
                               tuple(r for side in deciding for r in side.rules), "; ".join(s.reason for s in deciding))
        reasons = [side.reason for side in (egress, ingress) if side.reason]
        return Verdict("allowed", egress.rules + ingress.rules, "; ".join(reasons))

    def _egress(self, src: _End, dst: _End, port: int, protocol: str) -> _Side:
        if src.what != "pod":
            return _Side(True, (), "")  # NetworkPolicy governs pods only: nodes and outside hosts send freely
        policies = self._selecting_end(src).egress
        if not policies:
            return _Side(True, (), f"no NetworkPolicy selects {src.text} for egress")
        own_node = _same_node(src, dst) if dst.what == "node" else _FALSE
        return self._direction("egress", policies, own_node, src, dst, dst, port, protocol)

    def _ingress(self, src: _End, dst: _End, port: int, protocol: str) -> _Side:
        if dst.what == "node":
            return _Side(True, (), f"{dst.text} read as its node, which NetworkPolicy does not govern")
        policies = self._selecting_end(dst).ingress
        if not policies:
            return _Side(True, (), f"no NetworkPolicy selects {dst.text} for ingress")
        own_node = _same_node(src, dst) if src.what == "node" else _FALSE
        return self._direction("ingress", policies, own_node, dst, src, dst, port, protocol)

    def _direction(self, direction: str, policies: tuple[NetworkPolicy, ...], own_node: _Tri, isolated: _End,
                   peer: _End, dst: _End, port: int, protocol: str) -> _Side:
        """The union of every rule of every policy that isolates `isolated` for this direction (order does not
        matter), plus the node exemption. `peer` is the other end: the source for ingress, the destination
        for egress. Named ports always resolve on the destination pod."""
        if own_node.value is True:
            return _Side(True, (), f"traffic between a pod and its own node ({dst.node}) is always allowed")
        toward = "from" if direction == "ingress" else "to"
        allowing: list[str] = []
        maybe: list[str] = []
        cause = own_node.cause
        for policy in policies:
            for index, rule in enumerate(policy.ingress if direction == "ingress" else policy.egress):
                match = self._rule(rule, policy.namespace, peer, dst, port, protocol)
                name = f"{policy.namespace}/{policy.name}#{direction}[{index}]"
                if match.value is True:
                    allowing.append(name)
                elif match.value is None:
                    maybe.append(name)
                    cause = cause or match.cause
        if allowing:
            return _Side(True, tuple(allowing), f"{direction} {toward} {peer.text} is allowed by {', '.join(allowing)}")
        if maybe or own_node.value is None:
            return _Side(None, tuple(maybe), cause)
        isolating = tuple(f"{p.namespace}/{p.name}#{direction}" for p in policies)
        return _Side(False, isolating, f"{isolated.text} is isolated for {direction} by {', '.join(isolating)} "
                                       f"and no rule allows {protocol}/{port} {toward} {peer.text}")

    def _rule(self, rule: PolicyRule, namespace: str, peer: _End, dst: _End, port: int, protocol: str) -> _Tri:
        """A rule matches when a port AND a peer match; empty lists match everything."""
        ports = _any(self._port(p, dst, port, protocol) for p in rule.ports) if rule.ports else _TRUE
        if ports.value is False:
            return ports
        peers = _any(self._peer(p, namespace, peer) for p in rule.peers) if rule.peers else _TRUE
        return _all((ports, peers))

    def _peer(self, peer: PolicyPeer, namespace: str, end: _End) -> _Tri:
        if peer.ip_block is not None:
            return _ip_block(peer.ip_block, end)
        if end.what != "pod":
            return _FALSE  # selectors select pods; node and outside traffic is matched by ipBlock alone
        if peer.namespace_selector is None:
            in_namespace = _of(end.namespace == namespace)  # podSelector alone: the policy's own namespace
        else:
            assert end.namespace is not None  # every pod end has one
            in_namespace = _selects(peer.namespace_selector, self._namespace_labels(end.namespace))
        if in_namespace.value is False or peer.pod_selector is None:
            return in_namespace
        return _all((in_namespace, _selects(peer.pod_selector, _Labels(end.labels))))

    @staticmethod
    def _port(rule_port: PolicyPort, dst: _End, port: int, protocol: str) -> _Tri:
        if rule_port.protocol != protocol:
            return _FALSE
        if rule_port.port is None:
            return _TRUE
        if isinstance(rule_port.port, int):
            return _of(rule_port.port <= port <= (rule_port.port if rule_port.end_port is None else rule_port.end_port))
        name = rule_port.port
        if dst.what == "node" or dst.pod is None:
            return _unknown(f"named port {name!r} cannot be resolved on {dst.text}")
        numbers = dst.pod.ports_named(name, protocol)
        if not numbers:
            return _unknown(f"{dst.text} declares no {protocol} port named {name!r}, so the rule's port is unresolved")
        if port not in numbers:
            return _FALSE
        if len(numbers) > 1:
            return _unknown(f"{dst.text} declares the {protocol} port name {name!r} more than once ({sorted(numbers)})")
        return _TRUE

    # --- what the snapshot knows about each end ------------------------------------------------------------

    def _select(self, namespace: str, labels: Mapping[str, str]) -> _Selected:
        ingress, egress = [], []
        for policy in self._policies_in.get(namespace, ()):
            if _selects(policy.pod_selector, _Labels(labels)).value:
                if "Ingress" in policy.policy_types:
                    ingress.append(policy)
                if "Egress" in policy.policy_types:
                    egress.append(policy)
        return _Selected(tuple(ingress), tuple(egress))

    def _selecting_pod(self, pod: Pod) -> _Selected:
        key = (pod.namespace, pod.name)
        if self._pods.get(key) is pod:
            return self._selecting[key]
        return self._select(pod.namespace, pod.labels)  # a pod object not from this snapshot

    def _selecting_end(self, end: _End) -> _Selected:
        if end.pod is not None:
            return self._selecting_pod(end.pod)
        assert end.namespace is not None
        if end.namespace not in self._unlabeled:
            self._unlabeled[end.namespace] = self._select(end.namespace, _NO_LABELS)
        return self._unlabeled[end.namespace]

    def _namespace_labels(self, name: str) -> _Labels:
        """A namespace's labels: all of them when the snapshot has the Namespace, else only the name label
        the control plane sets on every namespace (kubernetes.io "Namespaces", automatic labelling)."""
        if name not in self._namespaces:
            namespace = self._snapshot.namespaces.get(name)
            if namespace is None:
                cause = f"namespace {name} is not in the snapshot, so its labels are unknown"
                self._namespaces[name] = _Labels(MappingProxyType({NAMESPACE_NAME_LABEL: name}), False, cause)
            else:
                self._namespaces[name] = _Labels(MappingProxyType({**namespace.labels, NAMESPACE_NAME_LABEL: name}))
        return self._namespaces[name]

    def _source_end(self, source: _Decidable, as_node: bool) -> _End:
        if isinstance(source, Pod):
            if source.host_network and as_node:
                return _End(f"{source.key} (hostNetwork, read as its node)", "node",
                            addresses=_networks(source.ips), node=source.node)
            return _End(source.key, "pod", namespace=source.namespace, labels=source.labels,
                        addresses=_networks(source.ips), node=source.node, pod=source)
        if isinstance(source, UnlabeledPod):
            return _End(f"an unlabeled pod in namespace {source.namespace}", "pod", namespace=source.namespace,
                        labels=_NO_LABELS, addresses=None, node=None)
        if isinstance(source, NodeTraffic):
            addresses = self._node_addresses.get(source.node)
            return _End(f"node {source.node}", "node", addresses=addresses, node=source.node)
        return _End(str(source), "external", addresses=(source,))

    @staticmethod
    def _dest_end(dest: Pod, as_node: bool) -> _End:
        if dest.host_network and as_node:
            return _End(f"{dest.key} (hostNetwork)", "node", addresses=_networks(dest.ips), node=dest.node, pod=dest)
        return _End(dest.key, "pod", namespace=dest.namespace, labels=dest.labels, addresses=_networks(dest.ips),
                    node=dest.node, pod=dest)


_ENGINES: weakref.WeakKeyDictionary[Snapshot, PolicyEngine] = weakref.WeakKeyDictionary()
_NO_LABELS: Mapping[str, str] = MappingProxyType({})


# --- Kleene logic with a cause ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tri:
    """True, False or None (unknown); an unknown carries what the snapshot could not tell."""

    value: bool | None
    cause: str = ""


_TRUE, _FALSE = _Tri(True), _Tri(False)


def _of(value: bool) -> _Tri:
    return _TRUE if value else _FALSE


def _unknown(cause: str) -> _Tri:
    return _Tri(None, cause)


def _settle(values: Iterable[_Tri], decisive: bool, otherwise: _Tri) -> _Tri:
    """Three-valued or (decisive True) and and (decisive False): the first decisive value settles it, else the
    first unknown (with its cause), else `otherwise`."""
    unknown = None
    for value in values:
        if value.value is decisive:
            return value
        if value.value is None and unknown is None:
            unknown = value
    return unknown or otherwise


def _any(values: Iterable[_Tri]) -> _Tri:
    return _settle(values, True, _FALSE)


def _all(values: Iterable[_Tri]) -> _Tri:
    return _settle(values, False, _TRUE)


# --- ends, labels, addresses ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Selected:
    ingress: tuple[NetworkPolicy, ...]
    egress: tuple[NetworkPolicy, ...]


@dataclass(frozen=True)
class _Side:
    value: bool | None
    rules: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class _End:
    """One end of the connection as the network plugin sees it under one reading of hostNetwork:
    a pod (matched by selectors), a node, or an outside block (matched by ipBlock only)."""

    text: str
    what: Literal["pod", "node", "external"]
    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: _NO_LABELS)
    addresses: tuple[IPNetwork, ...] | None = ()  # None: unknown
    node: str | None = None  # None: unknown or unscheduled
    pod: Pod | None = None  # the snapshot pod, for its policies and its named ports


@dataclass(frozen=True)
class _Labels:
    """Labels as far as the snapshot knows them: a pod's are always complete; a namespace missing from the
    snapshot has only its name label known."""

    known: Mapping[str, str]
    complete: bool = True
    cause: str = ""


def _selects(selector: LabelSelector, labels: _Labels) -> _Tri:
    """matchLabels and matchExpressions ANDed; an empty selector selects everything, whatever is known."""
    match_labels = (SelectorRequirement(key, "In", frozenset({value})) for key, value in selector.match_labels.items())
    return _all(_requirement(r, labels) for chain in (match_labels, selector.match_expressions) for r in chain)


def _requirement(requirement: SelectorRequirement, labels: _Labels) -> _Tri:
    if requirement.key in labels.known:
        value = labels.known[requirement.key]
        return _of({"In": value in requirement.values, "NotIn": value not in requirement.values,
                    "Exists": True, "DoesNotExist": False}[requirement.operator])
    if not labels.complete:
        return _unknown(labels.cause)
    # The key is absent: NotIn and DoesNotExist match ("all resources with no labels with the key").
    return _of(requirement.operator in ("NotIn", "DoesNotExist"))


def _ip_block(block: IPBlock, end: _End) -> _Tri:
    """Outside addresses are matched exactly. For in-cluster addresses (pods, nodes) ipBlock "should be
    cluster-external IPs" and plugins differ (some match pod and node IPs, some never do), so a hit there
    is unknown; a miss is a miss under every reading."""
    if end.what == "external":
        (piece,) = end.addresses  # type: ignore[misc]
        return _of(_inside(piece, block))
    if not end.addresses:
        return _unknown(f"the address of {end.text} is unknown, so ipBlock {block.cidr} may match it")
    for address in end.addresses:
        if _inside(address, block):
            return _unknown(f"ipBlock {block.cidr} covers the in-cluster address {address.network_address} of "
                            f"{end.text}, and whether ipBlock applies to in-cluster addresses is "
                            "implementation-defined")
    return _FALSE


def _inside(net: IPNetwork, block: IPBlock) -> bool:
    """Whether `net` (a single address, or a piece cut by _split) lies in cidr minus every except."""
    if net.version != block.cidr.version or not net.subnet_of(block.cidr):  # type: ignore[arg-type]
        return False
    return not any(net.subnet_of(e) for e in block.except_)  # type: ignore[arg-type]


def _split(net: IPNetwork, bounds: list[IPNetwork]) -> list[IPNetwork]:
    """`net` cut into pieces none of which straddles a bound: each bound then contains a piece or misses it."""
    inner = [b for b in bounds
             if b.version == net.version and b.prefixlen > net.prefixlen and b.subnet_of(net)]  # type: ignore
    if not inner:
        return [net]
    low, high = net.subnets(prefixlen_diff=1)
    return _split(low, inner) + _split(high, inner)


def _networks(addresses: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> tuple[IPNetwork, ...] | None:
    found = tuple(ipaddress.ip_network(a) for a in addresses)
    return found or None  # a pod without an IP yet: its address is unknown


def _same_node(a: _End, b: _End) -> _Tri:
    if a.node is None or b.node is None:
        unknown_end = a if a.node is None else b
        return _unknown(f"the node of {unknown_end.text} is unknown, and a pod's own node may always reach it")
    return _of(a.node == b.node)
