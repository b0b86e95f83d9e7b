"""Plaintext gRPC over one HTTP/2 connection of the scanner's own, read under its own bounds.

A gRPC library channel per endpoint costs three TCP connections on the target (the sniff, grpcio's own,
and the relay that caps a flooding server) and most of the scanner's CPU: on thousands of TF endpoints
the fingerprint was 50-100 times slower than nmap's discovery of the same ports (docs/benchmarks.md).
Here the sniff's own connection carries the calls, each call is one write of precomputed frames, and
every byte the server sends is parsed by this module under fixed limits: frames up to the size we
advertise, header blocks up to HEADER_BLOCK_MAX, a message up to GRPC_RECEIVE_MAX, and at most
INBOUND_MAX bytes per connection before it is cut (a SETTINGS/PING flood ends there).

Only what unary and first-message calls need: no server push, no priorities, no compression (none is
offered, so a server may not use it). Flow-control credit is returned for every DATA byte read, so a
reply larger than the 64 KiB default window still arrives. TLS endpoints keep the gRPC library behind
the relay (netaudit/transport/tlsrelay.py), which also judges certificates this module never sees.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import unquote

import hpack
import hpack.exceptions

from netaudit.core.bounds import GRPC_RECEIVE_MAX, RELAY_INBOUND_MAX as INBOUND_MAX, STRING_MAX, clip

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = \
    0x0, 0x1, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0x9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
FRAME_MAX = 16384  # SETTINGS_MAX_FRAME_SIZE we never raise (RFC 9113 §6.5.2 default)
HEADER_BLOCK_MAX = 64 * 1024  # one response's headers or trailers, across CONTINUATION frames
# What all header blocks of one connection may decode to (RFC 7541 size). Decoding costs by the fields a block
# decodes to, not by its bytes: 4 MiB of 1 KB blocks of 1-byte fields took 7 s of CPU. A real reply's headers
# and trailers are a few hundred bytes, so this is thousands of calls.
HEADERS_DECODED_MAX = 4 << 20
CANCEL = 0x8
# Flow-control credit goes back once half the default 64 KiB window is used: most replies are far smaller
# and never need a WINDOW_UPDATE, a large one (an inventory) still never stalls.
WINDOW_RETURN = 32768
# Our SETTINGS: no push (ENABLE_PUSH 0x2 = 0), and a header list we are ready to read (0x6).
CLIENT_SETTINGS = struct.pack(">HIHI", 0x2, 0, 0x6, HEADER_BLOCK_MAX)
# HTTP status -> gRPC code for a reply that is not gRPC (gRPC's http-grpc-status-mapping.md), worded as
# grpcio words it, so Reply.http_status reads both.
HTTP_TO_GRPC = {400: "INTERNAL", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "UNIMPLEMENTED",
                429: "UNAVAILABLE", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "UNAVAILABLE"}
# RST_STREAM error code -> gRPC code (gRPC's PROTOCOL-HTTP2.md "Errors"): REFUSED_STREAM, CANCEL,
# ENHANCE_YOUR_CALM, INADEQUATE_SECURITY; the rest are INTERNAL.
RST_TO_GRPC = {0x7: "UNAVAILABLE", 0x8: "CANCELLED", 0xB: "RESOURCE_EXHAUSTED", 0xC: "PERMISSION_DENIED"}
GRPC_CODES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
              "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
              "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(">I", stream) + payload


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


def _literal(name: bytes, value: bytes) -> bytes:
    """A header as a literal never indexed (§6.2.3): no dynamic-table state to keep in step with the server."""
    return b"\x10" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


@lru_cache(maxsize=256)
def _method_headers(path: str) -> bytes:
    """:method POST and :scheme http (static-table entries 3 and 6, §A) and :path: the same for every call
    of one method."""
    return b"\x83\x86" + _literal(b":path", path.encode())


# Regular headers come after every pseudo-header (RFC 9113 §8.3), so after :authority.
GRPC_HEADERS = b"".join(_literal(n, v) for n, v in (
    (b"content-type", b"application/grpc"), (b"te", b"trailers"), (b"user-agent", b"netaudit")))


def request_headers(path: str, authority: str, timeout: float) -> bytes:
    return _method_headers(path) + _literal(b":authority", authority.encode()) + GRPC_HEADERS + \
        _literal(b"grpc-timeout", f"{max(1, int(timeout * 1000))}m".encode())


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


@dataclass
class Answer:
    """A call's outcome in gRPC terms."""

    code: str
    details: str = ""
    body: bytes = b""


@dataclass
class _Stream:
    done: asyncio.Future
    first_message: bool  # resolve on the first complete message (a streaming call read once)
    headers: dict[str, str] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)
    unacked: int = 0  # DATA bytes read on this stream and not yet given back


class ConnectionLost(Exception):
    """The connection ended or was cut; the message says why, for the call's details."""


class H2cConnection:
    """One HTTP/2 connection; calls are its streams. `already` is what the server sent before we took the
    connection over (the sniff read its SETTINGS frame), `preface_sent` whether our preface went out too."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, authority: str,
                 already: bytes = b"", preface_sent: bool = False):
        self.writer = writer
        self.loop = asyncio.get_running_loop()
        self.out = bytearray()  # frames to send, written once per event-loop turn (_send)
        self.unacked = 0  # connection-level DATA bytes read and not yet given back in a WINDOW_UPDATE
        self.authority = authority
        self.streams: dict[int, _Stream] = {}
        self.next_stream = 1
        self.max_streams = 100  # until the server's SETTINGS say otherwise
        self.slot_free = asyncio.Event()  # set whenever a stream ends
        self.slot_free.set()
        self.settings_seen = asyncio.Event()  # the server's first SETTINGS (or the connection's end)
        self.headers = HeaderDecoder()
        self.buffer = bytearray(already)
        self.inbound = len(already)
        self.block: tuple[int, int, bytearray] | None = None  # (stream, flags, header block so far)
        self.goaway_last: int | None = None
        self.lost: str | None = None
        if not preface_sent:
            self._send(PREFACE + frame(SETTINGS, 0, 0, CLIENT_SETTINGS))
        try:
            self._parse()
        except ConnectionLost as exc:
            self._lose(str(exc))
        self.reader_task = asyncio.ensure_future(self._read(reader))

    @classmethod
    async def open(cls, host: str, port: int, authority: str, timeout: float) -> H2cConnection:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        return cls(reader, writer, authority)

    @property
    def usable(self) -> bool:
        return self.lost is None and self.goaway_last is None

    async def call(self, path: str, message: bytes, timeout: float, first_message: bool = False) -> Answer:
        """One request message, half-closed, and the answer within `timeout` (a wait for a free stream
        slot included). The deadline is one timer that ends the stream: thousands of endpoints make
        tens of thousands of calls, and a timeout context per call was a visible share of the scan."""
        started = self.loop.time()
        if self.usable and (not self.settings_seen.is_set() or len(self.streams) >= self.max_streams):
            try:
                async with asyncio.timeout(timeout):
                    await self.settings_seen.wait()  # its stream limit comes with it
                    while self.usable and len(self.streams) >= self.max_streams:
                        self.slot_free.clear()
                        await self.slot_free.wait()
            except TimeoutError:
                return Answer("DEADLINE_EXCEEDED", "Deadline Exceeded (the server's SETTINGS or a free stream "
                                                   "did not come)")
        if not self.usable:
            return Answer("UNAVAILABLE", self.lost or "the server sent GOAWAY: no new calls on this connection")
        stream_id, self.next_stream = self.next_stream, self.next_stream + 2
        state = _Stream(self.loop.create_future(), first_message)
        self.streams[stream_id] = state
        body = b"\x00" + struct.pack(">I", len(message)) + message
        self._send(frame(HEADERS, END_HEADERS, stream_id, request_headers(path, self.authority, timeout))
                   + frame(DATA, END_STREAM, stream_id, body))
        timer = self.loop.call_at(started + timeout, self._end, stream_id,
                                  Answer("DEADLINE_EXCEEDED", "Deadline Exceeded"), True)
        try:
            return await state.done
        except asyncio.CancelledError:
            self._end(stream_id, Answer("CANCELLED", "cancelled by the scanner"), reset=True)
            raise
        finally:
            timer.cancel()

    def _send(self, data: bytes) -> None:
        """Queue frames; everything queued in one event-loop turn (a probe's concurrent calls, the ACKs a
        read needs) leaves in one write."""
        if not self.out:
            self.loop.call_soon(self._flush)
        self.out += data

    def _flush(self) -> None:
        if self.out and not self.writer.is_closing():
            self.writer.write(bytes(self.out))
        self.out.clear()

    async def close(self) -> None:
        self._lose("connection closed by the scanner")
        self.reader_task.cancel()
        await asyncio.gather(self.reader_task, return_exceptions=True)
        # Aborted, not closed: a closed transport keeps its socket until the server has read what is queued,
        # and a server that floods PINGs and reads nothing would hold our ACKs and the socket for good.
        self.writer.transport.abort()

    # ---- what the server sends -----------------------------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while self.lost is None and (data := await reader.read(65536)):
                self.inbound += len(data)
                if self.inbound > INBOUND_MAX:
                    raise ConnectionLost(f"connection cut: the server sent more than {INBOUND_MAX:,} bytes")
                self.buffer += data
                self._parse()
            self._lose("the server closed the connection")
        except ConnectionLost as exc:
            self._lose(str(exc))
        except (ConnectionError, OSError) as exc:
            self._lose(f"connection lost: {exc!r}")
        finally:
            if self.lost and not self.writer.is_closing():
                self.writer.close()

    def _parse(self) -> None:
        """Every complete frame in the buffer. A connection error raises ConnectionLost."""
        credit = 0
        while len(self.buffer) >= 9:
            length = int.from_bytes(self.buffer[:3], "big")
            if length > FRAME_MAX:
                raise ConnectionLost(f"the server sent a {length:,}-byte frame, over the {FRAME_MAX:,} we allow")
            if len(self.buffer) < 9 + length:
                break
            kind, flags = self.buffer[3], self.buffer[4]
            stream = int.from_bytes(self.buffer[5:9], "big") & 0x7FFFFFFF
            payload = bytes(self.buffer[9:9 + length])
            del self.buffer[:9 + length]
            if self.block is not None and kind != CONTINUATION:
                raise ConnectionLost("the server interrupted a header block with another frame")
            credit += self._frame(kind, flags, stream, payload)
        self.unacked += credit
        if self.unacked >= WINDOW_RETURN:
            self._send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self.unacked)))
            self.unacked = 0

    def _frame(self, kind: int, flags: int, stream: int, payload: bytes) -> int:
        """Handle one frame; returns the connection flow-control credit it used."""
        if kind == SETTINGS:
            if stream or (not flags & ACK and len(payload) % 6):
                raise ConnectionLost("malformed SETTINGS frame")
            if not flags & ACK:
                for offset in range(0, len(payload), 6):
                    key, value = struct.unpack_from(">HI", payload, offset)
                    if key == 0x3:  # MAX_CONCURRENT_STREAMS
                        self.max_streams = max(1, min(value, 100))
                self._send(frame(SETTINGS, ACK, 0))
                self.settings_seen.set()
        elif kind == PING:
            if stream or len(payload) != 8:
                raise ConnectionLost("malformed PING frame")
            if not flags & ACK:
                self._send(frame(PING, ACK, 0, payload))
        elif kind == GOAWAY:
            last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF if len(payload) >= 8 else 0
            self.goaway_last = last
            for sid in [s for s in self.streams if s > last]:
                self._end(sid, Answer("UNAVAILABLE", "the server sent GOAWAY before answering"))
        elif kind in (HEADERS, CONTINUATION):
            self._headers(kind, flags, stream, payload)
        elif kind == DATA:
            self._data(flags, stream, payload)
            return len(payload)
        elif kind == RST_STREAM:
            code = int.from_bytes(payload[:4], "big") if len(payload) == 4 else -1
            self._end(stream, Answer(RST_TO_GRPC.get(code, "INTERNAL"), f"Received RST_STREAM with error code {code}"))
        elif kind == PUSH_PROMISE:
            raise ConnectionLost("the server sent PUSH_PROMISE, which we disabled")
        return 0

    def _headers(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        if kind == CONTINUATION:
            if self.block is None or self.block[0] != stream:
                raise ConnectionLost("CONTINUATION without the header block it continues")
            block = self.block[2]
            # CONTINUATION defines END_HEADERS alone; its other flag bits mean nothing (RFC 9113 §4.1, §6.10).
            flags = (self.block[1] & END_STREAM) | (flags & END_HEADERS)
        else:
            if not stream:
                raise ConnectionLost("HEADERS on stream 0")
            payload = _unpad(payload, flags)
            if flags & PRIORITY:
                payload = payload[5:]
            block = bytearray()
        block += payload
        if len(block) > HEADER_BLOCK_MAX:
            raise ConnectionLost(f"a header block over {HEADER_BLOCK_MAX:,} bytes")
        if not flags & END_HEADERS:
            self.block = (stream, flags, block)
            return
        self.block = None
        try:
            fields = self.headers.decode(bytes(block))
        except (hpack.exceptions.HPACKError, ValueError, IndexError) as exc:
            raise ConnectionLost(f"undecodable HPACK header block ({type(exc).__name__})") from None
        if self.headers.size > HEADERS_DECODED_MAX:
            raise ConnectionLost(f"connection cut: the server's header blocks decoded to more than "
                                 f"{HEADERS_DECODED_MAX:,} bytes")
        state = self.streams.get(stream)
        if state is None:
            return  # a stream we reset or never opened; the block still had to be decoded (HPACK state)
        state.headers.update(fields)
        if flags & END_STREAM:
            self._end(stream, self._answer(state))

    def _data(self, flags: int, stream: int, payload: bytes) -> None:
        if not stream:
            raise ConnectionLost("DATA on stream 0")
        state = self.streams.get(stream)
        if state is None:
            return
        state.data += _unpad(payload, flags)
        state.unacked += len(payload)
        if state.unacked >= WINDOW_RETURN and not flags & END_STREAM:
            self._send(frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", state.unacked)))
            state.unacked = 0
        if len(state.data) > GRPC_RECEIVE_MAX + 5:
            self._end(stream, Answer("RESOURCE_EXHAUSTED", f"Received message larger than max "
                                     f"({len(state.data) - 5} vs. {GRPC_RECEIVE_MAX})"), reset=True)
        elif flags & END_STREAM:
            self._end(stream, self._answer(state))
        elif state.first_message and (message := _message(state.data)) is not None:
            self._end(stream, Answer("OK", "", message), reset=True)

    def _answer(self, state: _Stream) -> Answer:
        """The finished stream in gRPC terms, as a gRPC library would report it."""
        headers = state.headers
        status = headers.get(":status", "")
        if status != "200":
            code = HTTP_TO_GRPC.get(_number(status), "UNKNOWN")
            return Answer(code, f"Received http2 header with status: {clip(status, 20) or 'none'}")
        grpc_status = headers.get("grpc-status")
        if grpc_status is None:
            return Answer("UNKNOWN", "the reply ended without a grpc-status")
        number = _number(grpc_status)
        code = GRPC_CODES[number] if 0 <= number < len(GRPC_CODES) else "UNKNOWN"
        details = unquote(clip(headers.get("grpc-message", ""), 4 * STRING_MAX), errors="replace")
        if code != "OK":
            return Answer(code, details)
        message = _message(state.data)
        if message is None:
            return Answer("INTERNAL", "the reply's message is incomplete or compressed")
        return Answer("OK", "", message)

    def _end(self, stream: int, answer: Answer, reset: bool = False) -> None:
        state = self.streams.pop(stream, None)
        if state is None:
            return
        if reset and self.lost is None:
            self._send(frame(RST_STREAM, 0, stream, struct.pack(">I", CANCEL)))
        if not state.done.done():
            state.done.set_result(answer)
        self.slot_free.set()

    def _lose(self, why: str) -> None:
        if self.lost is None:
            self.lost = why
        self.settings_seen.set()
        self.slot_free.set()
        for stream in list(self.streams):
            self._end(stream, Answer("UNAVAILABLE", self.lost))


def _number(text: str) -> int:
    """A status number, or -1 for anything else a server may put there."""
    return int(text) if re.fullmatch(r"[0-9]{1,4}", text) else -1


def _unpad(payload: bytes, flags: int) -> bytes:
    if not flags & PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise ConnectionLost("padding longer than the frame")
    return payload[1:len(payload) - payload[0]]


def _message(data: bytearray) -> bytes | None:
    """The first length-prefixed gRPC message, when it is complete and uncompressed."""
    if len(data) < 5 or data[0] != 0:
        return None
    length = int.from_bytes(data[1:5], "big")
    return bytes(data[5:5 + length]) if len(data) >= 5 + length else None
