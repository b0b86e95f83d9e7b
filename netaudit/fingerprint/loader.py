"""Loading a family's code. The registry (netaudit/core/registry.py) holds every family's declarations as
data and, being core, imports nothing above it; whoever runs a probe or reads a probe module's constants
(the runner, the nmap probe export) loads the module the declaration names from here, when first used."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Callable

from netaudit.core.registry import Probe


def module(probe: Probe) -> ModuleType:
    """probes/<family folder>/<module>.py, which ships as netaudit.probes.<folder>.<module>."""
    return importlib.import_module(probe.qualified)


def function(probe: Probe) -> Callable:
    """The probe itself: grpc fn(session, ctx), http fn(host, port, timeout, ctx) (registry.Probe)."""
    return getattr(module(probe), probe.function)


def inventory(probe: Probe) -> Callable:
    """The probe's ask for models by name (registry.Probe.inventory)."""
    return getattr(module(probe), probe.inventory or "")
