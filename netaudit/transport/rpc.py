"""One gRPC session per endpoint, shared by all of its probes, with a deadline and a transcript record per call.

Requests and replies stay raw bytes (no generated stubs), so the scanner needs neither tensorflow nor
tensorflow-serving-api. Every request passes the safety check first. Plaintext endpoints are asked over
the scanner's own HTTP/2 connection (netaudit/transport/h2c.py, usually the sniff's connection taken over); TLS
endpoints through grpcio behind the relay (netaudit/transport/tlsrelay.py).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from functools import cache

import grpc
import grpc.aio

from netaudit.core.caps import CAPS, GRPC_RECEIVE_MAX, clip
from netaudit.core import faults
from netaudit.core.deadlines import deadlines
from netaudit.transport.h2c import Answer, H2cConnection
from netaudit.transport.safety import check_call
from netaudit.transport.transcript import call_record, call_sentence, channel_sentence, request_kind, sentences

HTTP_STATUS = re.compile(r"Received http2 header with status: (\d+)")
CHANNEL_OPTIONS = [
    ("grpc.enable_http_proxy", 0),  # never let an http_proxy variable send probes somewhere else
    ("grpc.enable_retries", 0),
    ("grpc.primary_user_agent", "netaudit"),
    ("grpc.max_receive_message_length", GRPC_RECEIVE_MAX),
]


@dataclass(frozen=True)
class Reply:
    method: str
    code: str
    details: str
    body: bytes = b""
    record: dict | None = field(default=None, compare=False, repr=False)  # its transcript record

    @property
    def ok(self) -> bool:
        return self.code == "OK"

    def matches(self, code: str, details_prefix: str | None = None) -> bool:
        return self.code == code and (details_prefix is None or self.details.startswith(details_prefix))

    @property
    def speaks_grpc(self) -> bool:
        """The peer answered with a gRPC status, not an HTTP/2 error page or a broken connection."""
        return self.code not in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "UNKNOWN") and \
            self.http_status is None

    @property
    def http_status(self) -> int | None:
        """The HTTP status when an HTTP/2 peer answered with a plain HTTP error instead of gRPC (a proxy)."""
        match = HTTP_STATUS.search(self.details)
        return int(match[1]) if match else None

    @property
    def registered(self) -> bool | None:
        """gRPC core answers an unknown method UNIMPLEMENTED with empty details; any other gRPC status reached
        the service. None when no gRPC status came (deadline passed, connection lost, an HTTP error from a
        proxy): that says neither, so a version marker must not count it either way."""
        if not self.speaks_grpc:
            return None
        return not (self.code == "UNIMPLEMENTED" and not self.details)


@cache
def hold_aio_engine() -> None:
    """Keep gRPC's asyncio engine up for the rest of the process. gRPC starts it when the first channel opens
    and stops it when the last one is freed, by joining its poller thread from the event loop's thread; that
    join never returns while an operation is still queued (seen: hostile-lab scans hung in Thread.join, once
    inside a task's deallocation mid-scan, once at the end), and between endpoints a scan would start and
    stop it again and again. Held, it never stops: its poller thread is a daemon, so the process still exits."""
    grpc.aio.init_grpc_aio()


class AioLink:
    """grpcio's channel to `address` (the TLS relay), with the real target as :authority."""

    def __init__(self, address: str, authority: str | None):
        options = CHANNEL_OPTIONS + ([("grpc.default_authority", authority)] if authority else [])
        self.grpc = grpc.aio.insecure_channel(address, options=options)

    async def _watch(self, seen: set[grpc.ChannelConnectivity]) -> None:
        state = self.grpc.get_state(try_to_connect=True)
        while state != grpc.ChannelConnectivity.READY:
            seen.add(state)
            await self.grpc.wait_for_state_change(state)
            state = self.grpc.get_state()

    async def connect(self, waits: list[float]) -> tuple[bool, int, bool]:
        """(ready, the index of the wait it became ready or gave up in, whether the connection failed)."""
        seen: set[grpc.ChannelConnectivity] = set()
        watcher = asyncio.ensure_future(self._watch(seen))
        try:
            for wait, deadline in enumerate(waits):
                try:
                    await asyncio.wait_for(asyncio.shield(watcher), deadline)
                except asyncio.TimeoutError:
                    if grpc.ChannelConnectivity.TRANSIENT_FAILURE in seen:
                        return False, wait, True
                    continue
                return True, wait, False
        finally:
            watcher.cancel()
        return False, len(waits) - 1, grpc.ChannelConnectivity.TRANSIENT_FAILURE in seen

    async def unary(self, method: str, request: bytes, deadline: float) -> Answer:
        try:
            return Answer("OK", "", await self.grpc.unary_unary(method)(request, timeout=deadline))
        except grpc.aio.AioRpcError as exc:
            return Answer(exc.code().name, exc.details() or "")

    async def first(self, method: str, request: bytes, deadline: float) -> Answer:
        call = self.grpc.stream_stream(method)(iter([request]), timeout=deadline)
        try:
            body = await call.read()
            call.cancel()
            return Answer("OK", "", body if isinstance(body, bytes) else b"")
        except grpc.aio.AioRpcError as exc:
            return Answer(exc.code().name, exc.details() or "")

    async def close(self) -> None:
        await self.grpc.close()


class H2cLink:
    """The scanner's own HTTP/2 connection to a plaintext endpoint: the one handed over (the sniff's), or a
    new one when there is none or it was lost, as a gRPC channel reconnects for its next call."""

    # After the first connection is lost, one more is opened, as a channel reconnects once within a probe's
    # deadlines; never after a server was cut off for flooding (it would only flood the next one too).
    RECONNECTS = 1

    def __init__(self, host: str, port: int, authority: str, connection: H2cConnection | None = None):
        self.host, self.port, self.authority = host, port, authority
        self.connection = connection
        self.reconnects = self.RECONNECTS
        # One (re)connection at a time: a call that comes meanwhile waits for it and rides on it, instead of
        # opening one of its own that the other call's assignment would orphan, still open.
        self.opening = asyncio.Lock()
        # Connections left after a GOAWAY with calls still running on them: streams up to its last stream id
        # may still be answered (RFC 9113 §6.8). Closed with the link.
        self.draining: list[H2cConnection] = []

    async def _open(self, timeout: float) -> tuple[bool, str] | None:
        """None when a usable connection is there, else (worth waiting longer, why none could be opened)."""
        if self.connection and self.connection.usable:
            return None
        async with self.opening:
            return await self._reopen(timeout)

    async def _reopen(self, timeout: float) -> tuple[bool, str] | None:
        if self.connection and self.connection.usable:
            return None
        if self.connection:
            lost = self.connection.lost or "the server sent GOAWAY"
            if lost.startswith("connection cut") or not self.reconnects:
                return False, lost
            self.reconnects -= 1
            if self.connection.lost or not self.connection.streams:
                await self.connection.close()
            else:
                self.draining.append(self.connection)
            self.connection = None
        try:
            self.connection = await H2cConnection.open(self.host, self.port, self.authority, timeout)
        except asyncio.TimeoutError:
            return True, f"connection to {self.authority} not set up within {timeout:g}s"
        except OSError as exc:
            return False, f"failed to connect to {self.authority}: {exc!r}"
        return None

    async def connect(self, waits: list[float]) -> tuple[bool, int, bool]:
        for wait, deadline in enumerate(waits):
            failed = await self._open(deadline)
            if failed is None:
                return True, wait, False
            if not failed[0]:  # refused or reset: waiting longer will not help
                return False, wait, True
        return False, len(waits) - 1, False

    async def unary(self, method: str, request: bytes, deadline: float) -> Answer:
        return await self._call(method, request, deadline, False)

    async def first(self, method: str, request: bytes, deadline: float) -> Answer:
        return await self._call(method, request, deadline, True)

    async def _call(self, method: str, request: bytes, deadline: float, first_message: bool) -> Answer:
        failed = await self._open(deadline)
        if failed or self.connection is None:
            return Answer("UNAVAILABLE", failed[1] if failed else "no connection")
        return await self.connection.call(method, request, deadline, first_message)

    async def close(self) -> None:
        for connection in [*self.draining, self.connection]:
            if connection:
                await connection.close()


def split_address(address: str) -> tuple[str, int]:
    """"host:port" or "[v6]:port"."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class RpcSession:
    def __init__(self, address: str, timeout: float, transport: str = "plaintext", authority: str | None = None,
                 credentials: str = "no credentials", retries: int = 0, link: AioLink | H2cLink | None = None):
        """`address` may be a local TLS relay; `authority` is then the real target, sent as :authority.
        Without a `link` the session opens its own plaintext HTTP/2 connection to `address`. `credentials`
        says what identity the calls carry, for transcripts and findings. `retries` is the scan's
        --retries, spent on a slow connection set-up and on calls whose deadline passed."""
        self.address = authority or address  # the target itself, also when `address` is a local relay
        self.timeout = timeout
        self.retries = retries
        self.retried = 0
        self.transport = transport
        self.credentials = credentials
        self.link = link or H2cLink(*split_address(address), self.address)
        self.channel: dict = {"transport": transport, "credentials": credentials}
        self.records: list[dict] = []
        self.calls: list[tuple[str, bytes]] = []
        self.replies: list[Reply] = []

    async def ready(self) -> bool:
        """Connected within the deadline, or, on a slow or lossy link where the connection is still being
        set up (TCP retransmitting), within up to `retries` more deadlines. A connection that failed
        (refused, reset, not HTTP/2) is not waited on again."""
        waits = deadlines(self.timeout, self.retries)
        ready, wait, failed = await self.link.connect(waits)
        if ready:
            if wait:
                self.retried += 1
                self.channel.update(address=self.address, waits=wait + 1, waited=sum(waits[:wait + 1]))
            return True
        self.channel.update(address=self.address, ready=False, waited=sum(waits[:wait + 1]))
        if failed:
            self.channel["failed"] = True
        return False

    def _record(self, reply: Reply, request: str, tries: int = 1, stream: bool = False) -> Reply:
        """The call's record (server text clipped), kept in the transcript up to CAPS["transcript_calls"]."""
        record = call_record(reply.method, request, reply.code, clip(reply.details),
                             len(reply.body) if reply.ok else None, tries, stream)
        if len(self.records) < CAPS["transcript_calls"]:
            self.records.append(record)
        else:
            self.channel["calls_cut"] = self.channel.get("calls_cut", 0) + 1
        reply = Reply(reply.method, reply.code, reply.details, reply.body, record)
        self.replies.append(reply)
        return reply

    def record(self) -> dict:
        """The channel and its calls, as details.transcript holds them."""
        return {**self.channel, "calls": self.records}

    def cite(self, reply: Reply) -> str:
        """The sentence for one call, for evidence: a probe cites the calls its verdict rests on."""
        return call_sentence(reply.record or call_record(reply.method, "", reply.code, reply.details, None, 1),
                             self.channel)

    @property
    def opening(self) -> str | None:
        """The channel's set-up as a sentence, when it was slow or failed."""
        return channel_sentence(self.channel)

    @property
    def transcript(self) -> list[str]:
        """Every call as a sentence (what the text and HTML outputs show)."""
        return sentences([self.record()])

    async def unary(self, method: str, request: bytes = b"", note: str | None = None) -> Reply:
        """`note` says what the request holds, for the transcript (e.g. the model name asked for); the
        reply carries its transcript record, so a probe can cite it.
        A call whose deadline passed is sent again up to `retries` times: on a lossy link the reply may
        simply be late, and every call this session may send is read-only (the safety check)."""
        check_call(method, request)
        faults.sent(method)
        sent = 0
        for deadline in deadlines(self.timeout, self.retries):
            self.calls.append((method, request))
            sent += 1
            answer = await self.link.unary(method, request, deadline)
            reply = Reply(method, answer.code, answer.details, answer.body)
            if reply.code != "DEADLINE_EXCEEDED":
                break
        self.retried += sent > 1
        return self._record(reply, request_kind(request, note), sent)

    async def stream_first(self, method: str, request: bytes) -> Reply:
        """A bidi-streaming call that sends one message and reads one reply (server reflection)."""
        check_call(method, request)
        faults.sent(method)
        self.calls.append((method, request))
        answer = await self.link.first(method, request, self.timeout)
        reply = Reply(method, answer.code, answer.details, answer.body)
        return self._record(reply, request_kind(request), stream=True)

    async def close(self) -> None:
        """Shielded: a budget or an interrupt cancelling the probe must not leave the channel half closed."""
        await asyncio.shield(self.link.close())
