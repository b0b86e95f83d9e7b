"""Virtual environments for lab servers that cannot share the scanner's environment.

MLServer 1.7 pins fastapi<0.116 (so starlette<0.47) while KServe needs starlette>=1.3, and installed
together pip falls back to mlserver 1.2.1 (measured with pip's resolver, docs/wire-facts.md §9); PyTriton
pins numpy<2 and needs a particular interpreter (below). The lab therefore installs each into a venv of its own, once, on first
use: under NETAUDIT_PEER_VENVS when it is set, else in the user's cache directory
($XDG_CACHE_HOME/netaudit/peer-venvs, else ~/.cache/netaudit/peer-venvs), from a checkout and an install
alike. A lock keeps two labs from building it at once, and
a marker written last means a half-built venv (an interrupted pip) is rebuilt rather than used.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

from netaudit.lab.processes import LabError, lab_env

# Name -> (the interpreter the venv is built from, None for this one; the exact requirements pip installs).
# PyTriton's Python-backend stub is linked against the system's libpython3.11 (Debian's 3.11.2) and fails
# with another 3.11's standard library ("'_thread.RLock' object has no attribute '_recursion_count'"), so
# its venv is built from that same system interpreter.
PEER_VENVS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "mlserver": (None, ("mlserver==1.7.1",)),
    "triton": ("/usr/bin/python3.11", ("nvidia-pytriton==0.7.0",)),
}
MARKER = ".netaudit-complete"
INSTALL_TIMEOUT = 900.0


def venv_root() -> Path:
    configured = os.environ.get("NETAUDIT_PEER_VENVS")
    if configured:
        return Path(configured)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "netaudit" / "peer-venvs"


def venv_python(name: str) -> Path:
    """The venv's interpreter, building the venv first when it is missing or incomplete."""
    interpreter, requirements = PEER_VENVS[name]
    if interpreter and not Path(interpreter).exists():
        raise LabError(f"the {name} venv needs {interpreter} (the interpreter its binaries are linked against)")
    root = venv_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabError(f"cannot create the peer venv folder {root}: {exc.strerror} "
                       "(set NETAUDIT_PEER_VENVS or XDG_CACHE_HOME to a writable folder)") from None
    target = root / "-".join(r.replace("==", "-") for r in requirements)
    python = target / "bin" / "python"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / MARKER).exists():
            return python
        shutil.rmtree(target, ignore_errors=True)
        steps = ([interpreter or sys.executable, "-m", "venv", str(target)],
                 [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements])
        for argv in steps:
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, env=lab_env())
            except subprocess.TimeoutExpired:
                raise LabError(f"{' '.join(argv)} took longer than {INSTALL_TIMEOUT:g}s") from None
            if done.returncode:
                tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
                raise LabError(f"cannot build the {name} venv ({' '.join(argv[-len(requirements):])}):\n{tail}")
        (target / MARKER).write_text(" ".join(requirements) + "\n")
    return python


def prepare_venvs(names: tuple[str, ...]) -> None:
    for name in names:
        venv_python(name)
