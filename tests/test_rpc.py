"""The RPC session on a slow peer: a reply that misses its deadline is asked for again (--retries), and a
port that refuses is not waited on. Against a real grpcio server on a loopback port of the test's own."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent import futures

import grpc
import pytest

from netaudit.probes.grpc_generic import HEALTH_CHECK
from netaudit.rpc import RpcSession


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
