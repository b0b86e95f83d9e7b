"""The RPC session on a slow peer: a reply that misses its deadline is asked for again (--retries), and a
port that refuses is not waited on. Against a real grpcio server on a loopback port of the test's own."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent import futures

import grpc
import pytest

from netaudit.probes.generic.grpc import HEALTH_CHECK
from netaudit.transport.rpc import RpcSession


@pytest.fixture
def slow_health():
    """A health service whose first answer comes after 1.5 s, then at once."""
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    class FirstSlow(health.HealthServicer):
        def __init__(self):
            super().__init__()
            self.calls = 0
            self.lock = threading.Lock()

        def Check(self, request, context):
            with self.lock:
                self.calls += 1
                first = self.calls == 1
            if first:
                time.sleep(1.5)
            return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = FirstSlow()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(0)


def call_health(address: str, retries: int) -> tuple[str, dict, str, int]:
    """The reply's code, its transcript record, that record as the sentence evidence cites, and the sends."""
    async def go():
        session = RpcSession(address, timeout=1.0, retries=retries)
        try:
            assert await session.ready()
            reply = await session.unary(HEALTH_CHECK)
            assert session.record()["calls"] == [reply.record]
            return reply.code, reply.record, session.cite(reply), len(session.calls)
        finally:
            await session.close()
    return asyncio.run(go())


def test_a_late_reply_is_asked_for_again(slow_health):
    address, servicer = slow_health
    code, record, sentence, sent = call_health(address, retries=1)
    assert (code, sent, servicer.calls) == ("OK", 2, 2)
    assert record == {"method": HEALTH_CHECK, "request": "empty", "code": "OK", "size": 2, "tries": 2}
    assert sentence == (f"-> {HEALTH_CHECK} (empty request, no credentials, plaintext) <- OK [2-byte response] "
                        "(sent 2 times: deadline passed)")


def test_without_retries_the_deadline_stands(slow_health):
    address, servicer = slow_health
    code, record, sentence, sent = call_health(address, retries=0)
    assert (code, sent, servicer.calls) == ("DEADLINE_EXCEEDED", 1, 1)
    assert record["code"] == "DEADLINE_EXCEEDED" and "tries" not in record and "sent 2 times" not in sentence


def test_a_refused_port_is_not_waited_on():
    """Nothing listens (a port the kernel just handed us and we closed): the channel fails, it is not slow,
    so ready() gives up after the first wait instead of spending every retry."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def go():
        session = RpcSession(f"127.0.0.1:{port}", timeout=1.0, retries=3)
        try:
            return await session.ready(), session.record(), session.opening
        finally:
            await session.close()
    ready, record, opening = asyncio.run(go())
    assert ready is False and (record["ready"], record["waited"], record["failed"], record["calls"]) == \
        (False, 1, True, []), record
    assert opening.endswith("gRPC channel not ready within 1s (the connection failed)"), opening


# ---- netaudit's own HTTP/2 client against a real grpcio server (netaudit/transport/h2c.py) -----------------------

SIZES = {"/netaudit.Test/Small": 3, "/netaudit.Test/Big": 200 * 1024, "/netaudit.Test/TooBig": 300 * 1024}


@pytest.fixture
def sized_replies():
    """Replies of fixed sizes from a real grpcio server that allows one stream at a time; every call takes
    50 ms, so calls sent together have to wait for the stream slot."""
    def reply(size: int):
        def handler(request: bytes, context) -> bytes:
            time.sleep(0.05)
            return b"x" * size
        return grpc.unary_unary_rpc_method_handler(handler)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[
        ("grpc.max_concurrent_streams", 1), ("grpc.max_send_message_length", 1 << 20)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "netaudit.Test", {path.rsplit("/", 1)[1]: reply(size) for path, size in SIZES.items()}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


def test_replies_past_the_flow_control_window_and_the_size_limit(sized_replies):
    """200 KiB is three times HTTP/2's default window: the client must give credit back as it reads. 300
    KiB is over the scanner's 256 KiB message limit: refused as grpcio refuses it, the connection kept."""
    async def go():
        session = RpcSession(sized_replies, timeout=5.0)
        try:
            return [await session.unary(path) for path in SIZES]
        finally:
            await session.close()
    small, big, too_big = asyncio.run(go())
    assert (small.code, small.body) == ("OK", b"xxx")
    assert (big.code, len(big.body)) == ("OK", 200 * 1024)
    assert too_big.code == "RESOURCE_EXHAUSTED" and too_big.details.startswith("Received message larger than max")


def test_concurrent_calls_wait_for_the_servers_stream_limit(sized_replies):
    """The server's SETTINGS allow one stream: five calls sent together are all answered, one after the other."""
    async def go():
        session = RpcSession(sized_replies, timeout=5.0)
        try:
            assert await session.ready()
            started = time.perf_counter()
            replies = await asyncio.gather(*(session.unary("/netaudit.Test/Small") for _ in range(5)))
            return replies, time.perf_counter() - started
        finally:
            await session.close()
    replies, seconds = asyncio.run(go())
    assert [r.code for r in replies] == ["OK"] * 5
    assert seconds >= 0.25  # one at a time, 50 ms each


@pytest.fixture
def strict_h2_server():
    """A server on the `h2` library (another HTTP/2 implementation, strict about request headers) that,
    unlike gRPC C-core, waits for the client's preface before it sends anything: the sniff's preface path.
    Every call gets a trailers-only UNIMPLEMENTED naming the path it asked for."""
    import h2.config
    import h2.connection
    import h2.events

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        first = await reader.read(65536)
        conn.initiate_connection()
        data = first
        while data:
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    path = dict(event.headers)[":path"]
                    conn.send_headers(event.stream_id, [(":status", "200"), ("content-type", "application/grpc"),
                                                        ("grpc-status", "12"), ("grpc-message", f"no%20{path}")],
                                      end_stream=True)
            writer.write(conn.data_to_send())
            data = await reader.read(65536)
        writer.close()

    ready = threading.Event()
    box: dict = {}

    def run() -> None:
        async def main() -> None:
            server = await asyncio.start_server(serve, "127.0.0.1", 0)
            box["port"], box["stop"] = server.sockets[0].getsockname()[1], asyncio.Event()
            ready.set()
            await box["stop"].wait()
            server.close()
        box["loop"] = asyncio.new_event_loop()
        box["loop"].run_until_complete(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(5)
    yield box["port"]
    box["loop"].call_soon_threadsafe(box["stop"].set)
    thread.join(5)


def test_calls_ride_on_the_sniffs_connection_to_a_server_that_waits_for_the_preface(strict_h2_server):
    from netaudit.transport.sniff import sniff
    from netaudit.transport.rpc import H2cLink

    async def go():
        found = await sniff("127.0.0.1", strict_h2_server, 2.0)
        assert found.protocol == "h2" and found.connection is not None, found.evidence
        session = RpcSession(f"127.0.0.1:{strict_h2_server}", 2.0,
                             link=H2cLink("127.0.0.1", strict_h2_server, f"127.0.0.1:{strict_h2_server}",
                                          found.connection))
        try:
            assert await session.ready()
            return await session.unary(HEALTH_CHECK), found.evidence
        finally:
            await session.close()
    reply, evidence = asyncio.run(go())
    assert "after HTTP/2 preface: server sent an HTTP/2 SETTINGS frame" in evidence[0]
    assert (reply.code, reply.details) == ("UNIMPLEMENTED", f"no {HEALTH_CHECK}")


# ---- hostile and draining servers on raw sockets of the test's own --------------------------------------

def _frames(data: bytearray) -> list[tuple[int, int, int, bytes]]:
    """Complete HTTP/2 frames taken off the front of `data` (after the client's preface)."""
    from netaudit.transport import h2wire

    found = []
    if data.startswith(h2wire.PREFACE):
        del data[:len(h2wire.PREFACE)]
    while len(data) >= h2wire.FRAME_HEADER and len(data) >= h2wire.FRAME_HEADER + h2wire.frame_header(data)[0]:
        length, kind, flags, stream = h2wire.frame_header(data)
        found.append((kind, flags, stream, bytes(data[h2wire.FRAME_HEADER:h2wire.FRAME_HEADER + length])))
        del data[:h2wire.FRAME_HEADER + length]
    return found


def _flooder(chunk: bytes, times: int, release: asyncio.Event):
    """A server handler that sends SETTINGS, then `chunk` `times` times as fast as the client reads, and
    holds the connection until `release` is set."""
    from netaudit.transport import h2wire

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(h2wire.frame(h2wire.SETTINGS, 0, 0))
        try:
            for _ in range(times):
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass
        await release.wait()
        writer.close()
    return flood


async def _raw_h2_server(reply, accepted: list | None = None,
                         first_closes: bool = False) -> tuple[asyncio.AbstractServer, int]:
    """A loopback server that sends SETTINGS on connect, as gRPC C-core does, and answers each request
    (HEADERS and DATA with END_STREAM) with the bytes `reply(stream_id)` gives. Its connections go into
    `accepted`; with `first_closes`, the first one is closed after its first reply."""
    from netaudit.transport import h2wire

    accepted = [] if accepted is None else accepted

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        closes = first_closes and not accepted
        accepted.append(writer)
        writer.write(h2wire.frame(h2wire.SETTINGS, 0, 0))
        data = bytearray()
        while chunk := await reader.read(65536):
            data += chunk
            for kind, flags, stream, _ in _frames(data):
                if kind == h2wire.DATA and flags & h2wire.END_STREAM:
                    writer.write(reply(stream))
                    if closes:
                        writer.close()
                        return
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_continuation_flags_other_than_end_headers_are_ignored():
    """CONTINUATION defines END_HEADERS only; other flags MUST be ignored (RFC 9113 §4.1, §6.10). A stray
    0x1 bit is not END_STREAM: the reply's message and trailers still count."""
    from netaudit.transport import h2wire

    headers = b"".join(h2wire.literal(n, v) for n, v in ((b":status", b"200"), (b"content-type", b"application/grpc")))
    trailers = h2wire.literal(b"grpc-status", b"0")

    def reply(stream: int) -> bytes:
        return (h2wire.frame(h2wire.HEADERS, 0, stream, headers[:6])
                + h2wire.frame(h2wire.CONTINUATION, h2wire.END_HEADERS | 0x1 | h2wire.PADDED, stream, headers[6:])
                + h2wire.frame(h2wire.DATA, 0, stream, b"\x00\x00\x00\x00\x03abc")
                + h2wire.frame(h2wire.HEADERS, h2wire.END_HEADERS | h2wire.END_STREAM, stream, trailers))

    async def go():
        server, port = await _raw_h2_server(reply)
        session = RpcSession(f"127.0.0.1:{port}", timeout=2.0)
        try:
            assert await session.ready()
            return await session.unary("/netaudit.Test/Small")
        finally:
            await session.close()
            server.close()
    answer = asyncio.run(go())
    assert (answer.code, answer.body) == ("OK", b"abc"), answer


def test_a_server_that_floods_and_never_reads_loses_its_socket_at_close():
    """A server with a tiny receive buffer floods PINGs and reads nothing: the ACKs pile up in our transport's
    buffer. Closing the connection must still free the socket, not wait forever for the server to read."""
    import socket

    from netaudit.transport import h2c, h2wire

    async def go():
        release = asyncio.Event()

        pings = h2wire.frame(h2wire.PING, 0, 0, b"8 bytes!") * 4096
        flood = _flooder(pings, h2c.INBOUND_MAX // len(pings) + 2, release)

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        server = await asyncio.start_server(flood, sock=listener)
        connection = await h2c.H2cConnection.open("127.0.0.1", listener.getsockname()[1], "x", 2.0)
        try:
            for _ in range(200):
                if connection.lost:
                    break
                await asyncio.sleep(0.05)
            await connection.close()
            await asyncio.sleep(0.2)
            return connection.lost, connection.writer.transport.get_extra_info("socket").fileno()
        finally:
            release.set()
            server.close()
    lost, fileno = asyncio.run(go())
    assert lost.startswith("connection cut"), lost
    assert fileno == -1, "the socket is still open after close()"


@pytest.fixture
def aging_server():
    """A grpcio server that ends every connection after 300 ms with a graceful GOAWAY (max_connection_age),
    letting calls already in flight finish within 5 s. Slow answers after 1.5 s."""
    def handler(delay: float):
        def answer(request: bytes, context) -> bytes:
            time.sleep(delay)
            return b"ok"
        return grpc.unary_unary_rpc_method_handler(answer)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[
        ("grpc.max_connection_age_ms", 300), ("grpc.max_connection_age_grace_ms", 5000)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "netaudit.Test", {"Slow": handler(1.5), "Fast": handler(0)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


def test_calls_in_flight_finish_after_a_graceful_goaway(aging_server):
    """After GOAWAY, streams up to its last stream id may still be answered (RFC 9113 §6.8): a new call
    opens a new connection, and must not cut the old one under the call still running there."""
    async def go():
        session = RpcSession(aging_server, timeout=5.0)

        async def later():
            await asyncio.sleep(0.9)  # the server sent its GOAWAY at 300 ms
            return await session.unary("/netaudit.Test/Fast")
        try:
            assert await session.ready()
            return await asyncio.gather(session.unary("/netaudit.Test/Slow"), later())
        finally:
            await session.close()
    slow, fast = asyncio.run(go())
    assert (slow.code, slow.body, fast.code, fast.body) == ("OK", b"ok", "OK", b"ok"), (slow, fast)


def test_a_reconnect_opens_one_connection_whatever_calls_arrive_meanwhile():
    """The first connection is closed by the server after its first reply. A call that comes while another
    is reconnecting waits for that connection and uses it: no second connection, none left open at close."""
    from netaudit.transport import h2wire
    from netaudit.transport.rpc import H2cLink

    async def go():
        accepted: list[asyncio.StreamWriter] = []
        server, port = await _raw_h2_server(
            lambda stream: h2wire.frame(h2wire.HEADERS, h2wire.END_HEADERS | h2wire.END_STREAM, stream,
                                     b"\x88" + h2wire.literal(b"grpc-status", b"12")), accepted, first_closes=True)
        link = H2cLink("127.0.0.1", port, f"127.0.0.1:{port}")
        session = RpcSession(f"127.0.0.1:{port}", timeout=2.0, link=link)
        try:
            assert await session.ready()
            first = await session.unary("/a.B/C")
            while link.connection.usable:
                await asyncio.sleep(0.01)
            reconnecting = asyncio.ensure_future(session.unary("/a.B/C"))
            while link.connection is not None:  # the reconnect is under way
                await asyncio.sleep(0)
            meanwhile = await session.unary("/a.B/C")
            replies = [first, await reconnecting, meanwhile]
        finally:
            await session.close()
        await asyncio.sleep(0.1)
        server.close()
        return [r.code for r in replies], len(accepted), [w.transport.is_closing() for w in accepted]
    codes, accepted, closed = asyncio.run(go())
    assert codes == ["UNIMPLEMENTED"] * 3
    assert accepted == 2 and all(closed), (accepted, closed)


def test_header_blocks_are_cut_by_what_they_decode_to():
    """HPACK decoding costs by the fields a block decodes to, not by its bytes: a 1 KB block of 1-byte
    fields is a thousand header fields. A server sending such blocks (on a stream never opened) is cut long
    before its 4 MiB of inbound bytes, which took seconds of CPU to decode."""
    from netaudit.transport import h2c, h2wire

    async def go():
        release = asyncio.Event()

        heavy = h2wire.frame(h2wire.HEADERS, h2wire.END_HEADERS, 3, b"\x88" * 1000) * 64
        flood = _flooder(heavy, h2c.INBOUND_MAX // len(heavy), release)

        server = await asyncio.start_server(flood, "127.0.0.1", 0)
        connection = await h2c.H2cConnection.open("127.0.0.1", server.sockets[0].getsockname()[1], "x", 2.0)
        try:
            for _ in range(600):
                if connection.lost:
                    break
                await asyncio.sleep(0.05)
            return connection.lost, connection.inbound
        finally:
            await connection.close()
            release.set()
            server.close()
    lost, inbound = asyncio.run(go())
    assert lost and lost.startswith("connection cut: the server's header blocks decoded to more than"), lost
    assert inbound < h2c.INBOUND_MAX // 8, inbound
