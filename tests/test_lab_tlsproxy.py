"""The lab's TLS proxy relays both directions at once on many connections, as a scan's gRPC calls do.

Its first form read each SSLSocket in one thread while another wrote it; once in a CI scan OpenSSL's
state raced and the proxy died of heap corruption, taking its endpoint out of the report. That race is
rare (5,000 connections here did not hit it), so this test does not reproduce it: it holds the
single-threaded relay that replaced the threads to the same full-duplex load, TLS 1.3, TLS 1.0 and
--dual's plaintext.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator

import pytest

from netaudit.lab.base import Lab
from netaudit.lab.certs import LabCA
from netaudit.lab.processes import alive, free_port, log_tail, module_argv, spawn, wait_ready

CONNECTIONS = 24
PAYLOAD = 1 << 20  # per connection and direction, so that reads and writes overlap for a while


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, done: list[int]) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
    done.append(1)


async def round_trip(port: int, client_tls: ssl.SSLContext | None, seed: int) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_tls,
                                                   server_hostname="localhost" if client_tls else None)
    # Not random from the first byte: --dual takes a first byte of 0x16 for a TLS handshake, as it should.
    sent = b"plaintext " + os.urandom(16) * (PAYLOAD // 16) + seed.to_bytes(4, "big")

    async def send() -> None:
        for start in range(0, len(sent), 16384):
            writer.write(sent[start:start + 16384])
            await writer.drain()

    async with asyncio.timeout(60), asyncio.TaskGroup() as both:  # a failure cancels the other direction
        received = both.create_task(reader.readexactly(len(sent)))
        both.create_task(send())
    writer.close()
    await writer.wait_closed()
    return received.result() == sent


def client_contexts(ca: LabCA, proxy: str) -> list[ssl.SSLContext | None]:
    """TLS 1.3 always; TLS 1.0 for the --legacy proxy; plaintext (None) for the --dual one."""
    modern = ssl.create_default_context(cafile=str(ca.cert_path))
    if proxy == "--dual":
        return [modern, None]
    legacy = ssl.create_default_context(cafile=str(ca.cert_path))
    legacy.minimum_version = legacy.maximum_version = ssl.TLSVersion.TLSv1
    legacy.set_ciphers("DEFAULT:@SECLEVEL=0")
    return [modern, legacy]


@asynccontextmanager
async def proxy_before_echo(tmp_path, flag: str) -> AsyncIterator[tuple[int, LabCA, list[int]]]:
    """(proxy port, its CA, one entry per finished backend connection): a real tlsproxy process in front of
    an echo server on a loopback port of the test's own."""
    ca = LabCA(tmp_path / "pki")
    cert, key = ca.issue("server", "localhost")
    echoed: list[int] = []
    backend = await asyncio.start_server(lambda r, w: echo(r, w, echoed), "127.0.0.1", 0)
    port = free_port()
    lab = Lab(tmp_path)
    lab.processes = [spawn("tls-proxy", module_argv("netaudit.lab.tlsproxy", "--listen", str(port), "--backend",
                                                    f"127.0.0.1:{backend.sockets[0].getsockname()[1]}",
                                                    "--cert", str(cert), "--key", str(key), flag), tmp_path)]
    try:
        await asyncio.to_thread(wait_ready, lab.processes, time.monotonic() + 30)
        yield port, ca, echoed
        assert alive(lab.processes[0]), log_tail(lab.processes[0])
    finally:
        lab.down()
        backend.close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1 is deprecated:DeprecationWarning")
@pytest.mark.parametrize("proxy", ["--legacy", "--dual"])
def test_full_duplex_relay_on_many_connections(tmp_path, proxy):
    async def scenario() -> list[bool]:
        async with proxy_before_echo(tmp_path, proxy) as (port, ca, echoed):
            contexts = client_contexts(ca, proxy)
            results = await asyncio.gather(*(round_trip(port, contexts[i % len(contexts)], i)
                                             for i in range(CONNECTIONS)))
            async with asyncio.timeout(30):
                while len(echoed) < CONNECTIONS:  # the proxy passes each client's close on to the backend
                    await asyncio.sleep(0.05)
            return list(results)

    assert asyncio.run(scenario()) == [True] * CONNECTIONS


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1 is deprecated:DeprecationWarning")
def test_a_refused_handshake_is_answered_with_a_tls_alert(tmp_path):
    """A TLS server answers a ClientHello it will not take with an alert record. Scanners read the alert as
    the sign of TLS (nmap's SSLSessionReq probe); asyncio's own TLS transport closes without sending it."""
    async def scenario() -> str:
        async with proxy_before_echo(tmp_path, "--no-alpn") as (port, ca, _):
            legacy = client_contexts(ca, "--legacy")[1]
            with pytest.raises(ssl.SSLError) as refused:
                await asyncio.open_connection("127.0.0.1", port, ssl=legacy, server_hostname="localhost")
            return str(refused.value)

    assert "ALERT_PROTOCOL_VERSION" in asyncio.run(scenario())
