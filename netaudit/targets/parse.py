"""Turn what the user typed into address blocks and ports, and refuse anything outside the scope.

Blocks stay as networks rather than expanded address lists, so a /16 sweep costs no memory up front
and scope checks are set arithmetic, done before a single packet leaves.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from functools import cache, cached_property
from typing import TYPE_CHECKING, Iterable, Iterator, TextIO

from netaudit.core.errors import UsageError
from netaudit.core.files import read_json
from netaudit.targets.scanfiles import READERS

if TYPE_CHECKING:
    from netaudit.targets.k8s_snapshot import Snapshot

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_UNSCOPED_ADDRESSES = 1 << 16
RESOLVE_TIMEOUT = 5.0


@dataclass(frozen=True)
class TargetBlock:
    """A set of addresses from one TARGET argument, with fixed ports when the target named them."""

    spec: str
    networks: tuple[IPNetwork, ...]
    ports: tuple[int, ...] | None = None
    name: str | None = None
    source: str | None = None  # the discovery file and its format, for blocks read from another scanner's output
    identity: str | None = None  # JSON: who this address is in a cluster (k8s:), written as details.k8s

    def addresses(self) -> Iterator[IPAddress]:
        """Every address, network and broadcast included, as nmap does: a /24 can hide a server on .0."""
        for net in self.networks:
            yield from net

    def address_count(self) -> int:
        return sum(n.num_addresses for n in self.networks)

    @property
    def listed(self) -> bool:
        """Every port of this target is listed in the result, whatever its state: the user named the port
        or the one host. A swept range lists its open ports; the rest go into the result's port_states."""
        return self.ports is not None or self.address_count() == 1


def _in_slice(key: str, part: tuple[int, int]) -> bool:
    """Whether `key` hashes into slice K of N: the same key falls in the same slice on every machine and
    every run."""
    index, count = part
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count == index - 1


def in_shard(host: str, port: int, shard: tuple[int, int]) -> bool:
    """Whether (host, port) belongs to shard K of N. A hash of the pair itself, as zmap's --shards spreads
    its permutation: every shard gets an even mix of addresses and ports whatever the target order, so no
    shard holds one busy subnet."""
    return _in_slice(f"{host}|{port}", shard)


def in_worker(host: str, worker: tuple[int, int]) -> bool:
    """Whether host belongs to worker K of N (scan --workers). A hash of the address alone: every port of
    one host goes to one worker, which compares the host's SYN-ACKs and tries model names one port leaked
    on its other ports, as an unsplit scan does."""
    return _in_slice(host, worker)


def parse_shard(text: str) -> tuple[int, int]:
    """`K/N` with 1 <= K <= N."""
    k, sep, n = text.partition("/")
    if not sep or not k.strip().isdigit() or not n.strip().isdigit():
        raise UsageError(f"bad --shard {text!r}: expected K/N, for example 2/8 (the 2nd of 8 shards)")
    index, count = int(k), int(n)
    if not 1 <= index <= count:
        raise UsageError(f"bad --shard {text!r}: K must be between 1 and N, and N at least 1")
    return index, count


@dataclass(frozen=True)
class TargetSet:
    blocks: tuple[TargetBlock, ...]
    ports: tuple[int, ...]
    shard: tuple[int, int] | None = None  # (K, N): only the K-th of N slices of the target x port space
    worker: tuple[int, int] | None = None  # (K, N): only the hosts of local worker process K of N

    def probes(self) -> Iterator[tuple[str, int, TargetBlock]]:
        """Every (address, port) pair to try (of this shard and worker), lazily, in target order."""
        for block in self.blocks:
            ports = block.ports or self.ports
            for addr in block.addresses():
                host = str(addr)
                if self.worker is not None and not in_worker(host, self.worker):
                    continue
                for port in ports:
                    if self.shard is None or in_shard(host, port, self.shard):
                        yield host, port, block

    def probe_count(self) -> int:
        if self.shard is not None or self.worker is not None:
            return self._sliced_count
        return sum(b.address_count() * len(b.ports or self.ports) for b in self.blocks)

    @cached_property
    def _sliced_count(self) -> int:
        return sum(1 for _ in self.probes())

    def address_count(self) -> int:
        return sum(b.address_count() for b in self.blocks)

    def has_ipv6(self) -> bool:
        return any(net.version == 6 for block in self.blocks for net in block.networks)

    def sources(self) -> list[dict]:
        """Where imported targets came from: one entry per discovery file, with what it contributed."""
        out: dict[str, dict] = {}
        for block in self.blocks:
            if block.source is not None:
                entry = out.setdefault(block.spec, {"target": block.spec, "format": block.source, "hosts": 0,
                                                    "open_ports": 0})
                entry["hosts"] += block.address_count()
                entry["open_ports"] += block.address_count() * len(block.ports or self.ports)
        return list(out.values())


@cache
def named_port_sets() -> dict[str, tuple[int, ...]]:
    """`tf`: the usual ports of every kind the registry declares sensitive (TF servers, TF Serving,
    TensorBoard, the inference servers that serve TF models)."""
    from netaudit.core import registry

    return {"tf": tuple(sorted({p for name in registry.sensitive_kinds() for p in registry.kind(name).ports}))}


def _port(text: str, spec: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"bad port {text!r} in {spec!r}: ports are numbers 1-65535 or a named set "
                         f"({', '.join(named_port_sets())})") from None
    if not 1 <= value <= 65535:
        raise UsageError(f"port {value} in {spec!r} is out of range 1-65535")
    return value


def parse_ports(spec: str) -> tuple[int, ...]:
    """`2222,8500-8501,tf` -> sorted unique ports."""
    ports: set[int] = set()
    sets = named_port_sets()
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            raise UsageError(f"empty entry in port list {spec!r}")
        if part in sets:
            ports.update(sets[part])
        elif "-" in part:
            lo, _, hi = part.partition("-")
            first, last = _port(lo, spec), _port(hi, spec)
            if first > last:
                raise UsageError(f"port range {part!r} runs backwards")
            ports.update(range(first, last + 1))
        else:
            ports.add(_port(part, spec))
    return tuple(sorted(ports))


def parse_scope(spec: str) -> tuple[IPNetwork, ...]:
    nets = []
    for part in (p.strip() for p in spec.split(",")):
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise UsageError(f"bad --scope entry {part!r}: expected a CIDR such as 198.18.0.0/15") from None
    if not nets:
        raise UsageError("--scope is empty")
    return tuple(nets)


def _resolve(host: str, timeout: float = RESOLVE_TIMEOUT) -> IPAddress:
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(socket.getaddrinfo, host, None, 0, socket.SOCK_STREAM)
        try:
            infos = future.result(timeout=timeout)
        except FutureTimeout:
            raise UsageError(f"cannot resolve {host!r}: no answer within {timeout:g}s") from None
        except (socket.gaierror, UnicodeError) as exc:
            raise UsageError(f"cannot resolve {host!r}: {exc}") from None
    addrs = [ipaddress.ip_address(info[4][0]) for info in infos]
    return next((a for a in addrs if a.version == 4), addrs[0])


def _host(text: str, spec: str) -> tuple[IPAddress, str | None]:
    try:
        return ipaddress.ip_address(text), None
    except ValueError:
        pass
    if not text or any(c in text for c in "/ ,") or text.replace(".", "").isdigit():
        raise UsageError(f"bad target {spec!r}: not an IP address, hostname, CIDR or range")
    return _resolve(text), text


def _split_host_port(text: str) -> tuple[str, str] | None:
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise UsageError(f"bad target {text!r}: expected [IPv6]:PORT")
        return host, rest[1:]
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return None


def _range(text: str) -> tuple[IPNetwork, ...]:
    first_text, _, last_text = text.partition("-")
    try:
        first = ipaddress.ip_address(first_text)
    except ValueError:
        raise UsageError(f"bad range {text!r}: {first_text!r} is not an IP address") from None
    try:
        last = ipaddress.ip_address(last_text)
    except ValueError:
        if first.version != 4 or not last_text.isdigit() or int(last_text) > 255:
            raise UsageError(f"bad range {text!r}: expected A.B.C.D-E or A.B.C.D-A.B.C.E") from None
        last = ipaddress.ip_address(int(first) - (int(first) & 0xFF) + int(last_text))
    if last.version != first.version or last < first:
        raise UsageError(f"bad range {text!r}: the end comes before the start")
    return tuple(ipaddress.summarize_address_range(first, last))


def _tf_config_blocks(path: str) -> list[TargetBlock]:
    """Every task address in a TF_CONFIG (with "cluster") or a bare ClusterSpec dict."""
    data = read_json(path, "TF_CONFIG")
    cluster = data.get("cluster", data) if isinstance(data, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise UsageError(f"TF_CONFIG {path!r} has no cluster spec (expected {{\"cluster\": {{job: [host:port, …]}}}})")
    blocks = []
    for job, tasks in cluster.items():
        if isinstance(tasks, list):
            items = list(enumerate(tasks))
        elif isinstance(tasks, dict):
            items = list(tasks.items())
        else:
            raise UsageError(f"TF_CONFIG {path!r}: job {job!r} is neither a list nor a dict of addresses")
        for index, address in items:
            hp = _split_host_port(address) if isinstance(address, str) else None
            if hp is None:
                raise UsageError(f"TF_CONFIG {path!r}: task {job}:{index} address {address!r} is not host:port")
            addr, _ = _host(hp[0], address)
            blocks.append(TargetBlock(address, (ipaddress.ip_network(addr),), (_port(hp[1], address),),
                                      f"{job}:{index}"))
    return blocks


def _discovery_blocks(tool: str, path: str) -> list[TargetBlock]:
    """One block per set of open ports, holding every host that had exactly that set: a sweep's thousands
    of hosts with the same open port stay one block, and only the ports each host had open are probed."""
    spec = f"{tool}:{path}"
    found = READERS[tool](path)
    if not found.open_ports and not found.addresses:
        raise UsageError(f"{spec} lists no open TCP port: nothing to fingerprint")
    by_host: dict[IPAddress, set[int]] = {}
    for address, port in found.open_ports:
        by_host.setdefault(address, set()).add(port)
    groups: dict[tuple[int, ...] | None, list[IPAddress]] = {}
    for address, ports in by_host.items():
        groups.setdefault(tuple(sorted(ports)), []).append(address)
    if found.addresses:
        groups.setdefault(None, []).extend(a for a in dict.fromkeys(found.addresses) if a not in by_host)
    blocks = []
    for ports, addresses in groups.items():
        networks = [net for version in (4, 6) for net in ipaddress.collapse_addresses(
            ipaddress.ip_network(a) for a in addresses if a.version == version)]
        if networks:
            blocks.append(TargetBlock(spec, tuple(networks), ports, spec, f"{found.tool} {found.format}"))
    return blocks


def _k8s_blocks(text: str) -> list[TargetBlock]:
    from netaudit.targets.k8s import read_snapshot

    return k8s_blocks(read_snapshot(text), text, "k8s snapshot" if text != "k8s:" else "k8s API")


def k8s_blocks(snapshot: "Snapshot", text: str, source: str) -> list[TargetBlock]:
    """Pod IPs and ports of the TF workloads in a snapshot, then the Service addresses in front of them."""
    from netaudit.targets.k8s import service_addresses, workloads

    found = workloads(snapshot)
    blocks = [TargetBlock(f"k8s:{w.pod.key}", (ipaddress.ip_network(ip),), w.ports, w.pod.key, source,
                          json.dumps(w.identity, sort_keys=True))
              for w in found for ip in w.pod.ips]
    blocks += [TargetBlock(f"k8s:{who['namespace']}/{who['service']}", (ipaddress.ip_network(host),), (port,),
                           f"{who['namespace']}/{who['service']}", source, json.dumps(who, sort_keys=True))
               for host, port, who in service_addresses(snapshot, found)]
    if not blocks:
        raise UsageError(f"{text if text != 'k8s:' else 'k8s: (the live API)'}: no pod in the snapshot runs TF code or serves TF models (and none declares a "
                         "port of the tf set)")
    return blocks


def parse_target(text: str) -> list[TargetBlock]:
    text = text.strip()
    if text.startswith("tf-config:"):
        return _tf_config_blocks(text[len("tf-config:"):])
    if text.startswith("k8s:"):
        return _k8s_blocks(text)
    tool, sep, path = text.partition(":")
    if sep and tool in READERS and not path.isdigit():  # "nmap:2222" is still a host named nmap
        if not path:
            raise UsageError(f"{text!r} names no file: {tool}:FILE")
        return _discovery_blocks(tool, path)
    if "/" in text:
        try:
            return [TargetBlock(text, (ipaddress.ip_network(text, strict=False),))]
        except ValueError as exc:
            raise UsageError(f"bad CIDR {text!r}: {exc}") from None
    hp = _split_host_port(text)
    if hp is not None:
        addr, name = _host(hp[0], text)
        return [TargetBlock(text, (ipaddress.ip_network(addr),), (_port(hp[1], text),), name)]
    if "-" in text and text.split("-", 1)[0].replace(".", "").isdigit():
        return [TargetBlock(text, _range(text))]
    addr, name = _host(text, text)
    return [TargetBlock(text, (ipaddress.ip_network(addr),), None, name)]


def read_target_lines(stream: TextIO) -> list[str]:
    return [line.strip() for line in stream if line.strip() and not line.lstrip().startswith("#")]


def build_targets(args: Iterable[str], ports: str = "tf", scope: str | None = None,
                  stdin: TextIO | None = None, shard: str | None = None) -> TargetSet:
    """Parse and validate everything; raises UsageError before anything is sent."""
    texts: list[str] = []
    for arg in args:
        texts.extend(read_target_lines(stdin or sys.stdin) if arg == "-" else [arg])
    if not texts:
        raise UsageError("no targets given (pass IPs, CIDRs, ranges, host:port, tf-config:FILE, masscan:FILE, "
                         "zmap:FILE, nmap:FILE, or - for stdin)")
    default_ports = parse_ports(ports)
    blocks = distinct_blocks([block for text in texts for block in parse_target(text)], default_ports)
    targets = TargetSet(tuple(blocks), default_ports, parse_shard(shard) if shard else None)
    if scope is None:
        if targets.address_count() > MAX_UNSCOPED_ADDRESSES:
            raise UsageError(f"{targets.address_count()} addresses is more than a /16; "
                             "pass --scope CIDR to confirm the range you are allowed to scan")
    else:
        check_scope(targets, parse_scope(scope))
    return targets


def _uncovered(networks: Iterable[IPNetwork], covered: list[IPNetwork]) -> tuple[IPNetwork, ...]:
    """`networks` less every address already in `covered`."""
    left = list(networks)
    for done in covered:
        next_left: list[IPNetwork] = []
        for net in left:
            if net.version != done.version or not net.overlaps(done):
                next_left.append(net)
            elif not net.subnet_of(done):  # done lies inside net: keep the rest of net
                next_left.extend(net.address_exclude(done))
        left = next_left
    return tuple(ipaddress.collapse_addresses(left)) if left else ()


def distinct_blocks(blocks: list[TargetBlock], default_ports: tuple[int, ...]) -> list[TargetBlock]:
    """Each (address, port) once, in the order given: a repeated target, a line given twice on stdin and
    overlapping CIDRs are probed and counted once. A named host:port is dropped when the same single host
    stays a target of its own with that port among the default ports (it is listed either way); one inside a
    swept range is kept, and probed by the sweep as well, so that its state is listed whatever it is."""
    swept: list[IPNetwork] = []
    reduced: dict[int, TargetBlock] = {}  # id of a default-port block -> what is left of it
    for block in blocks:
        if block.ports is None:
            networks = _uncovered(block.networks, swept)
            if networks:
                swept.extend(networks)
                reduced[id(block)] = replace(block, networks=networks)
    # Single hosts that stay targets of their own (every port listed): a named port of one is probed there.
    single_hosts = {b.networks[0].network_address for b in reduced.values() if b.address_count() == 1}
    named: set[tuple[IPAddress, int]] = set()
    out = []
    for block in blocks:
        if block.ports is None:
            if id(block) in reduced:
                out.append(reduced[id(block)])
        elif block.address_count() == 1:
            address = block.networks[0].network_address
            ports = tuple(p for p in dict.fromkeys(block.ports) if (address, p) not in named
                          and not (address in single_hosts and p in default_ports))
            named.update((address, p) for p in ports)
            if ports:
                out.append(replace(block, ports=ports))
        else:
            out.append(block)
    return out


def check_scope(targets: TargetSet, scope: tuple[IPNetwork, ...]) -> None:
    allowed = {4: list(ipaddress.collapse_addresses(n for n in scope if n.version == 4)),
               6: list(ipaddress.collapse_addresses(n for n in scope if n.version == 6))}
    for block in targets.blocks:
        for net in block.networks:
            if not any(net.subnet_of(s) for s in allowed[net.version]):
                raise UsageError(f"target {block.spec!r} ({net}) is outside --scope "
                                 f"{','.join(str(s) for s in scope)}; nothing was scanned")
