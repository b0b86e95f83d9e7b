"""Open ports from other scanners' output files: masscan (-oJ, -oL, -oX), zmap (CSV or saddr lines), nmap (-oX).

masscan and zmap sweep address space far faster than a connect scan; their open ports become netaudit
targets, so only those are fingerprinted. Formats from the tools' source (docs/wire-facts.md §8) and their
own output on this machine (masscan 1.3.2, zmap 2.1.1, nmap 7.93). Each file is read whole and judged whole: a file
cut short (a killed nmap leaves XML without `</nmaprun>`, a killed masscan -oL has no `# end`) is refused
with one line rather than scanned in part, since a partial list would look like a finished sweep.
"""

from __future__ import annotations

import csv
import ipaddress
import json
from dataclasses import dataclass

from netaudit.core.errors import UsageError
from netaudit.targets.nmap_xml import NmapXmlError, read_nmap_xml

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_FILE = 1 << 30  # a /8 sweep with every address open on one port is about 400 MB of -oJ


@dataclass(frozen=True)
class Discovered:
    """What a discovery file says: open TCP (address, port) pairs, or addresses only (zmap's default
    output, one port per run, which the scan's --ports then supplies)."""

    tool: str
    format: str
    open_ports: tuple[tuple[IPAddress, int], ...] = ()
    addresses: tuple[IPAddress, ...] = ()


class BadFile(UsageError):
    pass


def _read(path: str, tool: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read(MAX_FILE + 1)
    except OSError as exc:
        raise BadFile(f"cannot read {tool} output {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise BadFile(f"{tool} output {path} is not text (expected {FORMATS[tool]})") from None
    if len(text) > MAX_FILE:
        raise BadFile(f"{tool} output {path} is larger than {MAX_FILE >> 20} MB; split the sweep")
    if not text.strip():
        raise BadFile(f"{tool} output {path} is empty (expected {FORMATS[tool]})")
    return text


FORMATS = {"masscan": "masscan -oJ, -oL or -oX output", "zmap": "zmap CSV with saddr (and sport), or one saddr a line",
           "nmap": "nmap -oX output"}


def _address(text: object, where: str) -> IPAddress:
    try:
        return ipaddress.ip_address(str(text).strip())
    except ValueError:
        raise BadFile(f"{where}: {str(text)[:60]!r} is not an IP address") from None


def _port(text: object, where: str) -> int:
    try:
        port = int(str(text).strip())
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise BadFile(f"{where}: {str(text)[:60]!r} is not a port number")
    return port


def _xml_open_ports(text: str, path: str, tool: str, scanner: str) -> Discovered:
    """nmap -oX, and masscan's nmap-like -oX: every <port protocol="tcp"> whose state is exactly "open"."""
    try:
        run = read_nmap_xml(text)
    except NmapXmlError as exc:
        hint = " (no </nmaprun>: was the scan killed before it finished?)" if "</nmaprun>" not in text else ""
        raise BadFile(f"{tool} XML {path} is truncated or malformed{hint}: {exc}") from None
    if run.root != "nmaprun":
        raise BadFile(f"{path} is XML but not {tool} -oX output (root element <{run.root}>, expected <nmaprun>)")
    if run.scanner != scanner:
        hint = f"; use {run.scanner}:{path}" if run.scanner in FORMATS else ""
        raise BadFile(f"{path} is -oX output of {run.scanner or 'an unknown scanner'}, not {scanner}{hint}")
    pairs = []
    for number, host in enumerate(run.hosts, 1):
        where = f"{tool} XML {path}, host {number}"
        if host.address is None:
            raise BadFile(f"{where} has no IPv4 or IPv6 <address>")
        address = _address(host.address, where)
        for port in host.ports:
            if port.protocol == "tcp" and port.state == "open":
                pairs.append((address, _port(port.portid, where)))
    return Discovered(tool, "-oX", tuple(pairs))


def _masscan_json(text: str, path: str) -> Discovered:
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadFile(f"masscan JSON {path} is truncated or malformed (a finished -oJ ends with ']'): {exc}") from None
    if not isinstance(records, list):
        raise BadFile(f"masscan JSON {path} is not a list of records")
    pairs = []
    for number, record in enumerate(records, 1):
        where = f"masscan JSON {path}, record {number}"
        if not isinstance(record, dict) or not isinstance(record.get("ports"), list):
            raise BadFile(f"{where} has no \"ports\" list")
        address = _address(record.get("ip"), where)
        for port in record["ports"]:
            if not isinstance(port, dict):
                raise BadFile(f"{where}: a port entry is not an object")
            if port.get("proto") == "tcp" and port.get("status") == "open":
                pairs.append((address, _port(port.get("port"), where)))
    return Discovered("masscan", "-oJ", tuple(pairs))


def _masscan_list(text: str, path: str) -> Discovered:
    """`open tcp 8500 10.0.0.5 1700000000` lines between `#masscan` and `# end`; closed and banner lines
    (`--show closed`, `--banners`) are skipped."""
    lines = text.splitlines()
    if lines[0].strip() != "#masscan":
        raise BadFile(f"{path} is not masscan output (expected {FORMATS['masscan']})")
    if lines[-1].strip() != "# end":
        raise BadFile(f"masscan list {path} is truncated (a finished -oL ends with '# end': was masscan killed?)")
    pairs = []
    for number, line in enumerate(lines[1:-1], 2):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        where = f"masscan list {path}, line {number}"
        if fields[0] not in ("open", "closed", "banner") or len(fields) < 4:
            raise BadFile(f"{where} is not a masscan -oL record: {line[:80]!r}")
        if fields[0] == "open" and fields[1] == "tcp":
            pairs.append((_address(fields[3], where), _port(fields[2], where)))
    return Discovered("masscan", "-oL", tuple(pairs))


def read_masscan(path: str) -> Discovered:
    text = _read(path, "masscan")
    first = text.lstrip()[0]
    if first in "[{":
        return _masscan_json(text, path)
    if first == "<":
        return _xml_open_ports(text, path, "masscan", "masscan")
    return _masscan_list(text, path)


def read_nmap(path: str) -> Discovered:
    text = _read(path, "nmap")
    if not text.lstrip().startswith("<"):
        raise BadFile(f"{path} is not nmap -oX output (netaudit reads nmap's XML; rerun nmap with -oX FILE)")
    return _xml_open_ports(text, path, "nmap", "nmap")


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip())
    except ValueError:
        return False
    return True


def read_zmap(path: str) -> Discovered:
    """zmap's default output (one responding saddr a line, for the single port of the run), or `-O csv`
    with a header naming saddr and optionally sport; with `success` or `classification` columns, only
    successful SYN-ACK rows count (zmap 2.1.1 writes RST rows too when those fields are asked for)."""
    text = _read(path, "zmap")
    lines = [line for line in text.splitlines() if line.strip()]
    if _is_address(lines[0]):
        return Discovered("zmap", "saddr lines",
                          addresses=tuple(_address(line, f"zmap output {path}, line {n}")
                                          for n, line in enumerate(lines, 1)))
    rows = csv.reader(lines)
    header = [name.strip() for name in next(rows)]
    if "saddr" not in header:
        raise BadFile(f"{path} is not zmap output: the first line is neither an address nor a CSV header naming "
                      f"saddr (zmap -O csv -f saddr,sport)")
    pairs, addresses = [], []
    for number, row in enumerate(rows, 2):
        where = f"zmap CSV {path}, line {number}"
        if len(row) != len(header):
            raise BadFile(f"{where} has {len(row)} fields, the header {len(header)} (a truncated file?)")
        record = dict(zip(header, (value.strip() for value in row)))
        if record.get("success", "1") not in ("1", "true") or record.get("classification", "synack") != "synack":
            continue
        address = _address(record["saddr"], where)
        if "sport" in record:
            pairs.append((address, _port(record["sport"], where)))
        else:
            addresses.append(address)
    return Discovered("zmap", "CSV", tuple(pairs), tuple(addresses))


READERS = {"masscan": read_masscan, "zmap": read_zmap, "nmap": read_nmap}
