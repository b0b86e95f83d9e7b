"""Two namespaces joined by one veth link, for tools that cannot scan over loopback (root only).

masscan and zmap write Ethernet frames with libpcap and need a real link with a gateway MAC (masscan
issue #129, https://github.com/robertdavidgraham/masscan/issues/129: `lo` does not work;
docs/wire-facts.md §8). The scanner side holds one address and routes the target blocks over the link;
the target side makes those blocks local (`ip route add local … dev lo`), so every address answers.
Closing deletes both namespaces, and with them the link, the routes, the nftables tables and every
process left inside.
"""

from __future__ import annotations

import json
import subprocess

from netaudit.lab.netns import Netns, NetnsError, ip_command

LINK_NET = "198.18.200"  # the link's /24; target blocks are routed over it


class VethLab:
    def __init__(self, link_net: str = LINK_NET):
        self.scanner_ip, self.target_ip = f"{link_net}.1", f"{link_net}.2"
        # An address on the link the scanner's kernel does not own: masscan sends from it, so the kernel
        # never sees (and never resets) the SYN-ACKs masscan is waiting for.
        self.spare_ip = f"{link_net}.100"
        self.scanner = Netns("scan")
        try:
            self.target = Netns("tgt")
        except NetnsError:
            self.scanner.close()
            raise
        self.scanner_if, self.target_if = "veth-scan", "veth-tgt"
        try:
            ip_command("link", "add", self.scanner_if, "netns", self.scanner.name, "type", "veth", "peer", "name",
                       self.target_if, "netns", self.target.name)
            for ns, dev, ip in ((self.scanner, self.scanner_if, self.scanner_ip),
                                (self.target, self.target_if, self.target_ip)):
                ip_command("-n", ns.name, "addr", "add", f"{ip}/24", "dev", dev)
                ip_command("-n", ns.name, "link", "set", dev, "up")
            self.scanner_mac = self._mac(self.scanner, self.scanner_if)
            self.target_mac = self._mac(self.target, self.target_if)
            ip_command("-n", self.target.name, "neigh", "replace", self.spare_ip, "lladdr", self.scanner_mac,
                       "dev", self.target_if)
            ip_command("-n", self.scanner.name, "neigh", "replace", self.target_ip, "lladdr", self.target_mac,
                       "dev", self.scanner_if)
        except (NetnsError, subprocess.SubprocessError, OSError):
            self.close()
            raise

    @staticmethod
    def _mac(ns: Netns, dev: str) -> str:
        out = subprocess.run(["ip", "-n", ns.name, "-j", "link", "show", dev], capture_output=True, text=True,
                             timeout=10, check=True)
        return json.loads(out.stdout)[0]["address"]

    def serve_block(self, cidr: str) -> None:
        """Every address of `cidr` answers on the target side, reached from the scanner over the link."""
        self.target.add_local_route(cidr)
        ip_command("-n", self.scanner.name, "route", "add", cidr, "via", self.target_ip, "dev", self.scanner_if)

    def close(self) -> None:
        for ns in (getattr(self, "scanner", None), getattr(self, "target", None)):
            if ns is not None:
                ns.close()

    def __enter__(self) -> "VethLab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
