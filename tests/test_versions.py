"""Release markers and advisories: the measured tables replayed through infer_version, the advisory data
matched for chosen releases, and open-ended or unknown ranges never over-claiming `affected: "all"`."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import pytest

from netaudit.core import advisories
from netaudit.probes.tf_serving import grpc as modelserver_grpc
from netaudit.probes.tf_runtime import grpc as tf_runtime
from netaudit.assess.scoring import band, scores

# What the recorded wire behaviour can tell apart (docs/versions-and-advisories.md). 2.12-2.17 register the
# same methods and answer every safe RPC alike, also to malformed protobuf (bench/tf_parser_edges.py); only a
# coordination leader's heartbeat wording splits them, at 2.14 and at 2.17 (2.11 is derived: its wheel holds
# the 2.12 wording). The newest row is open-ended: a later release may look the same.
EXPECTED = {
    # release: (range on a plain server, range on a coordination leader)
    "2.12": ("2.11-2.17", "2.11-2.13"),
    "2.13": ("2.11-2.17", "2.11-2.13"),
    "2.14": ("2.11-2.17", "2.14-2.16"),
    "2.15": ("2.11-2.17", "2.14-2.16"),
    "2.16": ("2.11-2.17", "2.14-2.16"),
    "2.17": ("2.11-2.17", "2.17"),
    "2.18": ("2.18", "2.18"),
    "2.19": ("2.19", "2.19"),
    "2.20": ("2.20", "2.20"),
}


TASK = "/job:/replica:0/task:0"  # the task an empty heartbeat request names


def raw_rows() -> list[dict]:
    return json.loads(resources.files("netaudit").joinpath("data/tf_release_markers.json").read_text())["releases"]


def observe(row: tf_runtime.ReleaseRow, leader: str | None = None) -> dict[str, bool]:
    """What a scan learns from this release: the services of the signature replies, then the markers the
    probe asks one by one (tf_runtime.next_marker) until none splits the rows left."""
    observed = {m: row.methods[m] for m in tf_runtime.SERVICE_METHODS if m in row.methods}
    while marker := tf_runtime.next_marker(candidate_rows(observed, leader), observed):
        observed[marker] = row.methods[marker]
    return observed


def candidate_rows(observed: dict[str, bool], leader: str | None) -> list[tf_runtime.ReleaseRow]:
    return [r for r in tf_runtime.release_rows() if r.agrees(observed, leader)]


def candidates(observed: dict[str, bool], leader: str | None) -> list[str]:
    return [r.release for r in candidate_rows(observed, leader)]


def measured() -> list[tf_runtime.ReleaseRow]:
    return [r for r in tf_runtime.release_rows() if r.source == "measured"]


def test_every_minor_from_2_12_to_2_21_was_measured():
    assert [r.release for r in measured()] == [f"2.{n}" for n in range(12, 22)]
    assert all(r.note.startswith("measured on tensorflow-cpu 2.") for r in measured())
    assert {r.release for r in tf_runtime.release_rows() if r.source == "derived"} == {f"2.{n}" for n in range(1, 12)}


@pytest.mark.parametrize("row", measured(), ids=lambda r: r.release)
def test_replayed_release_is_recognised_as_exactly_as_its_wire_behaviour_allows(row):
    """The markers asked lose nothing: they leave the same candidates as every method recorded, and the
    range always holds the release. A handful are asked, not all."""
    newest = tf_runtime.release_rows()[-1]
    for leader in (None, row.leader_heartbeat):
        seen = observe(row, leader)
        version = tf_runtime.infer_version(seen, leader and leader.format(task=TASK))
        assert candidates(seen, leader) == candidates(row.methods, leader)
        assert len(set(seen) - set(tf_runtime.SERVICE_METHODS)) <= 4 < len(tf_runtime.version_markers())
        releases = candidates(row.methods, leader)
        assert row.release in releases
        if releases == [row.release]:
            assert version["range"] == (row.release if row is not newest else f">= {row.release}")
            assert version["source"] == "measured"
    if row.release in EXPECTED:
        plain, leader = EXPECTED[row.release]
        assert tf_runtime.infer_version(observe(row))["range"] == plain
        assert ", ".join(_spans(candidates(observe(row, row.leader_heartbeat), row.leader_heartbeat))) == leader
        wording = row.leader_heartbeat.format(task=TASK)
        assert tf_runtime.infer_version(observe(row, row.leader_heartbeat), wording)["range"] == leader


def test_a_leader_wording_no_row_has_excludes_nothing():
    """A later release or a patched build may word the rejection anew: that tells nothing, so the range is the
    one the methods give, never "unknown"."""
    row = next(r for r in measured() if r.release == "2.17")
    assert tf_runtime.infer_version(observe(row), "Unexpected heartbeat request from task: "
                                    f"{TASK}. Something new.")["range"] == "2.11-2.17"


def _spans(releases: list[str]) -> list[str]:
    minors = [int(r.split(".")[1]) for r in releases]
    out, start = [], minors[0]
    for prev, cur in zip(minors, minors[1:] + [None]):
        if cur != prev + 1:
            out.append(f"2.{start}" if start == prev else f"2.{start}-2.{prev}")
            start = cur
    return out


def test_the_newest_release_stays_open_ended_and_older_rows_are_derived():
    newest = measured()[-1]
    version = tf_runtime.infer_version(observe(newest))
    assert (version["range"], version["min"], version["max"], version["source"]) == \
        (f">= {newest.release}", newest.release, None, "measured")
    oldest = tf_runtime.release_rows()[0]
    version = tf_runtime.infer_version(observe(oldest))
    assert (version["range"], version["min"], version["max"], version["source"]) == ("<= 2.1", None, "2.1", "derived")


def test_markers_separate_the_releases_that_differ_in_methods():
    markers = tf_runtime.version_markers()
    assert "/tensorflow.CoordinationService/PollForError" in markers and len(markers) <= 12
    assert all(m.startswith("/tensorflow.") for m in markers)


@pytest.mark.parametrize("broken, named", [
    ({"release": "2.x", "source": "measured", "note": "", "methods": {"/a/b": True}}, "release 2.x"),
    ({"release": "2.30", "source": "guessed", "note": "", "methods": {"/a/b": True}}, "release 2.30"),
    ({"release": "2.31", "source": "measured", "note": "", "methods": {"/a/b": "yes"}}, "release 2.31"),
    ({"release": "2.32", "source": "derived", "note": "", "methods": {"/a/b": True},
      "leader_heartbeat": "Unexpected task request"}, "release 2.32"),
    # "false" is a string, and only the oldest row can stand for the releases before it.
    ({"release": "2.33", "source": "derived", "note": "", "methods": {"/a/b": True}, "covers_older": "false"},
     "release 2.33"),
    ({"release": "2.34", "source": "derived", "note": "", "methods": {"/a/b": True}, "covers_older": True},
     "release 2.34"),
])
def test_a_malformed_marker_row_is_named(broken, named):
    text = json.dumps({"releases": raw_rows() + [broken]})
    with pytest.raises(tf_runtime.MarkerDataError, match=named):
        tf_runtime.parse_rows(text)


def by_id(result: dict) -> dict[str, str]:
    return {a["id"]: a["affected"] for a in result["list"]}


def test_advisories_for_chosen_releases_follow_the_data_file():
    # CVE-2021-29569 (PYSEC-2021-206): affected 2.4.0 up to 2.4.2, and every release before 2.1.4.
    assert by_id(advisories.match("2.4", "2.4"))["CVE-2021-29569"] == "some"
    assert by_id(advisories.match("2.4.1", "2.4.1"))["CVE-2021-29569"] == "all"
    assert "CVE-2021-29569" not in by_id(advisories.match("2.4.2", "2.4.2"))
    assert by_id(advisories.match("1.15", "1.15"))["CVE-2021-29569"] == "all"
    # The newest TF advisory read (CVE-2023-33976, GHSA-only) was fixed in 2.12.1: of 2.12-2.17 only 2.12.0 is hit.
    assert by_id(advisories.match("2.12", "2.17")) == {"CVE-2023-33976": "some"}
    assert by_id(advisories.match("2.12.1", "2.12.1")) == {}
    assert advisories.match("2.21", None)["list"] == []
    # GitHub's reviewed record limits CVE-2022-23592 to 2.8.0rc0, where the NVD-derived PYSEC said 2.7.x too.
    assert "CVE-2022-23592" not in by_id(advisories.match(None, None))
    # TF Serving: CVE-2025-0649 has no fix in any release, so it affects every ModelServer release.
    serving = advisories.match("2.19", "2.19", product="tensorflow-serving")
    assert by_id(serving) == {"CVE-2025-0649": "all"}
    assert by_id(advisories.match("2.3", "2.3", product="tensorflow-serving"))["CVE-2020-15206"] == "some"


@pytest.mark.parametrize("release, cve, severity, cvss", [
    # GHSA-only advisory (2023), CVSS from the GHSA-derived record.
    ("2.12.0", "CVE-2023-33976", "high", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"),
    # PYSEC record, severity from GitHub's record; its reviewed ranges add 2.7.0, which the PYSEC record missed.
    ("2.7.0", "CVE-2022-21726", "high", "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:H"),
    # GitHub gives a severity but no CVSS vector.
    ("2.9.0", "CVE-2022-36016", "low", None),
    ("2.11.0", "CVE-2023-25668", "critical", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
])
def test_advisories_of_chosen_releases_carry_their_severity(release, cve, severity, cvss):
    found = {a["id"]: a for a in advisories.match(release, release)["list"]}
    assert (found[cve]["affected"], found[cve]["severity"], found[cve]["cvss"]) == ("all", severity, cvss)
    assert found[cve]["url"].startswith("https://github.com/tensorflow/tensorflow/")


def test_summary_by_severity_for_an_exact_release():
    result = advisories.match("2.12.0", "2.12.0")
    assert (result["all"], result["some"], result["by_severity"]) == (1, 0, "1 high")
    result = advisories.match("2.11.1", "2.11.1")
    assert [(a["id"], a["severity"]) for a in result["list"]] == [("CVE-2023-33976", "high")]


def test_the_data_file_validates_on_load_and_states_its_coverage():
    data = advisories.load()
    tf = [a for a in data.advisories if a.product == "tensorflow"]
    assert len(tf) > 400 and len({a.id for a in tf}) == len(tf)
    assert {s["name"] for s in data.sources} >= {"pypa/advisory-database", "westonsteimel/advisory-database-pypa"}
    assert "severity unknown for" in data.coverage["tensorflow"]
    unknown = [a for a in tf if a.severity == "unknown"]
    # What is still missing is what the coverage says: only advisories no GHSA record was read for.
    assert f"severity unknown for {len(unknown)} " in data.coverage["tensorflow"]
    assert all(a.cvss is None for a in unknown)
    for a in tf:
        if a.cvss and a.cvss.startswith("CVSS:3"):
            assert band(scores(a.cvss)[0]) == a.severity, a.id


def test_an_exact_release_gives_only_all():
    for version in ("1.15.0", "2.4.1", "2.7.0", "2.11.0", "2.16.2"):
        assert {a["affected"] for a in advisories.match(version, version)["list"]} <= {"all"}


def _affects(advisory: advisories.Advisory, version: tuple[int, int, int]) -> bool:
    return any(s.introduced <= version and (s.fixed is None or version < s.fixed) for s in advisory.affected)


@pytest.mark.parametrize("low, high", [(None, None), ("2.21", None), (None, "2.1"), ("2.2", None), ("2.4", "2.6"),
                                       ("2.12", "2.17"), (None, "2.11")])
def test_all_means_every_release_in_the_range(low, high):
    """Checked against each advisory's own intervals at every patch of every minor in the range, plus a far
    future release for an open upper end and release 0 for an open lower end."""
    data = advisories.load()
    first = advisories.parse_version(low) if low else (0, 0, 0)
    last = advisories.parse_version(high) if high else (2, 40, 0)
    minors = [(major, minor) for major in (0, 1, 2) for minor in range(0, 41)
              if first[:2] <= (major, minor) <= last[:2]]
    versions = [(ma, mi, p) for ma, mi in minors for p in range(0, 10)]
    versions += [(0, 0, 0)] if low is None else []
    versions += [(99, 0, 0)] if high is None else []
    result = {a["id"]: a["affected"] for a in advisories.match(low, high, data=data)["list"]}
    for advisory in data.advisories:
        if advisory.product != "tensorflow":
            continue
        hit = [_affects(advisory, v) for v in versions]
        if result.get(advisory.id) == "all":
            assert all(hit), advisory.id
        assert (advisory.id in result) == any(hit), advisory.id
    if high is None:
        assert all(a["fixed"] == [] for a in advisories.match(low, high, data=data)["list"] if a["affected"] == "all")


def test_a_malformed_advisory_is_named():
    text = resources.files("netaudit").joinpath("data/tf_advisories.json").read_text()
    data = json.loads(text)
    data["advisories"][3]["severity"] = "dire"
    with pytest.raises(advisories.AdvisoryDataError, match=data["advisories"][3]["id"]):
        advisories.parse(json.dumps(data))


def test_lab_servers_carry_their_release_and_advisories(lab_scan):
    tf_eps = [e for e in lab_scan.endpoints if e.kind == "tf-server" and "tf_version" in e.details]
    assert tf_eps
    for ep in tf_eps:
        version = ep.details["tf_version"]
        assert version["source"] == "measured" and version["max"] is None
        found = ep.details["advisories"]
        assert found["product"] == "tensorflow" and found["all"] == 0
        assert found["list"] == advisories.match(version["min"], None)["list"]


@pytest.mark.parametrize("transport, authenticated, rule, severity", [
    ("plaintext", False, "tf-known-advisories-no-new-access", "info"),
    ("mtls", False, "tf-known-advisories-behind-mtls", "high"),
])
def test_advisory_findings_follow_the_access_the_server_already_gives(transport, authenticated, rule, severity):
    """A derived 2.4 row replayed: its advisories become one finding, listed with links, whose severity depends
    on whether the server already runs anyone's graphs."""
    from netaudit.assess.rules import assess
    from netaudit.core.model import Endpoint

    row = next(r for r in tf_runtime.release_rows() if r.release == "2.4")
    version = tf_runtime.infer_version(observe(row))
    found = advisories.match(version["min"], version["max"])
    ep = Endpoint("198.18.1.10", 2222, "open", kind="tf-server", transport=transport, authenticated=authenticated,
                  details={"tf_version": version, "advisories": found})
    findings = [f for f in assess([ep]) if f.rule.startswith("tf-known-advisories")]
    assert [(f.rule, f.severity) for f in findings] == [(rule, severity)]
    assert version["range"] in findings[0].title and f"{found['some']} affect some" in findings[0].title
    lines = [line for line in findings[0].evidence if line.startswith("advisory ")]
    assert len(lines) == len(found["list"]) and all("https://" in line for line in lines)
    empty = Endpoint("198.18.1.10", 2222, "open", kind="tf-server", transport=transport, authenticated=authenticated,
                     details={"tf_version": version, "advisories": advisories.match("2.12.1", "2.17")})
    assert not [f for f in assess([empty]) if f.rule.startswith("tf-known-advisories")]


# --- TF Serving: the release range from the method set (derived), and its advisories ---------------------

MONITOR, TERMINATE = "/tensorflow.ProfilerService/Monitor", "/tensorflow.ProfilerService/Terminate"
CONTINUOUS = "/tensorflow.ProfilerService/StopContinuousProfiling"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
HEALTH = "/grpc.health.v1.Health/Check"


@pytest.mark.parametrize("registered, expected", [
    ({MONITOR: True, TERMINATE: False, CONTINUOUS: False, REFLECTION: False, HEALTH: False}, "2.1-2.2"),
    ({MONITOR: True, TERMINATE: True, CONTINUOUS: False, REFLECTION: False, HEALTH: False}, "2.3-2.15.0"),
    ({MONITOR: True, TERMINATE: True, CONTINUOUS: False, REFLECTION: True, HEALTH: False}, "2.15.1-2.20"),
    ({MONITOR: True, TERMINATE: True, CONTINUOUS: True, REFLECTION: True, HEALTH: True}, ">= 2.21"),
    # The profiler off (--enable_profiler=false, 2.5+): its methods say nothing.
    ({MONITOR: False, TERMINATE: False, CONTINUOUS: False, REFLECTION: True, HEALTH: False}, ">= 2.15.1"),
    ({MONITOR: False, TERMINATE: False, CONTINUOUS: False, REFLECTION: False, HEALTH: False}, "<= 2.15.0"),
    # Health needs 2.15.1+, reflection absent says older: nothing agrees.
    ({MONITOR: True, TERMINATE: True, CONTINUOUS: False, REFLECTION: False, HEALTH: True}, "unknown"),
])
def test_serving_rows_replayed(registered, expected):
    version = modelserver_grpc.infer_serving_version(registered)
    assert version["range"] == expected and version["source"] == "derived"
    assert set(modelserver_grpc.serving_markers()) == set(registered)


def test_a_malformed_serving_row_is_named():
    raw = json.loads(resources.files("netaudit").joinpath("data/tf_serving_release_markers.json").read_text())
    raw["rows"][2]["methods"][TERMINATE] = "yes"
    with pytest.raises(modelserver_grpc.ServingMarkerError, match="row 2"):
        modelserver_grpc.parse_serving_rows(json.dumps(raw))
    raw["rows"][2]["methods"][TERMINATE] = True
    raw["rows"][3]["min"] = "2.14"
    with pytest.raises(modelserver_grpc.ServingMarkerError, match="not overlap"):
        modelserver_grpc.parse_serving_rows(json.dumps(raw))


# The stand-in registers each release's method set (lab/modelserver.py cites the source of each method).
STAND_INS = {"2.2.0": (False, "2.1-2.2"), "2.14.1": (False, "2.3-2.15.0"), "2.19.0": (True, "2.15.1-2.20"),
             "2.21.0": (False, ">= 2.21")}


@pytest.fixture(scope="module")
def serving_stand_ins(lab, tmp_path_factory):
    from netaudit.lab.modelserver_launch import ModelServerSpec, start_modelserver
    from netaudit.lab.processes import free_port, stop, wait_ready

    directory = tmp_path_factory.mktemp("serving-releases")
    specs, procs = {}, []
    try:
        for release, (health, _) in STAND_INS.items():
            specs[release] = ModelServerSpec(free_port(), free_port(), Path(lab.dir) / "models" / "models.config",
                                             audit_log=directory / f"{release}.jsonl", release=release,
                                             healthcheck=health)
            procs.append(start_modelserver(f"ms-{release}", specs[release], directory)[0])
        wait_ready(procs, time.monotonic() + 240)
        yield specs
    finally:
        stop(procs)


@pytest.mark.parametrize("release", STAND_INS)
def test_modelserver_release_range_and_advisories_from_the_stand_in(serving_stand_ins, release):
    from netaudit.scanner.scan import ScanOptions, scan
    from netaudit.targets.parse import build_targets

    spec = serving_stand_ins[release]
    result = scan(build_targets([f"127.0.0.1:{spec.grpc_port}"]), ScanOptions())
    (ep,) = result.endpoints
    version = ep.details["serving_version"]
    assert ep.kind == "modelserver-grpc" and version["range"] == STAND_INS[release][1]
    assert version["source"] == "derived" and "no real tensorflow_model_server" in version["basis"]
    found = ep.details["advisories"]
    assert found["product"] == "tensorflow-serving"
    assert found["list"] == advisories.match(version["min"], version["max"], product="tensorflow-serving")["list"]
    assert by_id(found)["CVE-2025-0649"] == "all"  # no fix in any release read
    (finding,) = [f for f in result.findings if f.rule.startswith("modelserver-known-advisories")]
    assert (finding.rule, finding.severity) == ("modelserver-known-advisories-no-new-access", "info")
    assert version["range"] in finding.title and "(derived)" in finding.title
    assert len([line for line in finding.evidence if line.startswith("advisory ")]) == len(found["list"])
    # Read-only: every profiler method got unparseable bytes, rejected before a handler where it is registered.
    log = [json.loads(line) for line in spec.audit_log.read_text().splitlines()]
    profiler = [e for e in log if e["method"].startswith("/tensorflow.ProfilerService/") and e["request_bytes"]]
    assert {e["method"].rsplit("/", 1)[1] for e in profiler} == {"Terminate", "StopContinuousProfiling"}
    assert all((e["status"], e.get("parsed")) in {("INTERNAL", False), ("UNIMPLEMENTED", None)} for e in profiler)
    assert not [e for e in log if e["method"].startswith("/tensorflow.ProfilerService/") and e["status"] == "OK"]


# --- a marker the server never answers ------------------------------------------------------------------

POLL = "/tensorflow.CoordinationService/PollForError"
UNKNOWN_METHOD = ("UNIMPLEMENTED", "", b"")  # as gRPC core answers an unknown method (grpcio adds words)


@contextmanager
def emulated(answer, stalled: str):
    """A real grpcio server on a loopback port: `answer(method, request)` gives (code, details, body), except
    that `stalled`'s reply comes only after the scanner's deadline, as on a lossy link."""
    from concurrent import futures

    import grpc

    stop = threading.Event()

    def reply(method: str, request: bytes, context) -> bytes:
        if method == stalled:
            stop.wait(3)
        code, details, body = answer(method, request)
        if code != "OK":
            context.abort(getattr(grpc.StatusCode, code), details)
        return body

    class Handler(grpc.GenericRpcHandler):
        def service(self, details):
            method = details.method
            if "ServerReflection" in method:
                def stream(requests, context):
                    yield reply(method, next(requests), context)
                return grpc.stream_stream_rpc_method_handler(stream)
            return grpc.unary_unary_rpc_method_handler(lambda request, context: reply(method, request, context))

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((Handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop.set()
        server.stop(0)


def probe_once(address: str, probe) -> tuple:
    """The family's probe over a session of its own with one 1 s deadline per call, and every call it sent."""
    from netaudit.probes.base import ProbeContext
    from netaudit.transport.rpc import RpcSession

    async def go():
        session = RpcSession(address, timeout=1.0)
        try:
            assert await session.ready()
            return await probe(session, ProbeContext(model_names=("m",))), [m for m, _ in session.calls]
        finally:
            await session.close()
    return asyncio.run(go())


def assert_holds(version: dict, release: tuple[int, int, int]) -> None:
    """The inferred range (min/max, None for open) holds the release the server really is."""
    low, high = (advisories.parse_version(v) if v else None for v in (version["min"], version["max"]))
    assert (low is None or low <= release) and (high is None or high >= release), version


def tf_2_17(method: str, request: bytes) -> tuple[str, str, bytes]:
    """A plain TF 2.17 task as measured: the signatures, INTERNAL "Unable to parse request" for every other
    registered method."""
    from netaudit.transport import protowire

    signatures = {"/tensorflow.WorkerService/GetStatus": ("OK", ""),
                  "/tensorflow.eager.EagerService/KeepAlive": ("ABORTED", "Unable to find a context_id 0"),
                  "/tensorflow.CoordinationService/Heartbeat": ("INTERNAL", "Coordination service is not enabled."),
                  "/tensorflow.ProfilerService/Monitor": ("UNIMPLEMENTED", "unimplemented.")}
    row = next(r for r in tf_runtime.release_rows() if r.release == "2.17")
    device = protowire.field(1, protowire.field(1, "/job:worker/replica:0/task:0/device:CPU:0")
                             + protowire.field(2, "CPU"))
    if method in signatures:
        return (*signatures[method], device)
    return ("INTERNAL", "Unable to parse request", b"") if row.methods.get(method) else UNKNOWN_METHOD


def test_a_tf_marker_without_an_answer_tells_nothing():
    """A marker whose reply never came (deadline passed) is neither registered nor unknown: it must not narrow
    the range to releases the server is not (2.17 read as exactly 2.18, "measured"). No marker is asked again."""
    with emulated(tf_2_17, POLL) as address:
        out, calls = probe_once(address, tf_runtime.probe)
    version = out.details["tf_version"]
    assert out.kind == "tf-server" and POLL not in version["registered_markers"]
    assert_holds(version, (2, 17, 0))
    assert calls.count(POLL) == 1 and "1 unanswered" in out.evidence[-1]


def serving_2_2(method: str, request: bytes) -> tuple[str, str, bytes]:
    """TF Serving 2.2 as derived (tf_serving_release_markers.json): the profiler's Monitor, no Terminate, no
    reflection or health; no model loaded."""
    from netaudit.transport import protowire

    if method in ("/tensorflow.serving.ModelService/GetModelStatus", "/tensorflow.serving.PredictionService/Predict"):
        name = protowire.decode(request).message(1).str(1) if request else ""
        return ("NOT_FOUND", f"Could not find any versions of model {name}", b"") if name else \
            ("INVALID_ARGUMENT", "Missing ModelSpec", b"")
    if method == "/tensorflow.serving.ModelService/HandleReloadConfigRequest":
        return "INVALID_ARGUMENT", "ServerModelConfig type not supported by HandleReloadConfigRequest", b""
    if method == MONITOR:
        return "UNIMPLEMENTED", "unimplemented.", b""
    return UNKNOWN_METHOD


def test_a_serving_marker_without_an_answer_tells_nothing():
    """TF Serving 2.2 whose Terminate reply never came: it reads as a range holding 2.2, not 2.3-2.15.0."""
    with emulated(serving_2_2, TERMINATE) as address:
        out, calls = probe_once(address, modelserver_grpc.probe)
    version = out.details["serving_version"]
    assert out.kind == "modelserver-grpc" and TERMINATE not in version["registered_markers"]
    assert_holds(version, (2, 2, 0))
