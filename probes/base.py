"""What a probe hands back to the runner: a claim about the endpoint plus the evidence for it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from netaudit.probes.common import BUILTIN_MODEL_NAMES


@dataclass(frozen=True)
class Expect:
    """A reply that proves something: this status code, with details starting with this text (None = any)."""

    code: str
    details: str | None = None


@dataclass
class Outcome:
    kind: str | None = None
    services: list[str] = field(default_factory=list)
    authenticated: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)


def registered_methods(raw: Any) -> dict[str, bool]:
    """A release-marker row's `methods` (gRPC path -> registered in that release), checked as it loads."""
    if not raw or not isinstance(raw, dict) or not all(
            isinstance(k, str) and k.startswith("/") and isinstance(v, bool) for k, v in raw.items()):
        raise ValueError("methods must map gRPC paths to true/false")
    return dict(raw)


def methods_agree(known: dict[str, bool], observed: dict[str, bool]) -> bool:
    """No observed method contradicts what a release row says of it (a method the row does not list is
    unknown there and contradicts nothing)."""
    return not any(m in known and known[m] != v for m, v in observed.items())


@dataclass(frozen=True)
class ProbeContext:
    """What a scan knows before it probes: the model names to try (built-in list plus --model-names), and
    how many more times a slow gRPC connection or a late reply is waited for (--retries)."""

    model_names: tuple[str, ...] = BUILTIN_MODEL_NAMES
    retries: int = 1



# ---- one-request signatures, for tools that name a service from one request and one reply (nmap -sV) ------
#
# A family module lists them in `NMAP`; `netaudit export nmap-probes` collects them for every family the
# registry declares (netaudit/outputs/nmap_probes.py), so a new family's module brings its nmap probes along. They
# are built from the same constants the module's probe uses. They claim less than the probe: one request
# and one reply shape, with no JSON parsing, no inventory and no version range.

# In a pattern: the random model name the request carried (filled in regex-escaped). A regex comment, so
# the pattern compiles as it is.
NAME_SLOT = "(?#name)"


def literal(template: str) -> str:
    """A regex for `template` (a str.format template) exactly, with its {name} as NAME_SLOT."""
    return re.escape(template.format(name="\x00")).replace("\x00", NAME_SLOT)


@dataclass(frozen=True)
class Naming:
    """One reply shape and how a tool names the server that sent it. `pattern` is a regex in the subset
    Python's re and PCRE share, never anchored except by a leading \\A ("where the proof starts": the body
    of an HTTP reply, the message of a gRPC reply); `product`, `version` and `info` may cite its named
    groups as {group}."""

    pattern: str
    product: str
    version: str | None = None
    info: str | None = None
    cpe: str | None = None


@dataclass(frozen=True)
class GrpcSignature:
    """A unary gRPC call that identifies the family by itself. With status "OK" the namings read the reply
    message; with another status the call must fail with it, and the namings (without groups) read its
    grpc-message."""

    name: str
    method: str
    request: bytes | Callable[[str], bytes]  # a callable gets the random model name
    status: str
    namings: tuple[Naming, ...]
    kinds: tuple[str, ...]  # the registry kinds it identifies (their usual ports are tried first)
    order: int  # file order: probes that name more (a version) before those that name less
    about: str


@dataclass(frozen=True)
class HttpSignature:
    """A GET that identifies the family by itself: the status, headers that must be there with exactly this
    value (or, with None, must be absent), and the namings, which read the body."""

    name: str
    path: str  # {name}: the random model name
    status: int
    headers: tuple[tuple[str, str | None], ...]
    namings: tuple[Naming, ...]
    kinds: tuple[str, ...]
    order: int
    about: str
