"""Impair a lab host's link with packet loss and delay: `python -m netaudit.lab.impair --delay-ms 200 --loss 10`.

The process runs inside a lab host's namespace and holds the impairment for as long as it lives; on
SIGTERM it takes it away again (and deleting the namespace takes away whatever a SIGKILL left).

Outgoing packets: `tc netem` when the kernel has it. Some kernels (this project's CI machines among them)
have no sch_netem, NFQUEUE or fq, so there the process is a delay line instead: packets the host sends
are routed into a TUN device, the process drops the given share and writes the rest back after the
delay, and the kernel forwards them out of the real link. Incoming packets lose the same share with
nftables' random numbers in both cases.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import ipaddress
import os
import random
import signal
import struct
import subprocess
import sys
from dataclasses import dataclass, field

TUN_NAME = "naimpair"
TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000
FORWARD_TABLE, SEND_TABLE = "78", "79"  # routes out of the real link; routes of locally sent packets
FROM_TUN_PREF, LOCAL_PREF = "100", "101"
NFT_TABLE = "netaudit_impair"


@dataclass
class Counters:
    delayed: int = 0
    dropped: int = 0
    errors: list[str] = field(default_factory=list)


def run(*argv: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, input=stdin)
    if check and proc.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc


def ingress_rules(loss: float) -> str:
    # numgen random mod 1000 < N drops N per mille of the packets arriving on this host.
    per_mille = round(loss * 10)
    return (f"table inet {NFT_TABLE} {{\n  chain input {{ type filter hook input priority 0; policy accept;\n"
            f"    iifname != \"lo\" numgen random mod 1000 < {per_mille} drop\n  }}\n}}\n")


def undo(dev: str) -> None:
    """Remove every piece of either kind of impairment; idempotent, so it also cleans after a SIGKILL."""
    for argv in (("tc", "qdisc", "del", "dev", dev, "root"), ("nft", "delete", "table", "inet", NFT_TABLE),
                 ("ip", "rule", "del", "pref", FROM_TUN_PREF), ("ip", "rule", "del", "pref", LOCAL_PREF),
                 ("ip", "route", "flush", "table", FORWARD_TABLE), ("ip", "route", "flush", "table", SEND_TABLE)):
        run(*argv, check=False)


def netem(dev: str, delay_ms: int, loss: float) -> str | None:
    """None when netem took the impairment, else why not (the kernel's message)."""
    proc = run("tc", "qdisc", "add", "dev", dev, "root", "netem", "loss", f"{loss:g}%", "delay", f"{delay_ms}ms",
               check=False)
    return None if proc.returncode == 0 else proc.stderr.strip()


def open_tun() -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", TUN_NAME.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def route_through_tun(dev: str) -> None:
    """Locally sent packets go into the TUN device; what comes back out of it leaves through `dev`."""
    address = run("ip", "-4", "-o", "addr", "show", "dev", dev).stdout.split()[3]
    source = str(ipaddress.ip_interface(address).ip)
    run("ip", "link", "set", TUN_NAME, "up")
    # The delayed packets re-enter with this host's own source address: forward them, do not call them martians.
    run("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
        f"net.ipv4.conf.{TUN_NAME}.rp_filter=0", f"net.ipv4.conf.{TUN_NAME}.accept_local=1")
    for route in run("ip", "-4", "route", "show", "table", "main").stdout.splitlines():
        run("ip", "route", "add", *route.split(), "table", FORWARD_TABLE)
    run("ip", "route", "add", "default", "dev", TUN_NAME, "src", source, "table", SEND_TABLE)
    run("ip", "rule", "add", "pref", FROM_TUN_PREF, "iif", TUN_NAME, "lookup", FORWARD_TABLE)
    # `iif lo` in a rule matches packets this host originates (ip-rule(8)).
    run("ip", "rule", "add", "pref", LOCAL_PREF, "iif", "lo", "lookup", SEND_TABLE)


async def delay_line(fd: int, delay_ms: int, loss: float, counters: Counters, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def send(packet: bytes) -> None:
        try:
            os.write(fd, packet)
        except OSError as exc:
            counters.errors.append(str(exc))

    def readable() -> None:
        while True:
            try:
                packet = os.read(fd, 65536)
            except BlockingIOError:
                return
            if random.random() * 100 < loss:
                counters.dropped += 1
            else:
                counters.delayed += 1
                loop.call_later(delay_ms / 1000, send, packet)

    loop.add_reader(fd, readable)
    try:
        await stop.wait()
    finally:
        loop.remove_reader(fd)


def out_of_range(delay_ms: int, loss: float) -> str | None:
    if 0 <= loss < 100 and 0 <= delay_ms <= 60_000:
        return None
    return "loss takes 0 to 99.9 (percent) and delay 0 to 60000 (ms)"


def named_namespace() -> str | None:
    """The `ip netns` name of the namespace this runs in; None in the machine's own (never impair that)."""
    try:
        here = os.stat("/proc/self/ns/net").st_ino
        return next((entry.name for entry in os.scandir("/run/netns") if entry.stat().st_ino == here), None)
    except OSError:
        return None


async def hold(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    undo(args.dev)
    fd = None
    counters = Counters()
    try:
        run("nft", "-f", "-", stdin=ingress_rules(args.loss))
        why_not = netem(args.dev, args.delay_ms, args.loss)
        if why_not is None:
            print(f"READY netem on {args.dev}: loss {args.loss:g}% delay {args.delay_ms} ms; ingress loss "
                  f"{args.loss:g}% (nftables)", flush=True)
            await stop.wait()
        else:
            fd = open_tun()
            route_through_tun(args.dev)
            print(f"READY delay line (tc netem unavailable: {why_not}): egress loss {args.loss:g}% delay "
                  f"{args.delay_ms} ms through {TUN_NAME}; ingress loss {args.loss:g}% (nftables)", flush=True)
            await delay_line(fd, args.delay_ms, args.loss, counters, stop)
    finally:
        undo(args.dev)
        if fd is not None:
            os.close(fd)
        print(f"impairment removed; delayed {counters.delayed} packets, dropped {counters.dropped}"
              + (f"; write errors: {counters.errors[:3]}" if counters.errors else ""), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", default="eth0", help="the host's link (default eth0)")
    parser.add_argument("--delay-ms", type=int, default=200)
    parser.add_argument("--loss", type=float, default=10.0, help="percent of packets lost each way")
    parser.add_argument("--undo", action="store_true", help="only remove what an earlier run left, then exit")
    args = parser.parse_args()
    if named_namespace() is None:
        sys.exit("impair: refusing to run outside a named network namespace; run it with ip netns exec")
    if args.undo:
        undo(args.dev)
        return
    if problem := out_of_range(args.delay_ms, args.loss):
        sys.exit(f"impair: {problem}")
    asyncio.run(hold(args))


if __name__ == "__main__":
    main()
