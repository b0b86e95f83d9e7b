"""Whether the packages of the `[lab]` extra are installed, read from this install's own metadata, so the
demo and `lab up` can say what to install before they build anything (the list lives in pyproject.toml)."""

from __future__ import annotations

import re
from importlib import metadata

from netaudit import DISTRIBUTION, LAB_INSTALL
from netaudit.core.errors import UsageError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def lab_requirements() -> list[str]:
    """The distribution names the `[lab]` extra asks for."""
    try:
        declared = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return []  # netaudit runs from a tree that was never installed: nothing to compare against
    return [NAME.match(req).group(0) for req in declared
            if re.search(r"""extra\s*==\s*["']lab["']""", req) and NAME.match(req)]


# The import names of the [lab] extra's distributions (a missing one is the lab's, not a broken install).
IMPORT_NAMES = {"tensorflow-serving-api": "tensorflow_serving", "grpcio-health-checking": "grpc_health",
                "grpcio-reflection": "grpc_reflection"}


def lab_modules() -> set[str]:
    return {IMPORT_NAMES.get(name, name.replace("-", "_")) for name in lab_requirements()} | {"tensorflow"}


def missing_lab_packages() -> list[str]:
    missing = []
    for name in lab_requirements():
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def require_lab(what: str) -> None:
    missing = missing_lab_packages()
    if missing:
        raise UsageError(f"{what} needs the lab's packages, and {', '.join(missing)} "
                         f"{'is' if len(missing) == 1 else 'are'} not installed: {LAB_INSTALL}")
