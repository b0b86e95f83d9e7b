"""The server families netaudit knows, read from one declaration per family (probes/<family>/family.toml).

A family declares everything the engine needs: its kinds (with their usual ports, URI scheme and what the
policy does when one is reachable), its probes (which module and function, over which channel, for which
first-bytes sniff result, in which order), the facts its probes report and their types, what its probes
may send (the safety list), its rules, and its advice group. The engine, outputs, policy, advice and
safety check read this registry; no other list of kinds exists. As in sslyze's plugins/scan_commands.py
and nuclei's templates, the knowledge is data and the runner is generic.

Loading only parses and validates the TOML: the registry imports no probe module, so any stage can read
it (the RPC layer its safety lists) without an import cycle, and core loads nothing above it. A probe's
module is imported when it first runs, by netaudit/fingerprint/loader.py.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from netaudit.core.model import SEVERITIES, TRANSPORTS

TRUST_LEVELS = ("trusted", "untrusted")
CHANNELS = ("grpc", "http")
SNIFFED = ("h2", "http", "tls", "banner", "silent")
# Fact types a family may declare; an enum is written as a list of its values.
FACT_TYPES = ("bool", "int", "str", "list", "table")
# Endpoint fields every rule may match besides the facts.
ENDPOINT_FIELDS = {"kind": "str", "transport": list(TRANSPORTS), "authenticated": "bool",
                   "service": "str", "family": "str", "sensitive": "bool", "product": "str"}


class RegistryError(ValueError):
    """A family declaration is wrong: a bug in netaudit's own data, named precisely."""


@dataclass(frozen=True)
class Kind:
    name: str
    family: str
    label: str
    ports: tuple[int, ...]
    uri_scheme: str
    # A kind whose exposure the policy judges (TF code or TF models behind it); the others (grpc, http, …)
    # are protocol kinds a scan reports but no policy finding names.
    sensitive: bool
    policy_severity: dict[str, str] = field(default_factory=dict)  # trust -> severity when reachable, not allowed
    policy_cvss: str | None = None
    # Its servers register a known, fixed set of gRPC services, so once a probe names this kind the other
    # families' gRPC probes are not sent: they could only be refused, at a cost on every endpoint.
    sole_grpc_service: bool = False


@dataclass(frozen=True)
class Probe:
    family: str
    package: str  # the family's folder under probes/, which holds its modules
    module: str
    function: str
    channel: str  # grpc: fn(session, ctx) over the endpoint's shared channel; http: fn(host, port, timeout, ctx)
    sniffed: tuple[str, ...]
    order: int
    # Asks for models by name: grpc fn(session, names), http fn(host, port, timeout, names, evidence) -> {name:
    # model}. The engine tries names one port of a host gave away on the host's other such ports.
    inventory: str | None = None

    @property
    def qualified(self) -> str:
        """The module's import name: probes/<family folder>/<module>.py ships as netaudit.probes.... Only
        netaudit/fingerprint/loader.py imports it: core loads no stage above it."""
        return f"netaudit.probes.{self.package}.{self.module}"


@dataclass(frozen=True)
class Advice:
    name: str  # the group, e.g. tf-cluster: names the firewall rules the snippets create
    label: str
    tag: str
    namespace: str
    peer_label: str
    platforms: tuple[str, ...]
    kinds: tuple[str, ...]


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    kinds: tuple[Kind, ...]
    probes: tuple[Probe, ...]
    facts: dict[str, Any]
    rules: tuple[dict[str, Any], ...]
    do_not_call: frozenset[str]
    empty_only: frozenset[str]
    http_post_empty: tuple[str, ...]
    advice: Advice | None
    source: str


def _require(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in table:
        raise RegistryError(f"{where}: missing {key!r}")
    if not isinstance(table[key], kind):
        raise RegistryError(f"{where}: {key!r} has the wrong type ({type(table[key]).__name__})")
    return table[key]


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RegistryError(f"{where}: expected a list of strings")
    return tuple(value)


def _check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise RegistryError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _kind(entry: dict[str, Any], family: str, where: str) -> Kind:
    _check_keys(entry, {"name", "label", "ports", "uri_scheme", "sensitive", "policy_severity", "policy_cvss",
                        "sole_grpc_service"}, where)
    name = _require(entry, "name", str, where)
    sensitive = bool(entry.get("sensitive", False))
    severity = entry.get("policy_severity", {})
    if sensitive and set(severity) != set(TRUST_LEVELS):
        raise RegistryError(f"{where} ({name}): a sensitive kind needs policy_severity for trusted and untrusted")
    for trust, value in severity.items():
        if trust not in TRUST_LEVELS or value not in SEVERITIES:
            raise RegistryError(f"{where} ({name}): policy_severity {trust} = {value!r} is not a trust and severity")
    cvss = entry.get("policy_cvss")
    if cvss is not None:
        check_cvss(cvss, f"{where} ({name})")
    ports = entry.get("ports", [])
    if not all(isinstance(p, int) and 0 < p < 65536 for p in ports):
        raise RegistryError(f"{where} ({name}): ports must be numbers 1-65535")
    sole = entry.get("sole_grpc_service", False)
    if not isinstance(sole, bool):
        raise RegistryError(f"{where} ({name}): sole_grpc_service must be true or false")
    return Kind(name, family, _require(entry, "label", str, where), tuple(ports),
                entry.get("uri_scheme", "tcp"), sensitive, dict(severity), cvss, sole)


def _probe(entry: dict[str, Any], family: str, package: str, where: str) -> Probe:
    _check_keys(entry, {"module", "function", "channel", "sniffed", "order", "inventory"}, where)
    channel = _require(entry, "channel", str, where)
    if channel not in CHANNELS:
        raise RegistryError(f"{where}: channel {channel!r} is not one of {', '.join(CHANNELS)}")
    sniffed = _strings(entry.get("sniffed", []), f"{where} sniffed")
    if not set(sniffed) <= set(SNIFFED):
        raise RegistryError(f"{where}: sniffed {sniffed} names an unknown sniff result (known: {', '.join(SNIFFED)})")
    return Probe(family, package, _require(entry, "module", str, where), entry.get("function", "probe"), channel, sniffed,
                 int(entry.get("order", 50)), entry.get("inventory"))


def check_cvss(vector: str, where: str) -> None:
    from cvss import CVSS3
    from cvss.exceptions import CVSS3Error

    try:
        CVSS3(vector)
    except CVSS3Error as exc:
        raise RegistryError(f"{where}: CVSS vector {vector!r} does not parse: {exc}") from None


def _facts(table: dict[str, Any], where: str) -> dict[str, Any]:
    for name, declared in table.items():
        if isinstance(declared, list):
            if not declared or not all(isinstance(v, str) for v in declared):
                raise RegistryError(f"{where} fact {name!r}: an enum is a non-empty list of strings")
        elif declared not in FACT_TYPES:
            raise RegistryError(f"{where} fact {name!r}: type {declared!r} is not one of {', '.join(FACT_TYPES)} "
                                "or a list of enum values")
    return dict(table)


# A finding's "why this proves it" line: one line, short enough to read beside the evidence it explains.
WHY_LIMIT = 400


def check_why(rule: Any, where: str) -> None:
    """Every rule says, in one line, why its evidence proves its title; the text and HTML outputs print it
    under the finding, so a rule without one is a declaration error, not a finding without an explanation."""
    rule_id = rule.get("id", "?") if isinstance(rule, dict) else "?"
    why = rule.get("why") if isinstance(rule, dict) else None
    if not isinstance(why, str) or not why.strip():
        raise RegistryError(f"{where} rule {rule_id!r}: missing 'why', the one line that says why its evidence "
                            "proves its title")
    if "\n" in why or len(why) > WHY_LIMIT:
        raise RegistryError(f"{where} rule {rule_id!r}: 'why' must be one line of at most {WHY_LIMIT} characters")


RULE_TEXT_KEYS = frozenset({"id", "severity", "title", "why", "remediation", "references", "compliance"})


def data_rules(where: str) -> list[Any]:
    """The `[[rule]]` tables of a rule file under netaudit/ (data/…toml), unchecked: check_data_rules next."""
    return tomllib.loads(resources.files("netaudit").joinpath(where).read_text()).get("rule", [])


def check_data_rules(rules: list[Any], where: str, needs: frozenset[str] = frozenset(),
                     takes: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Rules that are not a family's (data/k8s_*_rules.toml): each has the keys every rule has (and
    `needs`), a known severity and its `why`, and no key but those and `takes`, so a mistake in netaudit's
    own data stops every command instead of a finding going missing."""
    required = {"id", "severity", "title", "remediation"} | needs
    allowed = RULE_TEXT_KEYS | needs | takes
    for entry in rules:
        if not isinstance(entry, dict):
            raise RegistryError(f"{where}: every [[rule]] is a table")
        rule_id = entry.get("id", "?")
        if set(entry) - allowed or not required <= set(entry):
            raise RegistryError(f"{where}: rule {rule_id!r}: needs {', '.join(sorted(required))}, and takes only "
                                f"{', '.join(sorted(allowed))}")
        if entry["severity"] not in SEVERITIES:
            raise RegistryError(f"{where}: rule {rule_id!r}: severity {entry['severity']!r} is not one of "
                                f"{', '.join(SEVERITIES)}")
        check_why(entry, where)
    return rules


def _family(text: str, source: str, package: str) -> Family:
    data = tomllib.loads(text)
    _check_keys(data, {"family", "kind", "probe", "facts", "rule", "safety", "advice"}, source)
    head = _require(data, "family", dict, source)
    _check_keys(head, {"name", "title"}, f"{source} [family]")
    name = _require(head, "name", str, f"{source} [family]")
    kinds = tuple(_kind(k, name, f"{source} [[kind]] #{i}") for i, k in enumerate(data.get("kind", []), 1))
    probes = tuple(_probe(p, name, package, f"{source} [[probe]] #{i}")
                   for i, p in enumerate(data.get("probe", []), 1))
    safety = data.get("safety", {})
    _check_keys(safety, {"do_not_call", "empty_only", "http_post_empty"}, f"{source} [safety]")
    advice = None
    if "advice" in data:
        table = data["advice"]
        where = f"{source} [advice]"
        _check_keys(table, {"group", "label", "tag", "namespace", "peer_label", "platforms", "kinds"}, where)
        advice = Advice(*(_require(table, k, str, where) for k in ("group", "label", "tag", "namespace",
                                                                     "peer_label")),
                        _strings(table.get("platforms", []), f"{where} platforms"),
                        _strings(table.get("kinds", [k.name for k in kinds if k.sensitive]), f"{where} kinds"))
    rules = data.get("rule", [])
    for index, rule in enumerate(rules if isinstance(rules, list) else [rules], 1):
        check_why(rule, f"{source} [[rule]] #{index}")
    return Family(name, _require(head, "title", str, f"{source} [family]"), kinds, probes,
                  _facts(data.get("facts", {}), source), tuple(data.get("rule", [])),
                  frozenset(_strings(safety.get("do_not_call", []), f"{source} do_not_call")),
                  frozenset(_strings(safety.get("empty_only", []), f"{source} empty_only")),
                  _strings(safety.get("http_post_empty", []), f"{source} http_post_empty"), advice, source)


# The kinds the fingerprint engine assigns itself, before or instead of any family's probe: they must be
# declared too (probes/generic/family.toml, probes/transport/family.toml), or the engine would name kinds
# nobody knows.
ENGINE_KINDS = ("grpc", "http", "tls", "unknown")
DECLARATION = "family.toml"


def _declarations(folder: Any) -> tuple[Family, ...]:
    """One family per folder of probes/ that holds a family.toml. A folder with probe code and no
    declaration is an error: the scanner would call every server of that family by a protocol kind."""
    try:
        folders = sorted((e for e in folder.iterdir() if e.is_dir() and not e.name.startswith(("_", "."))),
                         key=lambda e: e.name)
        texts = []
        for entry in folders:
            declaration = entry.joinpath(DECLARATION)
            if declaration.is_file():
                texts.append((declaration.read_text(encoding="utf-8"), f"probes/{entry.name}/{DECLARATION}",
                              entry.name))
            elif any(e.name.endswith(".py") and e.name != "__init__.py" for e in entry.iterdir()):
                raise RegistryError(f"probes/{entry.name}/ holds probe code but no {DECLARATION} "
                                    f"(looked in {entry})")
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"cannot read the server family declarations in {folder}: {exc}") from None
    if not texts:
        raise RegistryError(f"no server family declarations (probes/*/{DECLARATION}) in {folder}: this install of "
                            "netaudit is incomplete; reinstall it (pip install --force-reinstall netaudit-tf)")
    found = []
    for text, source, package in texts:
        try:
            found.append(_family(text, source, package))
        except tomllib.TOMLDecodeError as exc:
            raise RegistryError(f"{source} is not valid TOML: {exc}") from None
    return tuple(found)


def _check_code_names(folder: Any, found: tuple[Family, ...]) -> None:
    """Every module a declaration names exists in its folder, and the engine's own kinds are declared."""
    for family in found:
        for probe in family.probes:
            if not folder.joinpath(probe.package, f"{probe.module}.py").is_file():
                raise RegistryError(f"{family.source} names probe module {probe.module!r}, which is not in "
                                    f"{folder.joinpath(probe.package)}")
    kinds_declared = {k.name for f in found for k in f.kinds}
    missing = [k for k in ENGINE_KINDS if k not in kinds_declared]
    if missing:
        raise RegistryError(f"the engine's own kind {missing[0]!r} has no declaration in {folder}")


@cache
def families() -> tuple[Family, ...]:
    """Every family, from each probes/*/family.toml; kind names unique across all of them. A missing, unreadable or
    empty set of declarations is an error, never an empty registry: a scanner without them recognises
    nothing and would report every TF server as unknown, with exit 0."""
    folder = resources.files("netaudit.probes")
    found = _declarations(folder)
    seen: dict[str, str] = {}
    for family in found:
        if not family.kinds:
            raise RegistryError(f"{family.source} declares no kind")
        for kind in family.kinds:
            if kind.name in seen:
                raise RegistryError(f"kind {kind.name!r} is declared by both {seen[kind.name]} and {family.source}")
            seen[kind.name] = family.source
    _check_code_names(folder, found)
    return found


@cache
def kinds() -> dict[str, Kind]:
    return {kind.name: kind for family in families() for kind in family.kinds}


def kind(name: str | None) -> Kind | None:
    return kinds().get(name or "")


def sensitive_kinds() -> tuple[str, ...]:
    """Kinds whose reachability the policy judges (TF code or models behind them)."""
    return tuple(name for name, k in kinds().items() if k.sensitive)


def probes_for(sniffed: str, channel: str) -> tuple[Probe, ...]:
    """The probes that apply to what the sniff saw, most specific first."""
    return tuple(sorted((p for f in families() for p in f.probes if sniffed in p.sniffed and p.channel == channel),
                        key=lambda p: p.order))


def inventory_probe(kind_name: str | None, channel: str) -> Probe | None:
    """The probe of this kind's family that asks for models by name over this channel, if any."""
    declared = kind(kind_name)
    if declared is None:
        return None
    family = next(f for f in families() if f.name == declared.family)
    return next((p for p in family.probes if p.channel == channel and p.inventory), None)


@cache
def top_level_facts() -> frozenset[str]:
    """The details keys a probe may write: the first part of every declared fact."""
    return frozenset(name.split(".", 1)[0] for name in facts())


def usual_kind(port: int) -> str | None:
    """The sensitive kind usually served on this port, for a port a vantage could not reach."""
    return next((k.name for k in kinds().values() if k.sensitive and port in k.ports), None)


def advice_groups() -> tuple[Advice, ...]:
    return tuple(f.advice for f in families() if f.advice is not None)


@cache
def facts() -> dict[str, Any]:
    """Every declared fact (dotted path into details -> type); two families may share a fact only with
    the same type."""
    out: dict[str, Any] = {}
    for family in families():
        for name, declared in family.facts.items():
            if name in out and out[name] != declared:
                raise RegistryError(f"fact {name!r} is declared with two types ({out[name]!r}, {declared!r})")
            out[name] = declared
    return out
