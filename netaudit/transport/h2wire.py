"""HTTP/2 and gRPC on the wire, sans-IO: bytes in, bytes or values out, no sockets and no event loop
(h11's shape). The client preface, frame types and flags, building and reading frame headers, the
HPACK this scanner writes and its memoised decoding of what servers write, the gRPC request headers and
message framing, and the gRPC status names.

One home for all of it: the scanner's client (netaudit/transport/h2c.py), the sniff (sniff.py), the TLS
probe's preface (probes/transport/tls.py), the nmap probe export (netaudit/outputs/nmap_probes.py), the
probes that name gRPC status codes, the lab's hostile servers and the tests build and read HTTP/2 here.
RFC 9113 (HTTP/2), RFC 7541 (HPACK), gRPC's PROTOCOL-HTTP2.md and statuscodes.md.
"""

from __future__ import annotations

import itertools
import re
import struct
from functools import lru_cache

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = \
    0x0, 0x1, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0x9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
FRAME_HEADER = 9  # bytes: length (3), type, flags, stream (4)
FRAME_MAX = 16384  # SETTINGS_MAX_FRAME_SIZE we never raise (RFC 9113 §6.5.2 default)
HEADER_BLOCK_MAX = 64 * 1024  # one response's headers or trailers, across CONTINUATION frames
MAX_CONCURRENT_STREAMS = 0x3  # a SETTINGS parameter (RFC 9113 §6.5.2)
CANCEL = 0x8  # an RST_STREAM error code
# Our SETTINGS: no push (ENABLE_PUSH 0x2 = 0), and a header list we are ready to read (0x6).
CLIENT_SETTINGS = struct.pack(">HIHI", 0x2, 0, 0x6, HEADER_BLOCK_MAX)

# gRPC status codes by number (gRPC's doc/statuscodes.md), worded as grpcio's StatusCode names them.
GRPC_CODES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
              "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
              "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")
# HTTP status -> gRPC code for a reply that is not gRPC (gRPC's http-grpc-status-mapping.md), worded as
# grpcio words it, so Reply.http_status reads both.
HTTP_TO_GRPC = {400: "INTERNAL", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "UNIMPLEMENTED",
                429: "UNAVAILABLE", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "UNAVAILABLE"}
# RST_STREAM error code -> gRPC code (gRPC's PROTOCOL-HTTP2.md "Errors"): REFUSED_STREAM, CANCEL,
# ENHANCE_YOUR_CALM, INADEQUATE_SECURITY; the rest are INTERNAL.
RST_TO_GRPC = {0x7: "UNAVAILABLE", 0x8: "CANCELLED", 0xB: "RESOURCE_EXHAUSTED", 0xC: "PERMISSION_DENIED"}


class FrameError(ValueError):
    """A frame that breaks RFC 9113; for a connection, a connection error."""


# ---- frames ---------------------------------------------------------------------------------------

def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(">I", stream) + payload


EMPTY_SETTINGS = frame(SETTINGS, 0, 0)


def frame_header(data: bytes | bytearray, pos: int = 0) -> tuple[int, int, int, int]:
    """(payload length, type, flags, stream) of the frame header at `pos`; the caller checks that the
    nine bytes are there. The reserved bit of the stream id is dropped (RFC 9113 §4.1)."""
    return (int.from_bytes(data[pos:pos + 3], "big"), data[pos + 3], data[pos + 4],
            int.from_bytes(data[pos + 5:pos + 9], "big") & 0x7FFFFFFF)


def unpad(payload: bytes, flags: int) -> bytes:
    if not flags & PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise FrameError("padding longer than the frame")
    return payload[1:len(payload) - payload[0]]


# ---- HPACK ----------------------------------------------------------------------------------------

# RFC 7541 Appendix A: the static-table entries this scanner refers to.
INDEXED_POST, INDEXED_HTTP = 0x83, 0x86  # :method POST, :scheme http
STATIC_NAMES = {":authority": 1, ":path": 4, "content-type": 31}
# A literal's first bits (§6.2.2, §6.2.3): never indexed keeps no dynamic-table state to keep in step with
# the server; without indexing is what the nmap probes write, with static-table names.
NEVER_INDEXED, WITHOUT_INDEXING = 0x10, 0x00


def hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """RFC 7541 §5.1: an integer with an N-bit prefix; `first` holds the pattern bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out, value = bytearray((first | limit,)), value - limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def hpack_string(raw: bytes) -> bytes:
    return hpack_int(len(raw), 7) + raw  # H bit 0: no Huffman coding


def literal(name: bytes, value: bytes, first: int = NEVER_INDEXED, name_index: int = 0) -> bytes:
    """A header as a literal (RFC 7541 §6.2.2-6.2.3), its name a static-table entry when `name_index`
    is one."""
    return hpack_int(name_index, 4, first) + (b"" if name_index else hpack_string(name)) + hpack_string(value)


# Header blocks up to this size that decode to at most this much (RFC 7541 §4.1 size: name, value and 32 per
# field) are remembered with what they decoded to (HeaderDecoder). A block alone does not bound what it
# decodes to (one byte names a 4 KB table entry; a 1 KB block of 1-byte fields held 176 KB of Python objects,
# 716 MB in a full memo). Real gRPC replies are tens of bytes: a full memo is a few MB, at most about 22 MB
# whatever a server sends (measured: 1 KB blocks of 24 fields).
MEMO_BLOCK_MAX = 1024
MEMO_ENTRIES_MAX = 4096
# Bytes of blocks one connection answers from the memo: they are kept to replay at its first miss, so a long
# path taught by one server does not make each later connection hold up to INBOUND_MAX of them.
MEMO_PATH_MAX = 64 * 1024
Fields = tuple[tuple[str, str], ...]
_memo: dict[tuple[int, bytes], tuple[Fields, int, int]] = {}
_states = itertools.count(1)  # HPACK decoder states, named by the path of blocks that led to them


class HeaderDecoder:
    """HPACK decoding that remembers what a header block decoded to from a given decoder state.

    Every connection starts with an empty dynamic table, and one server sends the same blocks in the same
    order on each of its connections (a TF task's status, then its trailers), so on thousands of
    endpoints most blocks were decoded before, from the same state. A state is named by the blocks that
    led to it; a block seen from a named state is answered from the memo. At the first block the memo
    does not know, the blocks so far are replayed into a real decoder, which decodes the rest of the
    connection (and teaches the memo for the next one). Decoding errors are never remembered."""

    def __init__(self) -> None:
        self.state = 0  # the empty table
        self.seen: list[bytes] = []  # blocks answered from the memo, replayed if the real decoder is needed
        self.path = 0  # their bytes
        self.decoder: hpack.Decoder | None = None
        self.size = 0  # RFC 7541 size of every field decoded on this connection

    def decode(self, block: bytes) -> Fields:
        if self.decoder is None:
            hit = _memo.get((self.state, block))
            if hit is not None and self.path + len(block) <= MEMO_PATH_MAX:
                fields, self.state, size = hit
                self.seen.append(block)
                self.path += len(block)
                self.size += size
                return fields
            self.decoder = hpack.Decoder(max_header_list_size=HEADER_BLOCK_MAX)
            for earlier in self.seen:
                self.decoder.decode(earlier, raw=True)
            self.seen.clear()
        fields = tuple((name.decode("latin-1").lower(), value.decode("latin-1"))
                       for name, value in self.decoder.decode(block, raw=True))
        before, self.state = self.state, next(_states)
        size = sum(len(n) + len(v) + 32 for n, v in fields)
        self.size += size
        if len(block) <= MEMO_BLOCK_MAX and size <= MEMO_BLOCK_MAX:
            if len(_memo) >= MEMO_ENTRIES_MAX:
                _memo.clear()  # states named before stay valid: a miss replays, never misreads
            _memo[(before, block)] = (fields, self.state, size)
        return fields


# ---- gRPC over HTTP/2 -----------------------------------------------------------------------------

@lru_cache(maxsize=256)
def _method_headers(path: str) -> bytes:
    """:method POST and :scheme http (static-table entries 3 and 6, §A) and :path: the same for every call
    of one method."""
    return bytes((INDEXED_POST, INDEXED_HTTP)) + literal(b":path", path.encode())


# Regular headers come after every pseudo-header (RFC 9113 §8.3), so after :authority.
GRPC_HEADERS = b"".join(literal(n, v) for n, v in (
    (b"content-type", b"application/grpc"), (b"te", b"trailers"), (b"user-agent", b"netaudit")))


def request_headers(path: str, authority: str, timeout: float) -> bytes:
    return _method_headers(path) + literal(b":authority", authority.encode()) + GRPC_HEADERS + \
        literal(b"grpc-timeout", f"{max(1, int(timeout * 1000))}m".encode())


def grpc_message(message: bytes) -> bytes:
    """One length-prefixed message, not compressed: what a DATA frame of a call carries."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def first_message(data: bytearray) -> bytes | None:
    """The first length-prefixed gRPC message, when it is complete and uncompressed."""
    if len(data) < 5 or data[0] != 0:
        return None
    length = int.from_bytes(data[1:5], "big")
    return bytes(data[5:5 + length]) if len(data) >= 5 + length else None


def status_number(text: str) -> int:
    """A status number, or -1 for anything else a server may put there."""
    return int(text) if re.fullmatch(r"[0-9]{1,4}", text) else -1
