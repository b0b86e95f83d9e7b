"""Plaintext gRPC over one HTTP/2 connection of the scanner's own, read under its own bounds.

A gRPC library channel per endpoint costs three TCP connections on the target (the sniff, grpcio's own,
and the relay that caps a flooding server) and most of the scanner's CPU: on thousands of TF endpoints
the fingerprint was 50-100 times slower than nmap's discovery of the same ports (docs/benchmarks.md).
Here the sniff's own connection carries the calls, each call is one write of precomputed frames, and
every byte the server sends is parsed by this module under fixed limits: frames up to the size we
advertise, header blocks up to HEADER_BLOCK_MAX, a message up to GRPC_RECEIVE_MAX, and at most
INBOUND_MAX bytes per connection before it is cut (a SETTINGS/PING flood ends there).

The bytes themselves (frames, HPACK, gRPC framing and status names) are built and read by the sans-IO
netaudit/transport/h2wire.py; this module is the connection: streams, deadlines, flow control, limits.

Only what unary and first-message calls need: no server push, no priorities, no compression (none is
offered, so a server may not use it). Flow-control credit is returned for every DATA byte read, so a
reply larger than the 64 KiB default window still arrives. TLS endpoints keep the gRPC library behind
the relay (netaudit/transport/tlsrelay.py), which also judges certificates this module never sees.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field
from urllib.parse import unquote

import hpack.exceptions

from netaudit.core.caps import GRPC_RECEIVE_MAX, RELAY_INBOUND_MAX as INBOUND_MAX, STRING_MAX, clip
from netaudit.transport.h2wire import (ACK, CANCEL, CLIENT_SETTINGS, CONTINUATION, DATA, END_HEADERS, END_STREAM,
                                       FRAME_HEADER, FRAME_MAX, GOAWAY, GRPC_CODES, HEADER_BLOCK_MAX, HEADERS,
                                       HTTP_TO_GRPC, MAX_CONCURRENT_STREAMS, PING, PREFACE, PRIORITY, PUSH_PROMISE,
                                       RST_STREAM, RST_TO_GRPC, SETTINGS, WINDOW_UPDATE, FrameError, HeaderDecoder,
                                       first_message, frame, frame_header, grpc_message, request_headers,
                                       status_number, unpad)

# Flow-control credit goes back once half the default 64 KiB window is used: most replies are far smaller
# and never need a WINDOW_UPDATE, a large one (an inventory) still never stalls.
WINDOW_RETURN = 32768
# What all header blocks of one connection may decode to (RFC 7541 size). Decoding costs by the fields a block
# decodes to, not by its bytes: 4 MiB of 1 KB blocks of 1-byte fields took 7 s of CPU. A real reply's headers
# and trailers are a few hundred bytes, so this is thousands of calls.
HEADERS_DECODED_MAX = 4 << 20


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
        self._send(frame(HEADERS, END_HEADERS, stream_id, request_headers(path, self.authority, timeout))
                   + frame(DATA, END_STREAM, stream_id, grpc_message(message)))
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
        while len(self.buffer) >= FRAME_HEADER:
            length, kind, flags, stream = frame_header(self.buffer)
            if length > FRAME_MAX:
                raise ConnectionLost(f"the server sent a {length:,}-byte frame, over the {FRAME_MAX:,} we allow")
            if len(self.buffer) < FRAME_HEADER + length:
                break
            payload = bytes(self.buffer[FRAME_HEADER:FRAME_HEADER + length])
            del self.buffer[:FRAME_HEADER + length]
            if self.block is not None and kind != CONTINUATION:
                raise ConnectionLost("the server interrupted a header block with another frame")
            try:
                credit += self._frame(kind, flags, stream, payload)
            except FrameError as exc:
                raise ConnectionLost(str(exc)) from None
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
                    if key == MAX_CONCURRENT_STREAMS:
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
            payload = unpad(payload, flags)
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
        state.data += unpad(payload, flags)
        state.unacked += len(payload)
        if state.unacked >= WINDOW_RETURN and not flags & END_STREAM:
            self._send(frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", state.unacked)))
            state.unacked = 0
        if len(state.data) > GRPC_RECEIVE_MAX + 5:
            self._end(stream, Answer("RESOURCE_EXHAUSTED", f"Received message larger than max "
                                     f"({len(state.data) - 5} vs. {GRPC_RECEIVE_MAX})"), reset=True)
        elif flags & END_STREAM:
            self._end(stream, self._answer(state))
        elif state.first_message and (message := first_message(state.data)) is not None:
            self._end(stream, Answer("OK", "", message), reset=True)

    def _answer(self, state: _Stream) -> Answer:
        """The finished stream in gRPC terms, as a gRPC library would report it."""
        headers = state.headers
        status = headers.get(":status", "")
        if status != "200":
            code = HTTP_TO_GRPC.get(status_number(status), "UNKNOWN")
            return Answer(code, f"Received http2 header with status: {clip(status, 20) or 'none'}")
        grpc_status = headers.get("grpc-status")
        if grpc_status is None:
            return Answer("UNKNOWN", "the reply ended without a grpc-status")
        number = status_number(grpc_status)
        code = GRPC_CODES[number] if 0 <= number < len(GRPC_CODES) else "UNKNOWN"
        details = unquote(clip(headers.get("grpc-message", ""), 4 * STRING_MAX), errors="replace")
        if code != "OK":
            return Answer(code, details)
        message = first_message(state.data)
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
