"""netaudit with nmap, masscan and zmap: the exported nmap probes run by Debian's nmap against the lab's
real TF servers and the neighbour families' real servers (KServe, MLServer, Triton, TensorBoard), and real
masscan, zmap and nmap output fed back as targets."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h2.config
import h2.connection
import h2.events
from hpack.hpack import encode_integer
import pytest

from netaudit.transport import h2wire
from netaudit.outputs import nmap_probes
from netaudit.core import registry
from netaudit.discovery.nmap import parse_nmap_xml
from netaudit.lab.peer_servers import triton_version
from netaudit.probes.inference_v1 import rest as inference_v1
from netaudit.probes.inference_v2 import protocol as inference_v2
from netaudit.probes.tf_serving import grpc as modelserver_grpc
from netaudit.probes.tensorboard import rest as tensorboard
from netaudit.probes.tf_runtime import grpc as tf_runtime
from netaudit.probes.base import GrpcSignature, HttpSignature
from netaudit.transport.safety import MALFORMED, UnsafeCall, check_call, check_http, do_not_call, empty_only

from conftest import require_root_tools, run_cli
from test_families import FamiliesLab

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
        encoded = h2wire.hpack_int(value, prefix)
        assert nmap_probes._hpack_int_at(encoded, 0, prefix) == (value, len(encoded))
        assert encoded == bytes(encode_integer(value, prefix))  # the hpack library's own encoder


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
    for bad in (good[:-3], good.replace(h2wire.PREFACE, b"GET / HTTP/1.1\r\n\r\n"), h2wire.PREFACE):
        with pytest.raises(nmap_probes.H2DecodeError):
            nmap_probes.decode_grpc_request(bad)


# ---- the probe file --------------------------------------------------------------------------------------

def test_every_probe_request_passes_the_safety_check():
    text = nmap_probes.export(model=MODEL)
    grpc_calls, rest_paths = [], []
    for name, payload in probe_lines(text).items():
        if name == "NULL":
            assert payload == b""
        elif payload.startswith(h2wire.PREFACE):
            path, message = nmap_probes.decode_grpc_request(payload)
            headers, body, _ = h2_server_view(payload)
            assert headers[":path"] == path and body[5:] == message
            check_call(path, message)
            grpc_calls.append(path)
        else:
            head, _, body = payload.partition(b"\r\n\r\n")
            method, path, version = head.split(b"\r\n")[0].decode().split(" ")
            assert (method, version, body) == ("GET", "HTTP/1.1", b"")  # REST: one read-only GET, nothing after it
            check_http(method, path, body)
            rest_paths.append(path)
    assert sorted(grpc_calls) == sorted([modelserver_grpc.MODEL_STATUS, "/tensorflow.WorkerService/GetStatus",
                                         inference_v2.SERVER_METADATA])
    assert sorted(rest_paths) == sorted([f"/v1/models/{MODEL}", f"/v1/models/{MODEL}", "/v2", "/data/environment"])


def test_an_unsafe_probe_is_refused_before_it_is_written():
    method = next(iter(sorted(do_not_call())))
    unsafe = nmap_probes.NmapProbe("Bad", nmap_probes.grpc_request(method, b""), (nmap_probes.GRPC_ANY,), "unsafe")
    with pytest.raises(UnsafeCall):
        nmap_probes.render((unsafe,), True)
    for request in (b"POST /v2/repository/models/m/load HTTP/1.1\r\n\r\n{}", b"DELETE /v1/models/m HTTP/1.1\r\n\r\n"):
        with pytest.raises(UnsafeCall):
            nmap_probes.render((nmap_probes.NmapProbe("Bad", request, (), "unsafe"),), True)
    reload_with_config = nmap_probes.grpc_request(sorted(empty_only())[0], b"\x0a\x00")
    with pytest.raises(UnsafeCall):
        check_call(*nmap_probes.decode_grpc_request(reload_with_config))
    malformed = nmap_probes.NmapProbe("Ok", nmap_probes.grpc_request(method, MALFORMED), (nmap_probes.GRPC_ANY,), "")
    assert "Probe TCP Ok" in nmap_probes.render((malformed,), True)


def test_probe_file_follows_nmaps_syntax_rules():
    text = nmap_probes.export(model=MODEL)
    lines = text.splitlines()
    assert lines.count(nmap_probes.STOCK_NULL_PROBE) == 1
    assert all(len(line.encode()) < 8192 for line in lines)
    assert all(1 <= int(line.split()[1]) <= 9 for line in lines if line.startswith("rarity "))
    assert all(100 <= int(line.split()[1]) <= 300000 for line in lines if line.startswith("totalwaitms "))
    patterns = [re.match(r"(?:soft)?match \S+ m(.)(.*?)\1([is]*)", line) for line in lines if "match " in line[:10]]
    assert len(patterns) >= 15
    for m in patterns:
        assert not m[2].startswith(("^", "\\A")), "the first probe keeps the NULL probe's bytes: no anchors"
        assert "^" not in m[2].replace("[^", "") and "\\A" not in m[2] and "\\Z" not in m[2] and "$" not in m[2]
        assert re.search(m[2].encode("latin-1"), b"") is None
    for line in lines:  # $N cites a group its pattern has
        m = re.match(r"match \S+ m(.)(.*?)\1s (.*)", line)
        if m:
            cited = [int(n) for n in re.findall(r"\$(\d)", m[3])]
            assert max(cited, default=0) <= re.compile(m[2].encode("latin-1")).groups, line
    assert all(0 < int(p) < 65536 for line in lines if line.startswith("ports ") for p in line[6:].split(","))
    assert len(probe_lines(text)) == 1 + len(nmap_probes.signatures()) >= 8  # NULL and every declared signature
    assert MODEL in text and nmap_probes.export() != nmap_probes.export()  # a fresh random model name each time


def test_device_regex_is_tf_runtimes_own():
    probe = next(p for p in nmap_probes.build_probes(MODEL) if p.name == "NetauditTFWorkerGetStatus")
    name = "/job:worker/replica:0/task:3/device:CPU:0"
    assert tf_runtime.DEVICE_NAME.match(name)
    m = re.search(probe.matches[0].pattern, "\x12junk" + name + "\x12\x03CPU")
    assert probe.matches[0].info == "job: $1; replica $2; task $3" and (m[1], m[2], m[3]) == ("worker", "0", "3")


def test_every_sensitive_kind_of_the_registry_has_an_nmap_probe():
    """A family added to the registry brings its module's NMAP declaration into the file; one without it
    fails here, naming the kinds nmap could not name."""
    covered = {k for sig in nmap_probes.signatures() for k in sig.kinds}
    assert set(registry.sensitive_kinds()) - covered == set()
    modules = {p.qualified for f in registry.families() for p in f.probes}
    assert {sig.name for sig in nmap_probes.signatures()} == {
        sig.name for m in modules for sig in getattr(__import__(m, fromlist=["x"]), "NMAP", ())}
    assert {"TensorBoardEnvironment", "KServeV1REST", "InferenceV2REST", "InferenceV2ServerMetadata"} <= {
        sig.name for sig in nmap_probes.signatures()}


def test_signatures_are_built_from_the_modules_constants():
    by_name = {sig.name: sig for sig in nmap_probes.signatures()}
    v1, v2_rest, v2_grpc, tb = (by_name[n] for n in ("KServeV1REST", "InferenceV2REST", "InferenceV2ServerMetadata",
                                                      "TensorBoardEnvironment"))
    assert isinstance(v1, HttpSignature) and v1.path == inference_v1.UNKNOWN_MODEL_PATH
    assert ("server", inference_v1.SERVER_HEADER) in v1.headers and v1.status == inference_v1.UNKNOWN_MODEL_STATUS
    probe = nmap_probes.http_probe(v1, MODEL)
    body = inference_v1.UNKNOWN_MODEL_BODY.format(name=MODEL)
    reply = f"HTTP/1.1 404 Not Found\r\nserver: uvicorn\r\ncontent-type: application/json\r\n\r\n{body}"
    assert re.search(probe.matches[0].pattern, reply, re.S)
    assert not re.search(probe.matches[0].pattern, reply.replace(MODEL, "other-name"), re.S)
    assert not re.search(probe.matches[0].pattern, reply.replace("server: uvicorn", "server: nginx"), re.S)
    assert isinstance(v2_grpc, GrpcSignature) and v2_grpc.method == inference_v2.SERVER_METADATA
    assert {m.product for m in v2_rest.namings} == {*inference_v2.PRODUCT_LABELS.values(), "{name}"}
    assert tb.path == tensorboard.ENVIRONMENT[1]


def test_a_v2_reply_message_is_named_by_the_grpc_match():
    """The bytes a real protobuf encoder writes for ServerMetadataResponse, framed as a gRPC DATA frame."""
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    probe = next(p for p in nmap_probes.build_probes(MODEL) if p.name == "NetauditInferenceV2ServerMetadata")
    for name, product in (("triton", "NVIDIA Triton Inference Server"), ("acme-infer", "$1")):
        message = pb.ServerMetadataResponse(name=name, version="2.51.0", extensions=["a"]).SerializeToString()
        frame = h2wire.frame(h2wire.DATA, 0, 1, h2wire.grpc_message(message))
        buffer = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" + frame + b"\x00\x00\x10\x01\x05\x00\x00\x00\x01grpc-status\x010"
        hit = next(m for m in probe.matches if re.search(m.pattern.encode("latin-1"), buffer, re.S))
        found = re.search(hit.pattern.encode("latin-1"), buffer, re.S)
        assert hit.product == product and hit.version == "$2" and found[2] == b"2.51.0" and found[1] == name.encode()


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
    return {row.port: dict(row.service) for row in rows}


@pytest.fixture(scope="module")
def nmap_bin():
    if shutil.which("nmap") is None:
        pytest.skip("nmap is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def nmap_modelserver(lab, tmp_path_factory):
    """A ModelServer of its own for nmap, serving the lab's models: `nmap -sV` also runs nmap's version NSE
    scripts (vmware-version POSTs /sdk to any HTTP port), which must not reach the lab ModelServer whose
    audit log test_modelserver checks for read-only requests."""
    import time

    from netaudit.lab.modelserver_launch import ModelServerSpec, start_modelserver
    from netaudit.lab.processes import free_port, stop, wait_ready

    spec = ModelServerSpec(free_port(), free_port(), lab.dir / "models" / "models.config")
    proc, _ = start_modelserver("nmap-modelserver", spec, tmp_path_factory.mktemp("nmap-modelserver"))
    try:
        wait_ready([proc], time.monotonic() + 180)
        yield spec
    finally:
        stop([proc])


def test_nmap_names_tf_servers_with_the_exported_probes(nmap_bin, lab, nmap_modelserver, tmp_path):
    probes = tmp_path / "netaudit-probes"
    assert run_cli("export", "nmap-probes", "-o", str(probes)).returncode == 0
    by_name = {e.name: e for e in lab.endpoints}
    tf = [e for e in lab.endpoints if e.kind == "tf-server" and e.name.startswith(("train/", "mwms/"))]
    decoys = [by_name["decoy/grpc"], by_name["decoy/http"]]
    grpc_port, rest_port = nmap_modelserver.grpc_port, nmap_modelserver.rest_port
    services = nmap_services(probes, [e.port for e in tf + decoys] + [grpc_port, rest_port])
    for e in tf:
        assert services[e.port].get("product") == "TensorFlow distributed runtime gRPC", (e.name, services[e.port])
        assert services[e.port]["extrainfo"] == f"job: {e.job}; replica 0; task {e.task}"
        assert services[e.port]["name"] == "grpc" and services[e.port]["method"] == "probed"
    assert (services[grpc_port]["name"], services[grpc_port]["product"]) == ("grpc", "TensorFlow Serving gRPC")
    assert (services[rest_port]["name"], services[rest_port]["product"]) == ("http", "TensorFlow Serving REST API")
    for e in decoys:
        assert "TensorFlow" not in json.dumps(services[e.port]), (e.name, services[e.port])
    assert services[by_name["decoy/grpc"].port].get("product") == "gRPC"  # named gRPC, not TF


def test_nmap_with_the_stock_probes_appended_still_names_tf(nmap_bin, lab, nmap_modelserver, tmp_path):
    if not STOCK.exists():
        pytest.skip("nmap's stock nmap-service-probes is not installed (apt install nmap)")
    probes = tmp_path / "all-probes"
    assert run_cli("export", "nmap-probes", "--with-stock", str(STOCK), "-o", str(probes)).returncode == 0
    by_name = {e.name: e for e in lab.endpoints}
    worker, behind_tls, grpc_port = by_name["train/worker:1"], by_name["tls/expired"], nmap_modelserver.grpc_port
    services = nmap_services(probes, [worker.port, grpc_port, behind_tls.port])
    assert services[worker.port].get("extrainfo") == f"job: worker; replica 0; task {worker.task}"
    assert services[grpc_port].get("product") == "TensorFlow Serving gRPC"
    # The stock file's SSL detection opens nmap's TLS tunnel, and the probes then run inside it.
    assert services[behind_tls.port].get("tunnel") == "ssl"
    assert services[behind_tls.port].get("extrainfo") == f"job: {behind_tls.job}; replica 0; task {behind_tls.task}"


# ---- the neighbour families, named by nmap ----------------------------------------------------------------

# How the exported file names each family's lab endpoint (nmap service, product); versions from the lab.
FAMILY_NAMES = {"tensorboard": ("http", "TensorBoard"), "kserve/rest-v2": ("http", "KServe"),
                "kserve/grpc": ("grpc", "KServe"), "mlserver/rest": ("http", "Seldon MLServer"),
                "mlserver/grpc": ("grpc", "Seldon MLServer"), "triton/rest": ("http", "NVIDIA Triton Inference Server"),
                "triton/grpc": ("grpc", "NVIDIA Triton Inference Server"),
                "modelserver/grpc": ("grpc", "TensorFlow Serving gRPC"),
                "modelserver/rest": ("http", "TensorFlow Serving REST API")}
# Servers that are none of the families: plain FastAPI, plain grpcio, the nginx-like HTTP decoy, and the
# metrics ports of MLServer (uvicorn) and Triton.
NOT_A_FAMILY = ("decoy/fastapi", "decoy/grpc", "decoy/http", "mlserver/metrics", "triton/metrics")


@pytest.fixture(scope="module")
def fam_lab(nmap_bin, tmp_path_factory):
    """A families lab of its own (KServe, MLServer, Triton where it runs, TensorBoard, the TF Serving
    stand-in, decoys): nmap -sV also runs its version NSE scripts (vmware-version POSTs /sdk to every HTTP
    port), which must not reach servers other tests read state from."""
    with FamiliesLab(tmp_path_factory.mktemp("nmap-families"), peers=True) as running:
        yield running


def family_products() -> set[str]:
    return {m.product for p in nmap_probes.build_probes(MODEL) for m in p.matches
            if m.product and "$" not in m.product and m.product != "gRPC"}


def test_nmap_names_every_family_with_the_exported_probes(fam_lab, tmp_path):
    probes = tmp_path / "netaudit-probes"
    assert run_cli("export", "nmap-probes", "-o", str(probes)).returncode == 0
    by_name = {e.name: e for e in fam_lab.endpoints}
    services = nmap_services(probes, sorted({by_name[n].port for n in (*FAMILY_NAMES, *NOT_A_FAMILY) if n in by_name}))
    triton = next((p for p in fam_lab.processes if p.name == "triton"), None)
    versions = {"kserve": by_name["kserve/grpc"].facts["version"], "mlserver": by_name["mlserver/grpc"].facts["version"],
                "tensorboard": by_name["tensorboard"].facts["version"],
                "triton": triton_version(triton) if triton else None}
    for name, (service, product) in FAMILY_NAMES.items():
        if name not in by_name:
            assert name.startswith("triton/"), name  # the lab runs Triton only where its venv can be built
            continue
        seen = services[by_name[name].port]
        assert (seen.get("name"), seen.get("product")) == (service, product), (name, seen)
        assert seen.get("method") == "probed"
        family = name.split("/")[0]
        if family in versions:
            assert seen.get("version") == versions[family], (name, seen)
    assert services[by_name["tensorboard"].port]["extrainfo"] == f"logdir: {by_name['tensorboard'].facts['logdir']}"
    for name in ("kserve/rest-v2", "mlserver/rest", "triton/rest"):
        if name in by_name:
            assert services[by_name[name].port]["extrainfo"] == "Open Inference Protocol REST"
    for name in ("kserve/grpc", "mlserver/grpc", "triton/grpc"):
        if name in by_name:
            assert services[by_name[name].port]["extrainfo"] == "Open Inference Protocol gRPC"
    products = family_products()
    for name in NOT_A_FAMILY:
        if name in by_name:
            seen = services[by_name[name].port]
            assert seen.get("product") in (None, "gRPC") and seen.get("product") not in products, (name, seen)
    assert services[by_name["decoy/grpc"].port].get("product") == "gRPC"  # named gRPC, and nothing more


def test_nmap_names_kserve_v1_and_nothing_else_with_the_v1_probe(fam_lab, tmp_path):
    """On a KServe port the V2 probe (which also names the version) answers first; the V1 probe alone shows
    that KServe's V1 reply is named KServe, and that TF Serving's REST API, MLServer, Triton, TensorBoard and
    a plain FastAPI app, which share its URL layout or its server header, are not."""
    sig = next(s for s in nmap_probes.signatures() if s.name == "KServeV1REST")
    probes = tmp_path / "v1-probe"
    probes.write_text(nmap_probes.render((nmap_probes.http_probe(sig, MODEL),), True))
    by_name = {e.name: e for e in fam_lab.endpoints}
    others = [n for n in ("modelserver/rest", "mlserver/rest", "triton/rest", "tensorboard", "decoy/fastapi",
                          "decoy/http") if n in by_name]
    services = nmap_services(probes, [by_name["kserve/rest-v1"].port] + [by_name[n].port for n in others])
    assert (services[by_name["kserve/rest-v1"].port].get("product"),
            services[by_name["kserve/rest-v1"].port].get("extrainfo")) == ("KServe", "V1 REST")
    for name in others:  # servicefp (an unnamed port's fingerprint) lists the probe names, so it is left out
        named = {k: v for k, v in services[by_name[name].port].items() if k != "servicefp"}
        assert "KServe" not in json.dumps(named), (name, named)


def test_nmap_with_the_stock_probes_appended_names_a_v2_grpc_port(fam_lab, tmp_path):
    """nmap's own probes have no HTTP/2 client preface, so on a gRPC port the appended probes still decide."""
    if not STOCK.exists():
        pytest.skip("nmap's stock nmap-service-probes is not installed (apt install nmap)")
    probes = tmp_path / "all-probes"
    assert run_cli("export", "nmap-probes", "--with-stock", str(STOCK), "-o", str(probes)).returncode == 0
    by_name = {e.name: e for e in fam_lab.endpoints}
    kserve, mlserver = by_name["kserve/grpc"], by_name["mlserver/grpc"]
    services = nmap_services(probes, [kserve.port, mlserver.port])
    assert (services[kserve.port].get("product"), services[kserve.port].get("version")) == ("KServe", kserve.facts["version"])
    assert services[mlserver.port].get("product") == "Seldon MLServer"


# ---- real discovery output as targets --------------------------------------------------------------------

def scan_json(*args: str, runner=None) -> dict:
    argv = ("scan", *args, "--format", "json", "--no-history", "--timeout", "5")
    proc = runner(*argv) if runner else run_cli(*argv)
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def by_port(result: dict) -> dict[tuple[str, int], dict]:
    return {(e["host"], e["port"]): e for e in result["endpoints"]}


def test_real_nmap_xml_of_the_lab_becomes_targets(nmap_bin, lab, tmp_path):
    """nmap -oX on loopback (nmap works there; masscan and zmap do not): open ports only are fingerprinted."""
    by_name = {e.name: e for e in lab.endpoints}
    worker, decoy, serving = by_name["train/worker:0"], by_name["decoy/http"], by_name["modelserver/grpc"]
    closed = nmap_closed_port()
    xml = tmp_path / "lab.xml"
    proc = subprocess.run(["nmap", "-sT", "-n", "-Pn", "-p", f"{worker.port},{decoy.port},{serving.port},{closed}",
                           "127.0.0.1", "-oX", str(xml)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = scan_json(f"nmap:{xml}", "--scope", "127.0.0.1/32")
    found = by_port(result)
    assert set(found) == {("127.0.0.1", p) for p in (worker.port, decoy.port, serving.port)}
    assert found[("127.0.0.1", worker.port)]["kind"] == "tf-server"
    assert found[("127.0.0.1", worker.port)]["details"]["job"] == "worker"
    assert found[("127.0.0.1", serving.port)]["kind"] == "modelserver-grpc"
    assert found[("127.0.0.1", decoy.port)]["kind"] == "http"
    assert all(e["details"]["target_name"] == f"nmap:{xml}" for e in found.values())
    assert result["options"]["target_sources"] == [{"target": f"nmap:{xml}", "format": "nmap -oX", "hosts": 1,
                                                    "open_ports": 3}]
    cut = tmp_path / "killed.xml"
    cut.write_text(xml.read_text().split("<runstats>")[0])  # what a killed nmap leaves behind
    bad = run_cli("scan", f"nmap:{cut}", "--scope", "127.0.0.1/32")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "no </nmaprun>" in bad.stderr and "Traceback" not in bad.stderr


def nmap_closed_port() -> int:
    """A loopback port this test just had open and closed again: nothing listens there."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


TF_PORT, CLOSED_PORT, OTHER_PORT = 2222, 8500, 8501
OTHER_LISTENER = f"""import socket
server = socket.create_server(("0.0.0.0", {OTHER_PORT}))
print("READY", flush=True)
while True:
    server.accept()[0].close()
"""


def wait_ready(proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    import selectors
    import time

    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    while time.monotonic() < deadline:
        if sel.select(deadline - time.monotonic()) and "READY" in proc.stdout.readline():
            return
        if proc.poll() is not None:
            break
    raise AssertionError(f"{what} did not start")


@pytest.fixture(scope="module")
def veth_lab(tmp_path_factory):
    """A real TF server (python -m netaudit.lab.tf_task) on 2222 and a plain TCP listener on 8501 in a target
    namespace, reached over a veth link from a scanner namespace; 8500 is closed."""
    require_root_tools("ip", "masscan", "zmap", "nmap")
    from netaudit.lab.veth import VethLab

    out = tmp_path_factory.mktemp("discovery")
    with VethLab() as lab:
        cluster = json.dumps({"worker": [f"{lab.target_ip}:{TF_PORT}"]})
        tf = lab.target.popen(sys.executable, "-m", "netaudit.lab.tf_task", "--cluster", cluster, "--job", "worker",
                              "--task", "0", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        other = lab.target.popen(sys.executable, "-c", OTHER_LISTENER, stdout=subprocess.PIPE, text=True)
        try:
            wait_ready(tf, "the TF server")
            wait_ready(other, "the plain listener")
            yield lab, out
        finally:
            for proc in (tf, other):
                proc.kill()
                proc.wait()


def masscan(lab, out: Path, flag: str) -> Path:
    path = out / f"masscan{flag}"
    lab.scanner.run("masscan", lab.target_ip, "-p", f"{TF_PORT},{CLOSED_PORT},{OTHER_PORT}", "--rate", "1000",
                    "-e", lab.scanner_if, "--adapter-ip", lab.spare_ip, "--router-mac", lab.target_mac,
                    "--wait", "1", flag, str(path), timeout=120)
    return path


# Debian's zmap 2.1.1 aborts now and then on a /32 with this assertion before it sends anything
# (zmap/zmap#310: "I have still this issue on zmap 2.1.1. It happens sporadically", `-p 42 {IP}/32`); a
# run that aborted so is run again, a few times at most, and any other failure still fails the test.
ZMAP_ABORT = "constraint_lookup_index: Assertion"


def zmap(lab, out: Path, name: str, *fields: str, port: int = TF_PORT) -> Path:
    from netaudit.lab.netns import NetnsError

    path, blacklist = out / name, out / "zmap-blacklist.conf"
    blacklist.write_text("# nothing excluded: the default list would drop all of 198.18.0.0/15's neighbours\n")
    attempt = 0
    while True:
        attempt += 1
        try:
            lab.scanner.run("zmap", "-p", str(port), "-i", lab.scanner_if, "-S", lab.scanner_ip, "-G",
                            lab.target_mac, "-b", str(blacklist), "-r", "1000", "-c", "1", "-o", str(path), *fields,
                            f"{lab.target_ip}/32", timeout=120)
            return path
        except NetnsError as exc:
            if ZMAP_ABORT not in str(exc) or attempt == 3:
                raise
            print(f"zmap aborted (zmap/zmap#310), running it again: {str(exc).splitlines()[-1]}")


def netaudit_in(lab):
    def run(*args: str) -> subprocess.CompletedProcess:
        return lab.scanner.run(sys.executable, "-m", "netaudit", *args, check=False, timeout=300)
    return run


@pytest.mark.parametrize("flag", ["-oJ", "-oL", "-oX"])
def test_masscan_output_becomes_targets(veth_lab, flag):
    lab, out = veth_lab
    path = masscan(lab, out, flag)
    result = scan_json(f"masscan:{path}", "--scope", "198.18.200.0/24", runner=netaudit_in(lab))
    found = by_port(result)
    assert set(found) == {(lab.target_ip, TF_PORT), (lab.target_ip, OTHER_PORT)}  # 8500 was closed: not probed
    tf = found[(lab.target_ip, TF_PORT)]
    assert (tf["kind"], tf["details"]["job"], tf["details"]["task"]) == ("tf-server", "worker", 0)
    assert found[(lab.target_ip, OTHER_PORT)]["kind"] != "tf-server"
    assert result["options"]["target_sources"] == [{"target": f"masscan:{path}", "format": f"masscan {flag}",
                                                    "hosts": 1, "open_ports": 2}]
    refused = netaudit_in(lab)("scan", f"masscan:{path}", "--scope", "198.18.0.0/24")
    assert refused.returncode == 2 and "outside --scope" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_zmap_csv_and_saddr_output_become_targets(veth_lab):
    lab, out = veth_lab
    fields = ("-O", "csv", "-f", "saddr,sport,classification,success")
    csv_path = zmap(lab, out, "zmap.csv", *fields)
    rst_only = zmap(lab, out, "zmap-closed.csv", *fields, port=CLOSED_PORT)
    assert rst_only.read_text().splitlines()[1:] == [f"{lab.target_ip},{CLOSED_PORT},rst,0"]  # zmap 2.1.1 writes RSTs
    refused = netaudit_in(lab)("scan", f"zmap:{rst_only}", "--scope", "198.18.200.0/24")
    assert refused.returncode == 2 and "lists no open TCP port" in refused.stderr
    plain = zmap(lab, out, "zmap.txt")
    assert plain.read_text().split() == [lab.target_ip]
    for spec, extra, fmt in ((f"zmap:{csv_path}", (), "zmap CSV"), (f"zmap:{plain}", ("-p", str(TF_PORT)), "zmap saddr lines")):
        result = scan_json(spec, *extra, "--scope", "198.18.200.0/24", runner=netaudit_in(lab))
        found = by_port(result)
        assert list(found) == [(lab.target_ip, TF_PORT)]
        assert found[(lab.target_ip, TF_PORT)]["kind"] == "tf-server"
        assert result["options"]["target_sources"][0]["format"] == fmt


def test_nmap_syn_scan_output_over_the_link_becomes_targets(veth_lab):
    lab, out = veth_lab
    xml = out / "nmap.xml"
    lab.scanner.run("nmap", "-sS", "-n", "-Pn", "-p", f"{TF_PORT},{CLOSED_PORT},{OTHER_PORT}", lab.target_ip,
                    "-oX", str(xml), timeout=120)
    found = by_port(scan_json(f"nmap:{xml}", "--scope", "198.18.200.0/24", runner=netaudit_in(lab)))
    assert set(found) == {(lab.target_ip, TF_PORT), (lab.target_ip, OTHER_PORT)}
    assert found[(lab.target_ip, TF_PORT)]["kind"] == "tf-server"


# ---- hand-made files: what the tools cannot produce here, and broken files ------------------------------

NMAP_XML_MIXED = """<?xml version="1.0"?>
<nmaprun scanner="nmap" args="nmap -sS -sU -6 …" version="7.93">
<host><status state="up"/><address addr="2001:db8::5" addrtype="ipv6"/><address addr="52:54:00:12:34:56" addrtype="mac"/>
<hostnames><hostname name="gpu-5.internal" type="PTR"/></hostnames>
<ports><extraports state="closed" count="9"/>
<port protocol="tcp" portid="2222"><state state="open" reason="syn-ack"/></port>
<port protocol="tcp" portid="8500"><state state="filtered" reason="no-response"/></port>
<port protocol="tcp" portid="8501"><state state="open|filtered" reason="no-response"/></port>
<port protocol="udp" portid="8470"><state state="open" reason="udp-response"/></port>
</ports></host>
<host><status state="up"/><address addr="198.18.9.7" addrtype="ipv4"/>
<ports><port protocol="tcp" portid="8500"><state state="open" reason="syn-ack"/></port>
<port protocol="tcp" portid="8501"><state state="open" reason="syn-ack"/></port></ports></host>
<runstats><finished time="1" exit="success"/></runstats>
</nmaprun>
"""
MASSCAN_LIST_WITH_CLOSED_AND_BANNERS = """#masscan
open tcp 8500 198.18.9.8 1700000000
closed tcp 8501 198.18.9.8 1700000000
banner tcp 8500 198.18.9.8 1700000001 http HTTP/1.0 404 Not Found
open udp 53 198.18.9.8 1700000000
# end
"""
MASSCAN_JSON_WITH_BANNERS = """[
{   "ip": "198.18.9.9",   "timestamp": "1700000000", "ports": [ {"port": 8500, "proto": "tcp", "status": "open", "reason": "syn-ack", "ttl": 64} ] }
,
{   "ip": "198.18.9.9",   "timestamp": "1700000001", "ports": [ {"port": 8500, "proto": "tcp", "service": {"name": "http", "banner": "x"} } ] }
,
{   "ip": "198.18.9.10",   "timestamp": "1700000000", "ports": [ {"port": 2222, "proto": "tcp", "status": "closed", "reason": "rst", "ttl": 64} ] }
]
"""
ZMAP_CSV_QUOTED = 'saddr,daddr,sport,dport,classification,success,data\n198.18.9.11,198.18.200.1,2222,40000,synack,1,"a,b"\n' \
                  '198.18.9.12,198.18.200.1,2222,40000,rst,0,""\n'


def targets_of(tmp_path: Path, tool: str, text: str, ports: str = "tf") -> set[tuple[str, int]]:
    from netaudit.targets.parse import build_targets

    path = tmp_path / f"{tool}.out"
    path.write_text(text)
    return {(host, port) for host, port, _ in build_targets([f"{tool}:{path}"], ports=ports).probes()}


def test_hand_made_files_yield_only_open_tcp_ports(tmp_path):
    assert targets_of(tmp_path, "nmap", NMAP_XML_MIXED) == {("2001:db8::5", 2222), ("198.18.9.7", 8500),
                                                             ("198.18.9.7", 8501)}
    assert targets_of(tmp_path, "masscan", MASSCAN_LIST_WITH_CLOSED_AND_BANNERS) == {("198.18.9.8", 8500)}
    assert targets_of(tmp_path, "masscan", MASSCAN_JSON_WITH_BANNERS) == {("198.18.9.9", 8500)}
    assert targets_of(tmp_path, "zmap", ZMAP_CSV_QUOTED) == {("198.18.9.11", 2222)}
    assert targets_of(tmp_path, "zmap", "saddr\n198.18.9.13\n198.18.9.14\n", ports="2222,8500") == {
        ("198.18.9.13", 2222), ("198.18.9.13", 8500), ("198.18.9.14", 2222), ("198.18.9.14", 8500)}


BAD_FILES = [
    ("nmap", NMAP_XML_MIXED.split("<runstats>")[0], "no </nmaprun>"),
    ("nmap", "Starting Nmap 7.93\nNmap scan report for 198.18.9.7\n", "not nmap -oX output"),
    ("nmap", MASSCAN_JSON_WITH_BANNERS, "not nmap -oX output"),
    ("nmap", '<?xml version="1.0"?><svg></svg>', "expected <nmaprun>"),
    ("masscan", MASSCAN_LIST_WITH_CLOSED_AND_BANNERS.replace("# end\n", ""), "truncated"),
    ("masscan", MASSCAN_JSON_WITH_BANNERS[:200], "truncated or malformed"),
    ("masscan", "#masscan\n# end\n", "lists no open TCP port"),
    ("masscan", "#masscan\nopen tcp 99999 198.18.9.8 1700000000\n# end\n", "not a port number"),
    ("masscan", "#masscan\nopen tcp 8500 198.18.9 1700000000\n# end\n", "not an IP address"),
    ("masscan", "Timestamp: 1700000000\tHost: 198.18.9.8 ()\tPorts: 8500/open/tcp//unknown//\n", "not masscan output"),
    ("zmap", "saddr,sport\n198.18.9.11,2222\n198.18.9.12\n", "has 1 fields"),
    ("zmap", "ip,port\n198.18.9.11,2222\n", "naming saddr"),
    ("zmap", "", "is empty"),
    ("zmap", "\x89PNG\r\n\x1a\n\x00\xff", "not"),
]


@pytest.mark.parametrize("tool,text,message", BAD_FILES, ids=[f"{t}-{m}" for t, _, m in BAD_FILES])
def test_bad_discovery_files_give_one_line_and_exit_2(tmp_path, tool, text, message):
    path = tmp_path / "bad.out"
    path.write_bytes(text.encode("latin-1", "replace") if "\x89PNG" in text else text.encode())
    proc = run_cli("scan", f"{tool}:{path}", "--scope", "198.18.0.0/15")
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("netaudit: error:"), proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_missing_discovery_file_is_a_usage_error(tmp_path):
    proc = run_cli("scan", f"masscan:{tmp_path / 'nope.json'}")
    assert proc.returncode == 2 and "cannot read masscan output" in proc.stderr
