"""The policy file: network segments with a trust level, and who may reach which kind of TF endpoint."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netaudit.core import registry
from netaudit.core.registry import TRUST_LEVELS
from netaudit.core.errors import UsageError
from netaudit.core.files import read_toml
from netaudit.targets.parse import IPNetwork
from netaudit.core.validate import check_keys, nearest

REQUIREMENTS = ("tls", "mtls")


@dataclass(frozen=True)
class Segment:
    name: str
    cidrs: tuple[IPNetwork, ...]
    trust: str


@dataclass(frozen=True)
class Allow:
    kinds: tuple[str, ...]
    sources: tuple[str, ...]
    require: tuple[str, ...] = ()

    def permits(self, kind: str, segment: str) -> bool:
        return kind in self.kinds and segment in self.sources

    def unmet(self, transport: str | None) -> list[str]:
        """Requirements this transport does not meet (mtls also satisfies tls)."""
        have = {"mtls": {"tls", "mtls"}, "tls": {"tls"}}.get(transport or "", set())
        return [r for r in self.require if r not in have]


@dataclass(frozen=True)
class Policy:
    segments: dict[str, Segment]
    allows: tuple[Allow, ...]

    def segment_of(self, address: str) -> Segment | None:
        ip = ipaddress.ip_address(address)
        for segment in self.segments.values():
            if any(ip in net for net in segment.cidrs):
                return segment
        return None

    def rules_for(self, kind: str, segment: str) -> list[Allow]:
        return [a for a in self.allows if a.permits(kind, segment)]

    def to_dict(self) -> dict:
        return {"segments": {s.name: {"cidrs": [str(c) for c in s.cidrs], "trust": s.trust}
                             for s in self.segments.values()},
                "allow": [{"kinds": list(a.kinds), "from": list(a.sources), "require": list(a.require)}
                          for a in self.allows]}


def _list(value, what: str, path: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"policy {path}: {what} must be a list of strings")
    return tuple(value)


def load_policy(path: str) -> Policy:
    data = read_toml(path, "policy")
    check_keys(data, {"segments", "allow"}, f"policy {path}", "top level")
    if not isinstance(data.get("segments", {}), dict) or not isinstance(data.get("allow", []), list):
        raise UsageError(f"policy {path}: segments must be tables ([segments.NAME]) and allow a list ([[allow]])")
    segments = {}
    for name, entry in (data.get("segments") or {}).items():
        if not isinstance(entry, dict):
            raise UsageError(f"policy {path}: [segments.{name}] must be a table")
        check_keys(entry, {"cidrs", "trust"}, f"policy {path}", f"segments.{name}")
        if not entry.get("cidrs"):
            raise UsageError(f"policy {path}: segments.{name}: no cidrs: the segment would hold no address")
        trust = entry.get("trust", "untrusted")
        if trust not in TRUST_LEVELS:
            raise UsageError(f"policy {path}: segment {name!r} trust {trust!r} is not one of {', '.join(TRUST_LEVELS)}")
        try:
            cidrs = tuple(ipaddress.ip_network(c, strict=False) for c in _list(entry.get("cidrs", []), "cidrs", path))
        except ValueError as exc:
            raise UsageError(f"policy {path}: segment {name!r}: {exc}") from None
        segments[name] = Segment(name, cidrs, trust)
    if not segments:
        raise UsageError(f"policy {path} defines no [segments.NAME]")
    allows = []
    for index, entry in enumerate(data.get("allow") or [], 1):
        if not isinstance(entry, dict):
            raise UsageError(f"policy {path}: allow #{index} must be a table")
        check_keys(entry, {"kinds", "from", "require"}, f"policy {path}", f"allow #{index}")
        if not entry.get("kinds") or not entry.get("from"):
            raise UsageError(f"policy {path}: allow #{index} needs kinds and from")
        kinds = _list(entry.get("kinds", []), f"allow #{index} kinds", path)
        sources = _list(entry.get("from", []), f"allow #{index} from", path)
        require = _list(entry.get("require", []), f"allow #{index} require", path)
        for kind in kinds:
            if registry.kind(kind) is None:
                raise UsageError(f"policy {path}: allow #{index}: unknown kind {kind!r}"
                                 f"{nearest(kind, registry.kinds())} (known: {', '.join(registry.kinds())})")
        for source in sources:
            if source not in segments:
                raise UsageError(f"policy {path}: allow #{index}: unknown segment {source!r}{nearest(source, segments)}")
        for req in require:
            if req not in REQUIREMENTS:
                raise UsageError(f"policy {path}: allow #{index}: require {req!r} is not one of tls, mtls")
        allows.append(Allow(kinds, sources, require))
    return Policy(segments, tuple(allows))
