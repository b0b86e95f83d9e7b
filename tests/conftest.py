"""Shared fixtures: a real loopback lab (TF processes and decoys) started once per test session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from netaudit.lab.loopback import LoopbackLab
from netaudit.scanner.scan import ScanOptions, scan
from netaudit.targets.parse import build_targets

NETAUDIT = [sys.executable, "-m", "netaudit"]
TREE = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def isolated_history(tmp_path_factory):
    """Every netaudit the tests run records into a store of the session's own, never the user's."""
    os.environ["NETAUDIT_STORE"] = str(tmp_path_factory.mktemp("history") / "history.sqlite")
    # The lab's peer venvs (MLServer, Triton) stay in the checkout's git-ignored .cache/, built once and reused
    # by every run, and never left in the user's cache directory.
    os.environ.setdefault("NETAUDIT_PEER_VENVS", str(TREE / ".cache" / "peer-venvs"))


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    with LoopbackLab(tmp_path_factory.mktemp("lab")) as running:
        yield running


@pytest.fixture(scope="session")
def lab_scan(lab):
    """One full scan of every lab endpoint, shared by the assertions that only read it."""
    # A generous deadline: 30 lab processes share two cores, and sslyze makes many handshakes per TLS port.
    return scan(build_targets(lab.targets(), scope="127.0.0.1/32"), ScanOptions(vantage="loopback", timeout=5))


def run_cli(*args: str, stdin: str | None = None, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*NETAUDIT, *args], input=stdin, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@contextmanager
def tf_everywhere(rules: str):
    """A namespace where one real TF worker answers on every address of 198.18.0.0/24 (a local route), behind
    the given nftables rules; the worker is killed and the namespace removed even when a test fails."""
    require_root_tools("ip", "nft")
    from netaudit.lab.netns import Netns

    with Netns() as ns:
        ns.add_local_route("198.18.0.0/24")
        ns.nft(rules)
        with tf_worker(ns.popen, 2222):
            yield ns


@contextmanager
def tf_worker(popen, port: int):
    """A real tf.distribute.Server worker on `port`, started by `popen` (subprocess.Popen, or a namespace's),
    killed even when the test fails."""
    server = popen(sys.executable, "-m", "netaudit.lab.tf_task", "--cluster",
                   json.dumps({"worker": [f"localhost:{port}"]}), "--job", "worker", "--task", "0",
                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout.readline().startswith("READY"), "the TF worker did not start"
        yield server
    finally:
        server.kill()
        server.wait(10)


def require_root_tools(*tools: str) -> None:
    """Namespace tests need root and the Debian tools .ci/run installs; say which is missing."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces (CI runs as root)")
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (.ci/run installs it)")


# Property tests: CI runs a bounded number of examples; `HYPOTHESIS_PROFILE=fuzz python3 -m pytest
# tests/test_parsers_fuzz.py` is the long fuzz run (README "Hostile networks").
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile("ci", max_examples=200, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=20000, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
