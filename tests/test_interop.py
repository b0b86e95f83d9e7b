"""netaudit with nmap, masscan and zmap: the exported nmap probes run by Debian's nmap against the lab's
real TF servers, and real masscan, zmap and nmap output fed back as targets."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest

from netaudit import nmap_probes
from netaudit.discovery import parse_nmap_xml
from netaudit.probes import modelserver_grpc, tf_runtime
from netaudit.probes.safety import DO_NOT_CALL, EMPTY_ONLY, MALFORMED, UnsafeCall, check_call

from conftest import require_root_tools, run_cli

STOCK = Path("/usr/share/nmap/nmap-service-probes")
MODEL = "netaudit-probe-0123456789ab"


def nmap_unescape(body: str) -> bytes:
    """A probe string as nmap's cstring_unescape reads it: only \\\\ \\0 \\n \\r \\t \\xHH; anything else fails."""
    out, i = bytearray(), 0
    simple = {"\\": 0x5C, "0": 0, "n": 0x0A, "r": 0x0D, "t": 0x09}
    while i < len(body):
        if body[i] != "\\":
            out.append(ord(body[i]))
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in simple:
            out.append(simple[nxt])
            i += 2
        elif nxt == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", body[i + 2:i + 4]):
            out.append(int(body[i + 2:i + 4], 16))
            i += 4
        else:
            raise AssertionError(f"nmap rejects the escape \\{nxt}")
    return bytes(out)


def probe_lines(text: str) -> dict[str, bytes]:
    probes = {}
    for line in text.splitlines():
        m = re.fullmatch(r"Probe TCP (\S+) q\|(.*)\|", line)
        if m:
            assert "|" not in m[2], "the delimiter must be written \\x7c"
            probes[m[1]] = nmap_unescape(m[2])
    return probes


def h2_server_view(payload: bytes) -> tuple[dict[str, str], bytes, bool]:
    """What a real HTTP/2 server stack (the h2 package) reads from a probe: headers, body, END_STREAM."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="ascii"))
    conn.initiate_connection()
    headers, body, ended = {}, b"", False
    for event in conn.receive_data(payload):
        if isinstance(event, h2.events.RequestReceived):
            headers = dict(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            body += event.data
        elif isinstance(event, h2.events.StreamEnded):
            ended = True
    return headers, body, ended


# ---- the HTTP/2 bytes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", [4, 5, 6, 7])
def test_hpack_integers_round_trip_across_the_prefix_boundary(prefix):
    for value in (0, 1, (1 << prefix) - 2, (1 << prefix) - 1, 1 << prefix, 127, 128, 300, 16383, 70000):
        encoded = nmap_probes.hpack_int(value, prefix)
        assert nmap_probes._hpack_int_at(encoded, 0, prefix) == (value, len(encoded))


def test_grpc_request_is_what_a_real_http2_server_reads():
    payload = nmap_probes.grpc_request(modelserver_grpc.MODEL_STATUS, modelserver_grpc.model_spec(MODEL))
    headers, body, ended = h2_server_view(payload)
    assert headers == {":method": "POST", ":scheme": "http", ":path": modelserver_grpc.MODEL_STATUS,
                       ":authority": nmap_probes.AUTHORITY, "content-type": "application/grpc", "te": "trailers"}
    message = modelserver_grpc.model_spec(MODEL)
    assert body == b"\x00" + len(message).to_bytes(4, "big") + message and ended
    assert nmap_probes.decode_grpc_request(payload) == (modelserver_grpc.MODEL_STATUS, message)
    assert MODEL.encode() in payload  # no Huffman coding: the strings travel as they are


def test_long_paths_use_multi_byte_lengths_and_still_decode():
    method = "/" + "x" * 300 + "/Method"
    payload = nmap_probes.grpc_request(method, b"")
    assert h2_server_view(payload)[0][":path"] == method
    assert nmap_probes.decode_grpc_request(payload) == (method, b"")


def test_decoder_refuses_what_it_did_not_write():
    good = nmap_probes.grpc_request("/a.B/C", b"")
    for bad in (good[:-3], good.replace(nmap_probes.PREFACE, b"GET / HTTP/1.1\r\n\r\n"), nmap_probes.PREFACE):
        with pytest.raises(nmap_probes.H2DecodeError):
            nmap_probes.decode_grpc_request(bad)


# ---- the probe file --------------------------------------------------------------------------------------

def test_every_probe_request_passes_the_safety_check():
    text = nmap_probes.export(model=MODEL)
    grpc_calls = []
    for name, payload in probe_lines(text).items():
        if name == "NULL":
            assert payload == b""
        elif payload.startswith(nmap_probes.PREFACE):
            path, message = nmap_probes.decode_grpc_request(payload)
            headers, body, _ = h2_server_view(payload)
            assert headers[":path"] == path and body[5:] == message
            check_call(path, message)
            grpc_calls.append(path)
        else:
            assert payload.startswith(b"GET ") and b"\r\n\r\n" in payload  # REST: one read-only GET
    assert sorted(grpc_calls) == sorted([modelserver_grpc.MODEL_STATUS, "/tensorflow.WorkerService/GetStatus"])


def test_an_unsafe_probe_is_refused_before_it_is_written():
    method = next(iter(sorted(DO_NOT_CALL)))
    unsafe = nmap_probes.NmapProbe("Bad", nmap_probes.grpc_request(method, b""), (nmap_probes.GRPC_ANY,), "unsafe")
    with pytest.raises(UnsafeCall):
        nmap_probes.render((unsafe,), True, (2222,))
    reload_with_config = nmap_probes.grpc_request(sorted(EMPTY_ONLY)[0], b"\x0a\x00")
    with pytest.raises(UnsafeCall):
        check_call(*nmap_probes.decode_grpc_request(reload_with_config))
    malformed = nmap_probes.NmapProbe("Ok", nmap_probes.grpc_request(method, MALFORMED), (nmap_probes.GRPC_ANY,), "")
    assert "Probe TCP Ok" in nmap_probes.render((malformed,), True, (2222,))


def test_probe_file_follows_nmaps_syntax_rules():
    text = nmap_probes.export(model=MODEL)
    lines = text.splitlines()
    assert lines.count(nmap_probes.STOCK_NULL_PROBE) == 1
    assert all(len(line.encode()) < 8192 for line in lines)
    assert all(1 <= int(line.split()[1]) <= 9 for line in lines if line.startswith("rarity "))
    assert all(100 <= int(line.split()[1]) <= 300000 for line in lines if line.startswith("totalwaitms "))
    patterns = [re.match(r"(?:soft)?match \S+ m(.)(.*?)\1([is]*)", line) for line in lines if "match " in line[:10]]
    assert len(patterns) >= 5
    for m in patterns:
        assert not m[2].startswith(("^", "\\A")), "the first probe keeps the NULL probe's bytes: no anchors"
        assert re.search(m[2].encode("latin-1"), b"") is None
    assert len(probe_lines(text)) == 4  # NULL and three netaudit probes
    assert MODEL in text and nmap_probes.export() != nmap_probes.export()  # a fresh random model name each time


def test_device_regex_is_tf_runtimes_own():
    pattern, groups = nmap_probes.device_pattern()
    name = "/job:worker/replica:0/task:3/device:CPU:0"
    assert tf_runtime.DEVICE_NAME.match(name)
    m = re.search(pattern, "\x12junk" + name + "\x12\x03CPU")
    assert (m[groups["job"]], m[groups["replica"]], m[groups["task"]]) == ("worker", "0", "3")


def test_with_stock_keeps_the_stock_file_and_refuses_a_second_append(tmp_path):
    if not STOCK.exists():
        pytest.skip("nmap's stock nmap-service-probes is not installed (apt install nmap)")
    out = tmp_path / "all-probes"
    proc = run_cli("export", "nmap-probes", "--with-stock", str(STOCK), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    combined = out.read_text(encoding="latin-1")
    assert combined.startswith(STOCK.read_text(encoding="latin-1"))
    assert combined.count(nmap_probes.STOCK_NULL_PROBE) == 1
    again = run_cli("export", "nmap-probes", "--with-stock", str(out))
    assert again.returncode == 2 and "already holds netaudit probes" in again.stderr
    not_probes = run_cli("export", "nmap-probes", "--with-stock", str(tmp_path / "missing"))
    assert not_probes.returncode == 2 and len(not_probes.stderr.strip().splitlines()) == 1


# ---- Debian's nmap with the exported file against the lab ------------------------------------------------

def nmap_services(probes: Path, ports: list[int]) -> dict[int, dict[str, str]]:
    proc = subprocess.run(["nmap", "-sT", "-sV", "-n", "-Pn", "--versiondb", str(probes), "-p",
                           ",".join(map(str, ports)), "127.0.0.1", "-oX", "-"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Parse error" not in proc.stderr and "WARNING" not in proc.stderr, proc.stderr
    rows, _ = parse_nmap_xml(proc.stdout)
    return {port: service for _, port, _, _, service in rows}


@pytest.fixture(scope="module")
def nmap_bin():
    if shutil.which("nmap") is None:
        pytest.skip("nmap is not installed (.ci/run installs it)")


def test_nmap_names_tf_servers_with_the_exported_probes(nmap_bin, lab, tmp_path):
    probes = tmp_path / "netaudit-probes"
    assert run_cli("export", "nmap-probes", "-o", str(probes)).returncode == 0
    by_name = {e.name: e for e in lab.endpoints}
    tf = [e for e in lab.endpoints if e.kind == "tf-server" and e.name.startswith(("train/", "mwms/"))]
    decoys = [by_name["decoy/grpc"], by_name["decoy/http"]]
    serving = [by_name["modelserver/grpc"], by_name["modelserver/rest"]]
    services = nmap_services(probes, [e.port for e in tf + decoys + serving])
    for e in tf:
        assert services[e.port].get("product") == "TensorFlow distributed runtime gRPC", (e.name, services[e.port])
        assert services[e.port]["extrainfo"] == f"job: {e.job}; replica 0; task {e.task}"
        assert services[e.port]["name"] == "grpc" and services[e.port]["method"] == "probed"
    grpc_port, rest_port = (e.port for e in serving)
    assert (services[grpc_port]["name"], services[grpc_port]["product"]) == ("grpc", "TensorFlow Serving gRPC")
    assert (services[rest_port]["name"], services[rest_port]["product"]) == ("http", "TensorFlow Serving REST API")
    for e in decoys:
        assert "TensorFlow" not in json.dumps(services[e.port]), (e.name, services[e.port])
    assert services[by_name["decoy/grpc"].port].get("product") == "gRPC"  # named gRPC, not TF


def test_nmap_with_the_stock_probes_appended_still_names_tf(nmap_bin, lab, tmp_path):
    if not STOCK.exists():
        pytest.skip("nmap's stock nmap-service-probes is not installed (apt install nmap)")
    probes = tmp_path / "all-probes"
    assert run_cli("export", "nmap-probes", "--with-stock", str(STOCK), "-o", str(probes)).returncode == 0
    by_name = {e.name: e for e in lab.endpoints}
    worker, grpc_ep = by_name["train/worker:1"], by_name["modelserver/grpc"]
    services = nmap_services(probes, [worker.port, grpc_ep.port])
    assert services[worker.port].get("extrainfo") == f"job: worker; replica 0; task {worker.task}"
    assert services[grpc_ep.port].get("product") == "TensorFlow Serving gRPC"
