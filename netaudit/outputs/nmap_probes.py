"""nmap service probes generated from netaudit's own signatures, for `nmap -sV --versiondb FILE`.

nmap's stock probes never send an HTTP/2 client preface, so they cannot make a gRPC server answer, and
a TF port ends up named after whatever the port number suggests (docs/wire-facts.md §7). These probes
send the same requests netaudit's own probes send and match the same proofs. Each family module declares
its one-request signatures in `NMAP` (probes/base.py: the TF GetStatus device names, TF Serving's NOT_FOUND
and REST error for a random model, KServe's V1 error, V2 server metadata over REST and gRPC, TensorBoard's
/data/environment), built from the constants its probe uses; this module collects them for every family
the registry lists and only translates them into nmap's syntax. A new family's module brings its probes
into the file without a change here, and the file and the scanner cannot drift apart.

nmap's probe-file rules shape the output: probe strings know only the escapes `\\ \\0 \\n \\r \\t \\xHH`
and the delimiter has to be written `\\x7c`; a line is at most 8192 bytes; the first probe after NULL
reuses the NULL connection and keeps its bytes in the buffer, so no pattern is anchored; a pattern that
can match the empty string is rejected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from netaudit.core import registry
from netaudit.core.errors import UsageError
from netaudit.fingerprint import loader
from netaudit.transport.h2wire import (DATA, END_HEADERS, END_STREAM, EMPTY_SETTINGS, FRAME_HEADER, GRPC_CODES,
                                       HEADERS, INDEXED_HTTP, INDEXED_POST, PREFACE, STATIC_NAMES, WITHOUT_INDEXING,
                                       frame, frame_header, grpc_message, literal)
from netaudit.probes.base import NAME_SLOT, GrpcSignature, HttpSignature, Naming
from netaudit.probes.common import random_model_name
from netaudit.transport.safety import UnsafeCall, check_call, check_http

STREAM_ID = 1
# Fully indexed `:method: POST` and `:scheme: http`, static-table names where there are some (h2wire), and
# everything else a literal without indexing and without Huffman coding, so the bytes on the wire are
# readable and can be decoded back for the safety check.
AUTHORITY = "netaudit.invalid"
GRPC_HEADERS = (("content-type", "application/grpc"), ("te", "trailers"))

MAX_LINE = 8192  # nmap reads the file with an 8192-byte line buffer (utils.cc)
RARITY = 5  # at or below nmap's default intensity 7, so the probes run on any port, not only the listed ones
TOTAL_WAIT_MS = 5000  # HTTP: the probes ask for Connection: close, so nmap stops at EOF well before this
# gRPC: the server keeps the connection open after its reply (a client GOAWAY does not close it either,
# measured on grpcio 1.85), and a softmatch does not stop nmap's read, so every gRPC probe that is not the
# port's family waits this long. Each reply is one round trip (milliseconds on the lab).
GRPC_WAIT_MS = 2000
STOCK_NULL_PROBE = "Probe TCP NULL q||"
PROBE_PREFIX = "Netaudit"
PRINTABLE = frozenset(range(0x20, 0x7F)) - {ord("\\"), ord("|")}


class H2DecodeError(ValueError):
    """The bytes are not the HTTP/2 request shape this module builds."""


# ---- HTTP/2 and HPACK, the small subset the probes need (netaudit/transport/h2wire.py) -----------------

def hpack_literal(name: str, value: str) -> bytes:
    """RFC 7541 §6.2.2 literal without indexing, the name from the static table where it is there."""
    return literal(name.encode("ascii"), value.encode("ascii"), WITHOUT_INDEXING, STATIC_NAMES.get(name, 0))


def grpc_request(method: str, message: bytes, authority: str = AUTHORITY) -> bytes:
    """One unary gRPC call as a client sends it on a fresh connection: the preface, an empty SETTINGS
    frame, HEADERS (END_HEADERS) and one DATA frame with the 5-byte gRPC prefix and END_STREAM. The
    server's own SETTINGS need no ACK before it answers."""
    block = bytes([INDEXED_POST, INDEXED_HTTP]) + hpack_literal(":path", method) + \
        hpack_literal(":authority", authority) + b"".join(hpack_literal(k, v) for k, v in GRPC_HEADERS)
    return (PREFACE + EMPTY_SETTINGS + frame(HEADERS, END_HEADERS, STREAM_ID, block)
            + frame(DATA, END_STREAM, STREAM_ID, grpc_message(message)))


def _hpack_int_at(data: bytes, pos: int, prefix_bits: int) -> tuple[int, int]:
    limit = (1 << prefix_bits) - 1
    value = data[pos] & limit
    pos += 1
    if value < limit:
        return value, pos
    shift = 0
    while True:
        if pos >= len(data):
            raise H2DecodeError("truncated HPACK integer")
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _hpack_string_at(data: bytes, pos: int) -> tuple[str, int]:
    if pos >= len(data):
        raise H2DecodeError("truncated HPACK string")
    if data[pos] & 0x80:
        raise H2DecodeError("Huffman-coded string")
    length, pos = _hpack_int_at(data, pos, 7)
    if pos + length > len(data):
        raise H2DecodeError("truncated HPACK string")
    return data[pos:pos + length].decode("ascii"), pos + length


def decode_headers(block: bytes) -> list[tuple[str, str]]:
    """The header list of a block written by this module (indexed POST/http, literals without indexing)."""
    names = {index: name for name, index in STATIC_NAMES.items()}
    indexed = {INDEXED_POST: (":method", "POST"), INDEXED_HTTP: (":scheme", "http")}
    out, pos = [], 0
    while pos < len(block):
        byte = block[pos]
        if byte in indexed:
            out.append(indexed[byte])
            pos += 1
            continue
        if byte & 0xF0:
            raise H2DecodeError(f"HPACK representation 0x{byte:02x} is not one this module writes")
        index, pos = _hpack_int_at(block, pos, 4)
        if index:
            if index not in names:
                raise H2DecodeError(f"static table index {index} is not one this module writes")
            name = names[index]
        else:
            name, pos = _hpack_string_at(block, pos)
        value, pos = _hpack_string_at(block, pos)
        out.append((name, value))
    return out


def decode_grpc_request(data: bytes) -> tuple[str, bytes]:
    """(:path, gRPC message) of a request built by grpc_request: what the server would dispatch."""
    if not data.startswith(PREFACE):
        raise H2DecodeError("no HTTP/2 client preface")
    pos, path, message, ended = len(PREFACE), None, None, False
    while pos < len(data):
        if pos + FRAME_HEADER > len(data):
            raise H2DecodeError("truncated frame header")
        length, kind, flags, _ = frame_header(data, pos)
        payload = data[pos + FRAME_HEADER:pos + FRAME_HEADER + length]
        if len(payload) != length:
            raise H2DecodeError("truncated frame")
        pos += FRAME_HEADER + length
        if kind == HEADERS:
            path = dict(decode_headers(payload)).get(":path")
        elif kind == DATA:
            if len(payload) < 5 or payload[0] != 0 or int.from_bytes(payload[1:5], "big") != len(payload) - 5:
                raise H2DecodeError("DATA is not one uncompressed gRPC message")
            message, ended = payload[5:], bool(flags & END_STREAM)
    if path is None or message is None or not ended:
        raise H2DecodeError("no complete request (HEADERS with :path, DATA with END_STREAM)")
    return path, message


def http_get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {AUTHORITY}\r\nUser-Agent: netaudit\r\nConnection: close\r\n\r\n".encode()


def decode_http_request(data: bytes) -> tuple[str, str, bytes]:
    """(method, path, body) of an HTTP/1.1 request: what the server would act on."""
    head, sep, body = data.partition(b"\r\n\r\n")
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    if not sep or len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise H2DecodeError("not one HTTP/1.1 request")
    return parts[0].decode("ascii"), parts[1].decode("ascii"), body


# ---- the probes, from the family modules' declarations ---------------------------------------------------

@dataclass(frozen=True)
class Match:
    service: str
    pattern: str  # PCRE, never anchored
    product: str | None = None
    version: str | None = None
    info: str | None = None
    cpe: str | None = None
    flags: str = "s"
    soft: bool = False  # a softmatch: nmap goes on, but only with probes that can match this service


@dataclass(frozen=True)
class NmapProbe:
    name: str
    payload: bytes
    matches: tuple[Match, ...]
    about: str
    ports: tuple[int, ...] = ()
    wait_ms: int = TOTAL_WAIT_MS


def _pcre_bytes(data: bytes) -> str:
    """A literal for a PCRE pattern: printable ASCII escaped as a regex, the rest as \\xHH."""
    return "".join(re.escape(chr(b)) if 0x20 <= b < 0x7F else f"\\x{b:02x}" for b in data)


# A gRPC reply's trailers carry grpc-status as a literal (non-Huffman from C-core, measured; docs/wire-facts.md §7).
# Tried after the family matches, and the trailers always come after the DATA frame, so a family's reply is
# never cut short by it. Every gRPC probe but the last only softmatches, so a port still gets the next
# family's probe; the last one names any other gRPC server.
GRPC_SOFT = Match("grpc", r"grpc-status", soft=True)
GRPC_ANY = Match("grpc", r"grpc-status", "gRPC")
# Where a unary reply's message starts: a DATA frame on stream 1 (type 0, no flags or END_STREAM), then the
# gRPC prefix (not compressed, a length below 64 KiB).
GRPC_MESSAGE_START = r"\x00[\x00\x01]\x00\x00\x00\x01\x00\x00\x00[\s\S]{2}"
# An HTTP/1.x reply's status line, as far as the code.
HTTP_STATUS = r"HTTP/1\.[01] {status} [^\r\n]*\r\n"
# A body sent chunked starts with its first chunk's size.
CHUNK_SIZE = r"(?:[0-9a-fA-F]{1,8}\r\n)?"
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def status_literal(code: str) -> str:
    """`grpc-status: N` as HPACK writes it when the name is a literal: the name, a length byte, the digits."""
    digits = str(GRPC_CODES.index(code)).encode()
    return _pcre_bytes(b"grpc-status" + bytes([len(digits)]) + digits)


def _header(name: str, value: str | None) -> str:
    """A lookahead over the header block: this header with exactly this value, or (None) no such header."""
    name_re = f"(?i:{re.escape(name)})"
    if value is None:
        return rf"(?!(?:[^\r\n]+\r\n)*?{name_re}:)"
    return rf"(?=(?:[^\r\n]+\r\n)*?{name_re}: *{re.escape(value)}\r\n)"


def _fill(template: str | None, groups: dict[str, int], where: str) -> str | None:
    """{group} -> $N for nmap's version fields."""
    if template is None:
        return None

    def number(m: re.Match) -> str:
        if m[1] not in groups:
            raise ValueError(f"{where}: {template!r} cites {{{m[1]}}}, which is no group of its pattern")
        return f"${groups[m[1]]}"

    return PLACEHOLDER.sub(number, template)


def _match(service: str, naming: Naming, start: str, model: str, where: str) -> Match:
    """A naming as an nmap match: its leading \\A becomes `start`, NAME_SLOT the escaped model name, named
    groups numbered ones (nmap cites them as $N, in the same order)."""
    body = naming.pattern.replace(NAME_SLOT, re.escape(model))
    if "\\A" in body.removeprefix("\\A"):
        raise ValueError(f"{where}: \\A is allowed only at the start of a pattern")
    groups = re.compile(body).groupindex
    pattern = start + body.removeprefix("\\A") if body.startswith("\\A") else body
    pattern = re.sub(r"\(\?P<\w+>", "(", pattern)
    return Match(service, pattern, _fill(naming.product, groups, where), _fill(naming.version, groups, where),
                 _fill(naming.info, groups, where), naming.cpe)


def _ports(kinds: tuple[str, ...], where: str) -> tuple[int, ...]:
    declared = [registry.kind(k) for k in kinds]
    if None in declared:
        raise ValueError(f"{where}: kinds {kinds} are not all declared in the registry")
    return tuple(sorted({p for k in declared for p in k.ports}))


def grpc_probe(sig: GrpcSignature, model: str) -> NmapProbe:
    where = f"{sig.name} ({sig.method})"
    request = sig.request(model) if callable(sig.request) else sig.request
    if sig.status == "OK":
        matches = tuple(_match("grpc", n, GRPC_MESSAGE_START, model, where) for n in sig.namings)
    else:
        status = status_literal(sig.status)
        matches = []
        for naming in sig.namings:
            found = _match("grpc", naming, "", model, where)
            if re.compile(found.pattern).groups:
                raise ValueError(f"{where}: a grpc-message pattern cannot have groups (it is matched both ways round)")
            matches.append(replace(found, pattern=f"{status}[\\s\\S]{{0,32}}{found.pattern}|"
                                                  f"{found.pattern}[\\s\\S]{{0,32}}{status}"))
        matches = tuple(matches)
    return NmapProbe(f"{PROBE_PREFIX}{sig.name}", grpc_request(sig.method, request), matches, sig.about,
                     _ports(sig.kinds, where), GRPC_WAIT_MS)


def http_probe(sig: HttpSignature, model: str) -> NmapProbe:
    where = f"{sig.name} (GET {sig.path})"
    head = (HTTP_STATUS.format(status=sig.status) + "".join(_header(n, v) for n, v in sig.headers)
            + r"(?:[^\r\n]+\r\n)*\r\n" + CHUNK_SIZE)
    matches = []
    for naming in sig.namings:
        found = _match("http", naming, "", model, where)
        matches.append(replace(found, pattern=head + ("" if naming.pattern.startswith("\\A") else r"[\s\S]*?")
                               + found.pattern))
    return NmapProbe(f"{PROBE_PREFIX}{sig.name}", http_get(sig.path.format(name=model)), tuple(matches), sig.about,
                     _ports(sig.kinds, where))


def signatures() -> tuple[GrpcSignature | HttpSignature, ...]:
    """Every family module's NMAP declaration, for every family the registry lists, in declared order."""
    modules = {p.qualified: p for family in registry.families() for p in family.probes}
    found = [sig for probe in modules.values() for sig in getattr(loader.module(probe), "NMAP", ())]
    return tuple(sorted(found, key=lambda s: (s.order, s.name)))


def build_probes(model: str | None = None) -> tuple[NmapProbe, ...]:
    model = model or random_model_name()
    probes = [grpc_probe(s, model) if isinstance(s, GrpcSignature) else http_probe(s, model) for s in signatures()]
    last_grpc = max((i for i, p in enumerate(probes) if p.payload.startswith(PREFACE)), default=None)
    return tuple(replace(p, matches=p.matches + ((GRPC_ANY if i == last_grpc else GRPC_SOFT),))
                 if p.payload.startswith(PREFACE) else p for i, p in enumerate(probes))


# ---- the probe file --------------------------------------------------------------------------------------

def escape_probe_string(data: bytes) -> str:
    """A `q|…|` body: printable ASCII as is, `\\` doubled, everything else (the delimiter too) as \\xHH."""
    return "".join(chr(b) if b in PRINTABLE else ("\\\\" if b == 0x5C else f"\\x{b:02x}") for b in data)


def _field(letter: str, value: str) -> str:
    delimiter = next(d for d in "/|%=@#!" if d not in value)
    return f" {letter}{delimiter}{value}{delimiter}"


def match_line(match: Match) -> str:
    if re.search(match.pattern.encode("latin-1"), b"") is not None:
        raise ValueError(f"pattern {match.pattern!r} matches the empty string; nmap rejects it")
    delimiter = next(d for d in "|=%@#!~" if d not in match.pattern)
    line = f"{'softmatch' if match.soft else 'match'} {match.service} m{delimiter}{match.pattern}{delimiter}{match.flags}"
    for letter, value in (("p", match.product), ("v", match.version), ("i", match.info)):
        if value:
            line += _field(letter, value)
    if match.cpe:
        line += f" cpe:/{match.cpe}/"
    return line


def check_sendable(probe: NmapProbe) -> None:
    """Every request a probe sends passes the same safety check as netaudit's own calls, and over HTTP is a
    GET (the REST signatures declare only paths)."""
    if probe.payload.startswith(PREFACE):
        check_call(*decode_grpc_request(probe.payload))
        return
    method, path, body = decode_http_request(probe.payload)
    check_http(method, path, body)
    if method != "GET":
        raise UnsafeCall(f"refusing to write a {method} probe: REST probes only GET")


def render(probes: tuple[NmapProbe, ...], null_probe: bool) -> str:
    lines = ["# nmap service probes generated by netaudit from its own signatures. Use:",
             "#   nmap -sV --versiondb THIS_FILE ...   (or netaudit export nmap-probes --with-stock for the stock set too)",
             "# They send read-only requests only; see the netaudit README for what nmap cannot see."]
    if null_probe:
        # nmap needs a NULL probe; C-core gRPC speaks first but matches nothing here, so the wait is short.
        lines += ["", STOCK_NULL_PROBE, "totalwaitms 1000"]
    for probe in probes:
        check_sendable(probe)
        lines += ["", f"# {probe.about}", f"Probe TCP {probe.name} q|{escape_probe_string(probe.payload)}|",
                  f"rarity {RARITY}"]
        if probe.ports:  # the usual ports of the kinds it names: there nmap tries it first
            lines.append(f"ports {','.join(str(p) for p in probe.ports)}")
        lines.append(f"totalwaitms {probe.wait_ms}")
        lines += [match_line(m) for m in probe.matches]
    for line in lines:
        if not line.isascii():
            raise ValueError(f"non-ASCII probe line {line[:60]!r}")
        if len(line.encode()) + 1 > MAX_LINE:
            raise ValueError(f"a line of {len(line)} bytes is longer than nmap's {MAX_LINE}-byte limit")
    return "\n".join(lines) + "\n"


def read_stock(path: str) -> str:
    """The stock nmap-service-probes, checked enough that the combined file stays one nmap can parse. Read
    as latin-1, so every byte (the stock file has non-UTF-8 ones) is written back unchanged."""
    try:
        text = Path(path).read_text(encoding="latin-1")
    except OSError as exc:
        raise UsageError(f"cannot read --with-stock {path}: {exc.strerror}") from None
    lines = text.splitlines()
    if STOCK_NULL_PROBE not in lines:
        raise UsageError(f"--with-stock {path} is not an nmap-service-probes file (no {STOCK_NULL_PROBE!r} line)")
    if any(line.startswith(f"Probe TCP {PROBE_PREFIX}") for line in lines):
        raise UsageError(f"--with-stock {path} already holds netaudit probes; pass nmap's own file")
    return text if text.endswith("\n") else text + "\n"


def export(with_stock: str | None = None, model: str | None = None) -> str:
    probes = build_probes(model)
    if with_stock is None:
        return render(probes, True)
    return read_stock(with_stock) + "\n" + render(probes, False)
