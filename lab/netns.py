"""Linux network namespaces for lab segments, tests and benchmarks (root only).

Everything a namespace holds dies with it: `close()` SIGKILLs every process still inside, then deletes
the namespace, which removes its interfaces, routes and nftables tables too.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time


class NetnsError(RuntimeError):
    pass


def ip_command(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if proc.returncode:
        raise NetnsError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


def netns_pids(name: str) -> list[int]:
    proc = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=10)
    return [int(p) for p in proc.stdout.split()]


def delete_netns(name: str) -> None:
    """SIGKILL whatever still runs inside, then delete the namespace."""
    for _ in range(50):
        pids = netns_pids(name)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


class Netns:
    def __init__(self, prefix: str = "na", name: str | None = None):
        self.name = name or f"{prefix}-{secrets.token_hex(3)}"
        ip_command("netns", "add", self.name)
        try:
            ip_command("-n", self.name, "link", "set", "lo", "up")
        except NetnsError:
            self.close()
            raise

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, check: bool = True, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.argv(*argv), capture_output=True, text=True, timeout=timeout, **kw)
        if check and proc.returncode:
            raise NetnsError(f"{' '.join(argv)} in {self.name} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def popen(self, *argv: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*argv), **kw)

    def add_local_route(self, cidr: str) -> None:
        """Every address in `cidr` becomes local, so a sweep gets a real answer from each one."""
        ip_command("-n", self.name, "route", "add", "local", cidr, "dev", "lo")

    def nft(self, ruleset: str) -> None:
        proc = subprocess.run(self.argv("nft", "-f", "-"), input=ruleset, capture_output=True, text=True, timeout=10)
        if proc.returncode:
            raise NetnsError(f"nft in {self.name}: {proc.stderr.strip()}")

    def close(self) -> None:
        delete_netns(self.name)

    def __enter__(self) -> "Netns":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
