"""What a probe hands back to the runner: a claim about the endpoint plus the evidence for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .serving import BUILTIN_MODEL_NAMES


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


@dataclass(frozen=True)
class ProbeContext:
    """What a scan knows before it probes: the model names to try (built-in list plus --model-names), and
    how many more times a slow gRPC connection or a late reply is waited for (--retries)."""

    model_names: tuple[str, ...] = BUILTIN_MODEL_NAMES
    retries: int = 1

