"""Every parser of server bytes, fed arbitrary bytes: a result or that parser's own typed error, nothing
else, within the hypothesis deadline. The CI profile runs 200 examples per parser; the long run is
`HYPOTHESIS_PROFILE=fuzz python3 -m pytest tests/test_parsers_fuzz.py` (20,000 each)."""

from __future__ import annotations

import asyncio
import json
import re
import xml.etree.ElementTree as ET

import pytest
from hypothesis import example, given, settings, strategies as st

from netaudit.core import bounds, caps
from netaudit.transport import h2c, h2wire
from netaudit.transport import httpwire
from netaudit.transport import protowire
from netaudit.discovery.nmap import parse_nmap_xml
from netaudit.targets.nmap_xml import NmapXmlError
from netaudit.core.model import Endpoint, ScanResult
from netaudit.probes.generic import grpc as grpc_generic
from netaudit.probes.tf_serving import grpc as modelserver_grpc
from netaudit.probes.tf_serving import rest as modelserver_rest
from netaudit.transport import sniff
from netaudit.probes.tf_runtime import grpc as tf_runtime
from netaudit.probes.transport import tls
from netaudit.core.textsafe import UNSAFE, terminal_safe

# Bytes that look like protobuf more often than uniform noise does: valid keys, lengths and nesting.
def _message(children):
    return st.lists(st.tuples(st.integers(1, 20), children), max_size=6).map(
        lambda fields: b"".join(protowire.field(n, v) for n, v in fields))


PROTOBUF = st.recursive(st.one_of(st.binary(max_size=64), st.integers(0, 2**64 - 1).map(protowire.encode_varint)),
                        _message, max_leaves=30)
SERVER_BYTES = st.one_of(st.binary(max_size=4096), PROTOBUF)


@given(SERVER_BYTES)
@example(b"\x0f\xff\xff")
@example(b"\x0a\xff\xff\xff\xff\x0f")
# A device name whose replica has more digits than int() converts (4300): a ValueError, not a DecodeError.
@example(protowire.field(1, protowire.field(1, "/job:w/replica:" + "1" * 5000 + "/task:0/device:CPU:0")))
def test_protobuf_decoders_give_a_result_or_decode_error(data):
    for decoder in (protowire.decode, tf_runtime.decode_devices, modelserver_grpc.decode_model_status,
                    modelserver_grpc.decode_signatures, grpc_generic.decode_service_list):
        try:
            decoder(data)
        except protowire.DecodeError:
            pass


@given(st.lists(st.binary(max_size=40), min_size=0, max_size=300))
def test_device_lists_are_capped_and_counted(names):
    body = b"".join(protowire.field(1, protowire.field(1, n)) for n in names)
    truncated: dict[str, int] = {}
    devices = tf_runtime.decode_devices(body, truncated)
    assert len(devices) == min(len(names), caps.CAPS["devices"])
    assert truncated.get("devices", 0) == len(names) - len(devices)


@given(st.binary(max_size=8192))
@example(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
@example(b"HTTP/")
@example(b"HTTP/1.1\r\n")
def test_first_bytes_sniff_gives_a_result(data):
    found = sniff._classify_reply(data, "on connect")
    assert found is None or found.protocol in ("h2", "http")
    if found and found.http_status:
        assert len(found.http_status) < caps.STRING_MAX + 40
    assert isinstance(sniff.printable(data), str)


def _read(data: bytes, method: str = "GET") -> httpwire.HttpReply:
    async def run():
        reader = asyncio.StreamReader(limit=httpwire.LINE_MAX)
        reader.feed_data(data)
        reader.feed_eof()
        return await httpwire.read_reply(reader, method)
    return asyncio.run(run())


HTTP_LIKE = st.builds(lambda status, headers, body: status + b"".join(headers) + b"\r\n" + body,
                      st.sampled_from([b"HTTP/1.1 200 OK\r\n", b"HTTP/1.0 404 \x1b[2J\r\n", b"HTTP/1.1 abc\r\n",
                                       b"HTTP/1.1 200"]),
                      st.lists(st.one_of(st.binary(max_size=80).map(lambda b: b + b"\r\n"),
                                         st.sampled_from([b"Content-Length: 5\r\n", b"Content-Length: -1\r\n",
                                                          b"Content-Length: 99999999999\r\n"])), max_size=80),
                      st.binary(max_size=256))


@given(st.one_of(st.binary(max_size=4096), HTTP_LIKE))
@example(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000)
@example(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 100)
def test_http_reply_reader_gives_a_reply_or_http_error(data):
    try:
        reply = _read(data)
    except httpwire.HttpError:
        return
    assert 100 <= reply.status <= 999
    assert len(reply.headers) <= caps.HEADERS_MAX and len(reply.body) <= httpwire.MAX_BODY
    assert all(len(v) <= caps.HEADER_VALUE_MAX + 40 for v in reply.headers.values())


@given(st.one_of(st.text(max_size=4096), st.lists(st.text(max_size=30), max_size=200).map(
    lambda names: "".join(f':tensorflow:x{{model_name="{n}"}} 1\nmodel_path="/m/{n}/1"\n' for n in names))))
def test_metrics_parser_gives_bounded_names(text):
    truncated: dict[str, int] = {}
    names = modelserver_rest.names_in_metrics(text, truncated)
    assert len(names) <= caps.CAPS["metrics_model_names"]


@given(st.one_of(st.binary(max_size=2048), st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
    lambda kids: st.one_of(st.lists(kids, max_size=5), st.dictionaries(st.text(max_size=10), kids, max_size=5)),
    max_leaves=40).map(lambda v: json.dumps(v).encode())))
@example(b"[" * 100_000)
def test_json_bodies_give_a_value_or_value_error(data):
    try:
        modelserver_rest.parse_json(data)
    except ValueError:
        pass


NMAP_XML = st.builds(
    lambda addr, ports: (f'<nmaprun><host><address addr="{addr}" addrtype="ipv4"/><ports>'
                         + "".join(f'<port protocol="tcp" portid="{p}"><state state="{s}" reason="{r}"/>'
                                   f'<service name="{n}"/></port>' for p, s, r, n in ports)
                         + "</ports></host></nmaprun>").encode(),
    st.text(alphabet="0123456789.", max_size=15),
    st.lists(st.tuples(st.text(alphabet="0123456789x-", max_size=6), st.sampled_from(["open", "closed", "filtered"]),
                       st.text(max_size=10).map(lambda t: t.replace("<", "").replace("&", "").replace('"', "")),
                       st.text(max_size=10).map(lambda t: t.replace("<", "").replace("&", "").replace('"', ""))),
             max_size=5))


@given(st.one_of(st.binary(max_size=2048), NMAP_XML))
@example(b'<nmaprun><host><ports><port portid="1"/></ports></host></nmaprun>')
@example(b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
         b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><nmaprun>&c;</nmaprun>')
def test_nmap_xml_reader_gives_rows_or_nmap_xml_error(data):
    try:
        rows, extra = parse_nmap_xml(data)
    except NmapXmlError:
        return
    assert all(isinstance(row.port, int) for row in rows)


@pytest.fixture(scope="module")
def leaf_der(tmp_path_factory) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from netaudit.lab.certs import LabCA

    cert, _ = LabCA(tmp_path_factory.mktemp("pki")).issue("leaf", "\x1b]0;x\x07\u202e")
    return x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(Encoding.DER)


@given(data=st.data())
def test_tls_leaf_facts_give_facts_or_certificate_error(leaf_der, data):
    """Arbitrary bytes, and a real certificate with bytes flipped, so parsing gets past the outer DER."""
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(leaf_der) - 1), st.integers(0, 255)), max_size=4))
    der = bytearray(leaf_der)
    for index, value in flips:
        der[index] = value
    for blob in (bytes(der), data.draw(st.binary(max_size=512))):
        try:
            facts = tls.leaf_facts(blob, "127.0.0.1", None)
        except tls.CertificateError:
            continue
        assert isinstance(facts["certificate"]["subject"], str)


@given(st.text())
@example("\x1b]0;pwned\x07\x1b[2J\r\n\u202eevil\u2066\x7f\x9b")
def test_terminal_safe_leaves_no_control_character(text):
    shown = terminal_safe(text)
    assert UNSAFE.search(shown) is None
    assert terminal_safe(shown) == shown


DETAILS = st.recursive(st.one_of(st.text(max_size=300), st.integers(), st.none()),
                       lambda kids: st.one_of(st.lists(kids, max_size=40),
                                              st.dictionaries(st.sampled_from(["models", "signatures", "inputs", "x", "y"])
                                                              | st.text(max_size=20), kids, max_size=40)),
                       max_leaves=400)


@given(st.dictionaries(st.text(max_size=20), DETAILS, max_size=10), st.lists(st.text(max_size=2000), max_size=200))
@example({}, ["\U0001F600" * 400] * 15)  # evidence lines keep 400 characters; an emoji is 12 bytes of JSON
@example({"x": ["\U0001F600" * 100] * 40, **{f"y{n}": "\U0001F600" * 200 for n in range(11)}, "z": "a" * 200},
         ["b" * 101])  # cut to fit within 13 bytes: details["truncated"]'s own key must count
def test_one_endpoint_json_stays_under_64_kib(details, evidence):
    endpoint = Endpoint("127.0.0.1", 1, "open", "unknown", details=details, evidence=evidence)
    bounds.bound_endpoint(endpoint)
    assert len(json.dumps(endpoint.to_dict())) < caps.ENDPOINT_JSON_MAX


@given(DETAILS, st.integers(min_value=0, max_value=4096))
def test_json_size_is_exact_below_its_budget_and_stops_past_it(value, budget):
    """The size check counts instead of encoding; below the budget it must agree with json.dumps byte for
    byte, and past it it may stop early but never report a fit."""
    size, real = bounds._json_size(value, budget), len(json.dumps(value))
    assert size == real if real <= budget else size > budget


@given(st.text(max_size=200), st.text(max_size=200))
def test_junit_and_prom_stay_valid_for_any_server_text(title, evidence):
    from prometheus_client.parser import text_string_to_metric_families

    from netaudit.outputs.exports import to_junit, to_prom
    from netaudit.core.model import Finding

    result = ScanResult(vantage=title, started="2025-01-01T00:00:00Z", finished="2025-01-01T00:00:01Z", complete=True)
    result.endpoints = [Endpoint("127.0.0.1", 2222, "open", "tf-server", details={"banner": title}, evidence=[evidence])]
    result.findings = [Finding(title, "high", "127.0.0.1", 2222, title, [evidence], evidence, [])]
    ET.fromstring(to_junit(result))
    families = {f.name: f for f in text_string_to_metric_families(to_prom(result))}
    assert {s.labels["vantage"] for s in families["netaudit_scan_complete"].samples} == {title or "-"}
    assert re.fullmatch(r"[\s\S]*", to_junit(result))


# ---- the scanner's own HTTP/2 client (netaudit/transport/h2c.py) --------------------------------------------------

class _Sent:
    """Our side of the connection: what the client wrote is kept, nothing is sent anywhere."""

    def __init__(self):
        self.data, self.closed = bytearray(), False
        self.transport = self

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True

    abort = close

    def is_closing(self) -> bool:
        return self.closed


def _block(fields: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(h2wire.literal(name, value) for name, value in fields)


H2_FRAMES = st.lists(st.tuples(
    st.sampled_from([h2wire.DATA, h2wire.HEADERS, h2wire.RST_STREAM, h2wire.SETTINGS, h2wire.PUSH_PROMISE, h2wire.PING, h2wire.GOAWAY,
                     h2wire.WINDOW_UPDATE, h2wire.CONTINUATION, 0x2, 0xFA]),
    st.integers(0, 255), st.sampled_from([0, 1, 3, 2**31 - 1]),
    st.one_of(st.binary(max_size=64), st.just(_block([(b":status", b"200"), (b"grpc-status", b"0")])),
              st.just(_block([(b":status", b"404")])), st.just(b"\x00\x00\x00\x00\x02\x08\x01")),
), max_size=12).map(lambda frames: b"".join(h2wire.frame(*f) for f in frames))


async def _answer_to(server_bytes: bytes, chunks: int = 1, deadline: float = 0.5) -> h2c.Answer:
    reader = asyncio.StreamReader()
    connection = h2c.H2cConnection(reader, _Sent(), "192.0.2.1:2222")
    call = asyncio.ensure_future(connection.call("/a.B/C", b"", deadline))
    await asyncio.sleep(0)
    step = max(1, len(server_bytes) // chunks)
    for start in range(0, len(server_bytes), step):
        reader.feed_data(server_bytes[start:start + step])
        await asyncio.sleep(0)
    reader.feed_eof()
    try:
        return await call
    finally:
        await connection.close()


@given(st.one_of(st.binary(max_size=2048), H2_FRAMES), st.integers(1, 4))
@example(h2wire.frame(h2wire.HEADERS, h2wire.END_HEADERS, 1, _block([(b":status", b"\xb2")])), 1)
def test_any_server_bytes_give_the_call_a_grpc_answer(server_bytes, chunks):
    """Whatever the server sends, in whatever pieces, the call ends with a gRPC code: no exception, no hang."""
    answer = asyncio.run(_answer_to(server_bytes, chunks))
    assert answer.code in h2wire.GRPC_CODES


def test_a_reply_in_pieces_with_padding_and_continuation_is_read():
    headers = _block([(b":status", b"200"), (b"content-type", b"application/grpc")])
    trailers = _block([(b"grpc-status", b"5"), (b"grpc-message", b"not%20here")])
    reply = (h2wire.frame(h2wire.SETTINGS, 0, 0, b"") + h2wire.frame(h2wire.PING, 0, 0, b"8 bytes!")
             + h2wire.frame(h2wire.HEADERS, h2wire.PADDED, 1, b"\x03" + headers[:5] + b"pad")
             + h2wire.frame(h2wire.CONTINUATION, h2wire.END_HEADERS, 1, headers[5:])
             + h2wire.frame(h2wire.HEADERS, h2wire.END_HEADERS | h2wire.END_STREAM, 1, trailers))
    assert asyncio.run(_answer_to(reply, chunks=7)) == h2c.Answer("NOT_FOUND", "not here")
    body = b"\x00\x00\x00\x00\x03abc"
    ok = (h2wire.frame(h2wire.SETTINGS, 0, 0, b"") + h2wire.frame(h2wire.HEADERS, h2wire.END_HEADERS, 1, headers)
          + h2wire.frame(h2wire.DATA, 0, 1, body)
          + h2wire.frame(h2wire.HEADERS, h2wire.END_HEADERS | h2wire.END_STREAM, 1, _block([(b"grpc-status", b"0")])))
    assert asyncio.run(_answer_to(ok, chunks=3)) == h2c.Answer("OK", "", b"abc")


def test_a_flood_is_cut_at_the_inbound_limit():
    ping = h2wire.frame(h2wire.PING, 0, 0, b"8 bytes!")
    flood = ping * (h2c.INBOUND_MAX // len(ping) + 2)
    # A deadline the parse of 4 MiB never meets, even on a slow shared core (0.58 s measured at 0.5 s).
    answer = asyncio.run(_answer_to(flood, chunks=64, deadline=60))
    assert answer.code == "UNAVAILABLE" and answer.details.startswith("connection cut: the server sent more than")


@given(DETAILS | st.text(alphabet=st.characters(), max_size=300) | st.integers() | st.floats()
       | st.tuples(st.text(max_size=300), st.lists(st.text(max_size=300), max_size=20)))
def test_the_clipped_size_bound_is_never_below_the_json(value):
    """bound_endpoint skips the exact count when this bound fits; it must never be smaller than the JSON."""
    clipped, bound = bounds._clip_strings(value)
    assert len(json.dumps(clipped)) <= bound


@given(st.text(alphabet="abcdefgh./", min_size=1, max_size=300), st.floats(0.001, 3600))
def test_request_headers_decode_with_pseudo_headers_first(path, timeout):
    """Strict HTTP/2 servers reset a request whose pseudo-headers follow a regular header (RFC 9113 §8.3)."""
    import hpack

    fields = hpack.Decoder().decode(h2wire.request_headers(path, "[2001:db8::1]:8500", timeout))
    names = [name for name, _ in fields]
    assert names[:4] == [":method", ":scheme", ":path", ":authority"]
    assert not any(name.startswith(":") for name in names[4:])
    assert dict(fields)[":path"] == path and dict(fields)["grpc-timeout"].endswith("m")


HEADER = st.tuples(st.sampled_from(["grpc-status", "grpc-message", "content-type", ":status", "x-a", "X-B"]),
                   st.text(alphabet="abc 09%/", max_size=40))
BLOCK = st.one_of(st.lists(HEADER, max_size=4).map(lambda fields: ("headers", fields)),
                  st.binary(max_size=12).map(lambda junk: ("junk", junk)))


@given(st.lists(st.lists(BLOCK, min_size=1, max_size=4), min_size=1, max_size=6), st.integers(0, 3))
@settings(max_examples=300, deadline=None)
def test_remembered_header_blocks_decode_as_a_fresh_decoder_would(connections, shared):
    """HeaderDecoder answers blocks seen before from the memo: each connection must still read what its own
    hpack decoder reads, and fail where it fails, whatever earlier connections taught the memo."""
    import hpack

    h2wire._memo.clear()
    prefix = connections[0][:shared]
    for blocks in connections:
        encoder, mine = hpack.Encoder(), h2wire.HeaderDecoder()
        fresh = hpack.Decoder(max_header_list_size=h2wire.HEADER_BLOCK_MAX)
        for what, content in prefix + blocks:  # connections often start the same way, as one server's do
            block = encoder.encode(content) if what == "headers" else content
            try:
                expected = tuple((n.decode("latin-1").lower(), v.decode("latin-1"))
                                 for n, v in fresh.decode(block, raw=True))
            except (hpack.exceptions.HPACKError, ValueError, IndexError):
                with pytest.raises((hpack.exceptions.HPACKError, ValueError, IndexError)):
                    mine.decode(block)
                break
            assert mine.decode(block) == expected


def test_the_header_memo_stays_small_whatever_blocks_decode_to():
    """A short block can decode to far more than it is: one byte names a dynamic-table entry of 4 KB, a
    1 KB block holds a thousand fields. The memo lives for the whole scan, so what it keeps per entry must
    stay near what real replies need, however many entries one hostile server fills it with."""
    import tracemalloc

    expanding = b"\x40" + h2wire.hpack_int(1, 7) + b"a" + h2wire.hpack_int(4000, 7) + b"v" * 4000
    resize = b"\x3f\xe1\x1f"  # a dynamic table size update (to 4096), allowed again and again at a block's start
    for setup, block in ((expanding, b"\xbe" * 16), (b"", b"\x88" * h2wire.MEMO_BLOCK_MAX),
                         (b"", resize * 333 + b"\x88" * 24)):
        h2wire._memo.clear()
        decoder = h2wire.HeaderDecoder()
        if setup:
            decoder.decode(setup)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(200):
                decoder.decode(bytes(bytearray(block)))  # a block of its own, as each frame's is
            per_entry = (tracemalloc.get_traced_memory()[0] - before) / 200
        finally:
            tracemalloc.stop()
        assert per_entry * h2wire.MEMO_ENTRIES_MAX < 32 << 20, f"{per_entry:,.0f} bytes per remembered block"
    h2wire._memo.clear()


def test_a_connection_replaying_remembered_blocks_keeps_a_bounded_path():
    """Blocks answered from the memo are kept to replay into a real decoder at the first miss; a server
    that taught the memo a long path must not make every later connection hold all of it."""
    h2wire._memo.clear()
    blocks = [h2wire.literal(b"x-n", b"%04d" % n + b"v" * 900) for n in range(1000)]
    teacher = h2wire.HeaderDecoder()
    for block in blocks:
        teacher.decode(block)
    learner = h2wire.HeaderDecoder()
    for block in blocks:
        learner.decode(block)
    assert sum(map(len, learner.seen)) <= 64 * 1024
    h2wire._memo.clear()
