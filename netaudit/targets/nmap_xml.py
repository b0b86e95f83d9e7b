"""The one reader of nmap's XML (-oX, and masscan's nmap-like -oX): the nmap engine reads what the nmap
binary printed (netaudit/discovery/nmap.py), and `scan nmap:FILE` / `masscan:FILE` read a user's file
(netaudit/targets/scanfiles.py). It sits in targets, below discovery, so both can use it.

Read from the XML directly: python-nmap's dict drops `reason_ttl`, `reason_ip`, the service `tunnel` and
`method` (python-nmap 0.7.1's nmap/nmap.py, https://pypi.org/project/python-nmap/0.7.1/;
docs/wire-facts.md §7). Values stay as nmap wrote them (a port id is text here); each caller judges
them, since a user's file and nmap's own output deserve different messages. nmap's -sV fields carry
what servers sent.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass


class NmapXmlError(ValueError):
    """The text is not well-formed XML; the message is the XML parser's (line and column)."""


@dataclass(frozen=True)
class XmlPort:
    protocol: str | None
    portid: str | None
    has_state: bool  # a <port> without <state> is not nmap's
    state: str | None  # nmap's own: open, closed, filtered, open|filtered, unfiltered, …
    reason: str  # syn-ack, reset, conn-refused, no-response, admin-prohibited, …
    ttl: int | None
    responder: str | None  # reason_ip: the ICMP error came from this address, not the target
    service: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class XmlHost:
    address: str | None  # its IPv4 or IPv6 <address>, if it has one
    ports: tuple[XmlPort, ...]
    # (state, reason) of the ports nmap folded into <extraports>, when it folded any.
    extraports: tuple[str | None, str] | None


@dataclass(frozen=True)
class NmapXml:
    root: str  # the root element's tag: nmaprun for nmap's and masscan's XML
    scanner: str | None  # nmaprun's scanner attribute: nmap or masscan
    hosts: tuple[XmlHost, ...]


def read_nmap_xml(text: str | bytes) -> NmapXml:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise NmapXmlError(str(exc)) from None
    return NmapXml(root.tag, root.get("scanner"), tuple(_host(host) for host in root.iter("host")))


def _host(host: ET.Element) -> XmlHost:
    address = next((a.get("addr") for a in host.iter("address") if a.get("addrtype") in ("ipv4", "ipv6")), None)
    folded = host.find("ports/extraports")
    extraports = None
    if folded is not None:
        reasons = [r.get("reason", "") for r in folded.iter("extrareasons")]
        extraports = (folded.get("state"), reasons[0] if len(reasons) == 1 else "among extraports")
    return XmlHost(address, tuple(_port(port) for port in host.iter("port")), extraports)


def _port(port: ET.Element) -> XmlPort:
    state = port.find("state")
    service = port.find("service")
    found = state if state is not None else ET.Element("state")
    ttl = found.get("reason_ttl")
    return XmlPort(port.get("protocol"), port.get("portid"), state is not None, found.get("state"),
                   found.get("reason", ""), int(ttl) if ttl and ttl.isdigit() else None, found.get("reason_ip"),
                   tuple(service.attrib.items()) if service is not None else ())
