"""--format ocsf: one OCSF Detection Finding a line, checked two ways that do not share code.

1. py-ocsf-models (Prowler's OCSF models, OCSF_VERSION 1.5.0): every line parses as DetectionFinding in
   pydantic's strict mode, and dumping the model gives back the line exactly. The models ignore unknown
   keys, so a key they do not know, or a value they changed, shows up as a difference.
2. jsonschema against a JSON Schema of OCSF 1.5.0, the version the records declare. It starts from the
   pydantic-ocsf models (ocsf.v1_5_0), which are generated from the OCSF 1.5.0 definitions that package
   ships, and is then closed with what those same definitions say: no attribute outside the class or object,
   the `required` attributes of every class the event and each object extend, and the `at_least_one` and
   `just_one` constraints. Nothing is fetched. The schema is built here from installed packages.

No lab, no network, no conftest: results are built from netaudit's own model objects, or written to a file
and run through `python -m netaudit convert` and `report`.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import re
import subprocess
import sys
from datetime import date
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netaudit.core.model import Endpoint, Finding, ScanResult
from netaudit.outputs.ocsf import to_ocsf
from netaudit.results.accept import Acceptance
from netaudit.results.diff import annotate
from netaudit.results.history import Recorded
from test_bad_inputs import MUTATIONS, paths

NETAUDIT = [sys.executable, "-m", "netaudit"]
VERSION = "1.5.0"
EXPECTED_SEVERITY = {"info": (1, "Informational"), "low": (2, "Low"), "medium": (3, "Medium"), "high": (4, "High"),
                     "critical": (5, "Critical")}
# Server text at its worst: terminal escapes, a bidi override, DEL, C1, NUL, a line break inside the line,
# and bytes that are not UTF-8 (read with surrogateescape, so they reach netaudit as unpaired surrogates).
HOSTILE = ("banner \x1b]0;pwned\x07\x1b[2J\x1b[31mFAKE\x1b[0m\r\nOK \u202eevil\u202c \x7f\x9b1m \x00 "
           + b"\xff\xfe\xc3(".decode("utf-8", "surrogateescape") + " \ud800 tail")
TRANSCRIPT = [{"address": "198.18.1.10:2222", "credentials": "no credentials", "transport": "plaintext",
               "calls": [{"method": "/tensorflow.WorkerService/GetStatus", "request": "empty", "code": "OK",
                          "size": 118},
                         {"method": "/tensorflow.grpc.MasterService/ListDevices", "request": "empty", "code": "OK",
                          "size": 95}]}]


def scan_result(findings: bool = True) -> ScanResult:
    """A scan with a finding of every severity: one with CVSS and compliance (CWE among them), one whose
    evidence holds HOSTILE, one on IPv6, one with an endpoint netaudit did not keep."""
    endpoints = [
        Endpoint("198.18.1.10", 2222, "open", "tf-server", "plaintext", False, ["tensorflow.WorkerService"],
                 {"job": "worker", "task": 0, "transcript": TRANSCRIPT}, ["GetStatus answered without credentials"]),
        Endpoint("198.18.1.20", 8501, "open", "modelserver-rest", "plaintext", False),
        Endpoint("2001:db8::5", 8500, "open", "modelserver-grpc", "tls", None),
        Endpoint("198.18.1.30", 443, "open", "tls", "tls", None),
    ]
    found = [
        Finding("tf-server-unauthenticated-plaintext", "critical", "198.18.1.10", 2222,
                "Unauthenticated tf.distribute.Server (plaintext)",
                ["GetStatus answered without credentials", "ListDevices: 8x GPU", HOSTILE],
                "Put the server on an isolated network.", ["https://github.com/tensorflow/tensorflow/blob/master/SECURITY.md"],
                compliance={"NIST SP 800-53 r5": ["SC-7", "AC-3"], "CWE": ["CWE-306", "CWE-319"],
                            "MITRE ATLAS": ["AML.T0049"]},
                cvss_vector="CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", cvss_score=9.8),
        Finding("modelserver-reload-exposed", "high", "2001:db8::5", 8500, "TF Serving reload API open",
                ["HandleReloadConfigRequest answered"], "Block port 8500.", [],
                compliance={"CWE": ["CWE-306", "not-a-cwe"]}),
        Finding("modelserver-plaintext", "medium", "198.18.1.20", 8501, "TF Serving REST in plaintext",
                ["HTTP/1.1 200 OK"], "Serve TLS.", ["https://www.tensorflow.org/tfx/serving/serving_config"]),
        Finding("tls-legacy-version", "low", "198.18.1.30", 443, "TLS 1.0 accepted", ["TLSv1.0 handshake completed"],
                "Disable TLS 1.0.", []),
        Finding("modelserver-metrics-leak-model-names", "info", "198.18.1.99", 9000, "Metrics name models",
                [], "", []),
    ]
    return ScanResult(vantage="lab", started="2026-12-01T00:00:00Z", finished="2026-12-01T00:00:07Z", complete=True,
                      endpoints=endpoints, findings=found if findings else [])


def ocsf_lines(text: str) -> list[dict]:
    assert text == "" or text.endswith("\n")
    assert text.isascii(), "the output is ASCII: every non-ASCII character is a JSON escape"
    lines = text.split("\n")[:-1]
    assert text.splitlines() == lines, "no record holds a character some reader takes for a line break"
    return [json.loads(line) for line in lines]


# 1. py-ocsf-models -------------------------------------------------------------------------------------------

def check_with_py_ocsf_models(line: str) -> None:
    import py_ocsf_models
    from py_ocsf_models.events.findings.detection_finding import DetectionFinding

    record = json.loads(line)
    assert record["metadata"]["version"] == py_ocsf_models.OCSF_VERSION
    model = DetectionFinding.model_validate_json(line, strict=True)
    assert model.model_dump(mode="json", exclude_unset=True) == record


# 2. The OCSF 1.5.0 JSON Schema -------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def ocsf_definitions(version: str) -> dict:
    """The OCSF definitions (classes, objects, dictionary) pydantic-ocsf ships for `version`."""
    name = f"schemas/v{version.replace('.', '_')}.json"
    return json.loads(resources.files("ocsf").joinpath(name).read_text(encoding="utf-8"))


def _attributes(definitions: dict, kind: str, name: str) -> dict[str, dict]:
    """An event class's or object's attributes, with those of every class it extends (nearest first)."""
    merged: dict[str, dict] = {}
    table = definitions[kind]
    while name:
        entry = table.get(name) or definitions["events"].get(name) or definitions["objects"].get(name)
        for attr, spec in entry.get("attributes", {}).items():
            if attr != "$include":
                merged.setdefault(attr, {}).update({k: v for k, v in spec.items() if k not in merged.get(attr, {})})
        name = entry.get("extends")
    return merged


def _attribute_of(definitions: dict, name: str, key: str):
    """A class's own `key`, or the nearest class it extends that has one (detection_finding has no category)."""
    while name:
        entry = definitions["events"][name]
        if key in entry:
            return entry[key]
        name = entry.get("extends")
    raise KeyError(key)


def _constraints(definitions: dict, kind: str, name: str) -> dict:
    table = definitions[kind]
    while name:
        entry = table.get(name) or definitions["events"].get(name) or definitions["objects"].get(name)
        if entry.get("constraints"):
            return entry["constraints"]
        name = entry.get("extends")
    return {}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _close(node: dict, definitions: dict, kind: str, name: str) -> None:
    """No attribute outside the definition; OCSF's required attributes; its constraints."""
    attributes = _attributes(definitions, kind, name)
    assert set(node["properties"]) <= set(attributes), f"{name}: the models name attributes OCSF does not"
    node["additionalProperties"] = False
    required = {a for a, spec in attributes.items() if spec.get("requirement") == "required"}
    node["required"] = sorted(set(node.get("required", [])) | (required & set(node["properties"])))
    constraints = _constraints(definitions, kind, name)
    rules = []
    if constraints.get("at_least_one"):
        rules.append({"anyOf": [{"required": [a]} for a in constraints["at_least_one"]]})
    if constraints.get("just_one"):
        rules.append({"oneOf": [{"required": [a]} for a in constraints["just_one"]]})
    if rules:
        node["allOf"] = node.get("allOf", []) + rules


@lru_cache(maxsize=None)
def ocsf_schema(version: str) -> dict:
    events = importlib.import_module(f"ocsf.v{version.replace('.', '_')}.events")
    definitions = ocsf_definitions(version)
    assert definitions["version"] == version
    schema = copy.deepcopy(events.DetectionFinding.model_json_schema())
    _close(schema, definitions, "events", "detection_finding")
    for def_name, node in schema.get("$defs", {}).items():
        if node.get("type") == "object" and node.get("properties") and _snake(def_name) in definitions["objects"]:
            _close(node, definitions, "objects", _snake(def_name))
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def check_with_ocsf_schema(record: dict) -> None:
    version = (record.get("metadata") or {}).get("version", VERSION)
    validator = jsonschema.Draft202012Validator(ocsf_schema(version))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(record)]
    assert errors == []
    # What a JSON Schema cannot say: the names that go with the ids, and type_uid = class_uid * 100 + activity_id.
    definitions = ocsf_definitions(version)
    category = definitions["categories_meta"]["attributes"][_attribute_of(definitions, "detection_finding", "category")]
    event = definitions["events"]["detection_finding"]
    attributes = _attributes(definitions, "events", "detection_finding")
    assert (record["category_uid"], record["category_name"]) == (category["uid"], category["caption"])
    assert (record["class_uid"], record["class_name"]) == (category["uid"] * 1000 + event["uid"], event["caption"])
    assert record["type_uid"] == record["class_uid"] * 100 + record["activity_id"]
    assert record["activity_name"] == attributes["activity_id"]["enum"][str(record["activity_id"])]["caption"]
    assert record["type_name"] == f"{record['class_name']}: {record['activity_name']}"
    severities = definitions["dictionary"]["attributes"]["severity_id"]["enum"]
    assert record["severity"] == severities[str(record["severity_id"])]["caption"]
    assert record["status"] == attributes["status_id"]["enum"][str(record["status_id"])]["caption"]


def check_every_record(text: str) -> list[dict]:
    records = ocsf_lines(text)
    for line, record in zip(text.split("\n"), records):
        check_with_py_ocsf_models(line)
        check_with_ocsf_schema(record)
    return records


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NETAUDIT_STORE": str(cwd / "history.sqlite")}
    return subprocess.run([*NETAUDIT, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


# The tests ---------------------------------------------------------------------------------------------------

def test_the_checks_reject_what_ocsf_does_not_allow():
    good = ocsf_lines(to_ocsf(scan_result()))[0]
    check_with_ocsf_schema(good)
    bad = []
    for change in (lambda r: r["finding_info"].update(bogus=1),         # an attribute OCSF does not have
                   lambda r: r.pop("type_uid"),                          # required in base_event
                   lambda r: r["metadata"].pop("version"),               # required in metadata
                   lambda r: r.update(severity_id=7),                    # not a severity_id
                   lambda r: r["vulnerabilities"][0].update(cve={"uid": "CVE-2024-0001"}),  # just_one of cve, cwe
                   lambda r: r["evidences"][0].pop("data"),              # at_least_one
                   lambda r: r.update(time="2026-12-01T00:00:07Z")):     # timestamp_t is a number
        record = copy.deepcopy(good)
        change(record)
        bad.append(record)
    for record in bad:
        with pytest.raises(AssertionError):
            check_with_ocsf_schema(record)
    with pytest.raises(AssertionError):  # py-ocsf-models would drop it silently; the round trip does not
        check_with_py_ocsf_models(json.dumps({**good, "is_alert": True}))


def test_every_record_of_a_scan_is_a_valid_detection_finding():
    result = scan_result()
    records = check_every_record(to_ocsf(result))
    assert [r["finding_info"]["uid"] for r in records] == [f.id for f in result.findings]
    assert {r["metadata"]["version"] for r in records} == {VERSION}
    assert {r["class_uid"] for r in records} == {2004}
    assert all(r["metadata"]["product"] == {"name": "netaudit", "vendor_name": "netaudit", "version": "0.1.0",
                                            "uid": "netaudit-tf"} for r in records)
    assert {r["time"] for r in records} == {1796083207000}  # finished, 2026-12-01T00:00:07Z
    assert {(r["start_time"], r["end_time"]) for r in records} == {(1796083200000, 1796083207000)}
    assert len({r["metadata"]["uid"] for r in records}) == len(records)
    assert {r["metadata"]["correlation_uid"] for r in records} == {"netaudit/lab/2026-12-01T00:00:00Z"}


def test_the_severity_mapping_is_exact():
    records = check_every_record(to_ocsf(scan_result()))
    by_rule = {r["finding_info"]["types"][0]: r for r in records}
    for finding in scan_result().findings:
        record = by_rule[finding.rule]
        assert (record["severity_id"], record["severity"]) == EXPECTED_SEVERITY[finding.severity], finding.severity
    assert sorted(r["severity_id"] for r in records) == [1, 2, 3, 4, 5]


def test_the_field_mapping():
    records = check_every_record(to_ocsf(scan_result()))
    critical = next(r for r in records if r["severity_id"] == 5)
    assert critical["finding_info"]["title"] == critical["message"] == "Unauthenticated tf.distribute.Server (plaintext)"
    assert critical["finding_info"]["types"] == ["tf-server-unauthenticated-plaintext"]
    assert critical["finding_info"]["analytic"] == {"type_id": 1, "type": "Rule", "uid": "tf-server-unauthenticated-plaintext",
                                                    "name": "tf-server-unauthenticated-plaintext"}
    assert critical["resources"] == [{"type": "tf-server", "uid": "198.18.1.10:2222",
                                      "name": "tf.distribute.Server at 198.18.1.10:2222",
                                      "data": {"host": "198.18.1.10", "port": 2222, "kind": "tf-server",
                                               "transport": "plaintext", "authenticated": False}}]
    assert critical["remediation"] == {"desc": "Put the server on an isolated network.",
                                       "references": ["https://github.com/tensorflow/tensorflow/blob/master/SECURITY.md"]}
    assert critical["vulnerabilities"] == [{"cwe": {"uid": "CWE-306"}}, {"cwe": {"uid": "CWE-319"}}]
    assert critical["unmapped"] == {"vantage": "lab", "cvss_vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                                    "cvss_score": 9.8,
                                    "compliance": {"NIST SP 800-53 r5": ["SC-7", "AC-3"], "MITRE ATLAS": ["AML.T0049"]}}
    assert critical["evidences"][1] == {"name": "grpc-transcript", "data": {"calls": [
        "-> /tensorflow.WorkerService/GetStatus (empty request, no credentials, plaintext) <- OK [118-byte response]",
        "-> /tensorflow.grpc.MasterService/ListDevices (empty request, no credentials, plaintext) <- OK [95-byte response]"]}}
    assert (critical["status_id"], critical["status"]) == (1, "New")
    assert "first_seen_time" not in critical["finding_info"]  # no baseline: netaudit cannot know
    assert critical["finding_info"]["last_seen_time"] == critical["time"]
    high = next(r for r in records if r["severity_id"] == 4)
    assert high["resources"][0]["uid"] == "[2001:db8::5]:8500"
    assert high["vulnerabilities"] == [{"cwe": {"uid": "CWE-306"}}]
    assert high["unmapped"]["compliance"] == {"CWE": ["not-a-cwe"]}  # what has no home stays in unmapped
    info = next(r for r in records if r["severity_id"] == 1)
    assert info["resources"] == [{"uid": "198.18.1.99:9000", "name": "198.18.1.99:9000",
                                  "data": {"host": "198.18.1.99", "port": 9000, "kind": None, "transport": None,
                                           "authenticated": None}}]
    assert "evidences" not in info and "desc" not in info["finding_info"] and "vulnerabilities" not in info
    assert info["remediation"] == {"desc": ""}


def test_server_text_is_kept_exactly_but_for_what_utf8_cannot_carry():
    text = to_ocsf(scan_result())
    assert "\\u001b]0;pwned\\u0007" in text and "\\u202e" in text and "\\u009b" in text and "\\u0000" in text
    assert not re.search(r"\\ud[89a-f][0-9a-f]{2}", text), "no unpaired surrogate reaches the output"
    critical = check_every_record(text)[0]
    kept = re.sub("[\ud800-\udfff]", "\ufffd", HOSTILE)
    assert kept.count("\ufffd") == 4
    lines = ["GetStatus answered without credentials", "ListDevices: 8x GPU", kept]
    assert critical["finding_info"]["desc"] == "\n".join(lines)
    assert critical["evidences"][0] == {"name": "evidence", "data": {"lines": lines}}


def test_the_cli_writes_what_the_formats_table_writes(tmp_path):
    data = scan_result().to_dict()
    path = tmp_path / "scan.json"
    path.write_text(json.dumps(data))  # the surrogates are written as JSON escapes, which netaudit reads back
    proc = run("convert", str(path), "--format", "ocsf", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == to_ocsf(Recorded(json.loads(path.read_text())))
    assert len(check_every_record(proc.stdout)) == 5
    proc = run("convert", str(path), "-o", str(tmp_path / "findings.ocsf"), "--fail-on", "high", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr  # --fail-on works as for every format
    assert (tmp_path / "findings.ocsf").read_text() == to_ocsf(Recorded(json.loads(path.read_text())))


def test_no_findings_no_lines(tmp_path):
    assert to_ocsf(scan_result(findings=False)) == ""
    path = tmp_path / "scan.json"
    path.write_text(json.dumps(scan_result(findings=False).to_dict()))
    proc = run("convert", str(path), "--format", "ocsf", cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_baseline_and_acceptances_become_first_seen_and_status():
    data = scan_result().to_dict()
    baseline = scan_result().to_dict()
    baseline["findings"] = [f for f in baseline["findings"] if f["severity"] != "medium"]
    accepted = [Acceptance(None, "tls-legacy-version", None, None, "legacy clients until Q3", "ops", date(2099, 1, 1)),
                Acceptance(None, "modelserver-reload-exposed", None, None, "was fine", "ops", date(2020, 1, 1))]
    annotate(data, baseline, "run 7", accepted)
    records = {r["severity_id"]: r for r in check_every_record(to_ocsf(Recorded(data)))}
    new, persisting = records[3], records[5]
    assert new["finding_info"]["first_seen_time"] == new["time"] and new["unmapped"]["state"] == "new"
    assert "first_seen_time" not in persisting["finding_info"] and persisting["unmapped"]["state"] == "persisting"
    low = records[2]
    assert (low["status_id"], low["status"]) == (3, "Suppressed")
    assert low["status_detail"] == "accepted until 2099-01-01 by ops: legacy clients until Q3"
    assert low["unmapped"]["accepted"] == {"reason": "legacy clients until Q3", "owner": "ops", "expires": "2099-01-01",
                                           "expired": False}
    expired = records[4]
    assert (expired["status_id"], expired["status"]) == (1, "New")
    assert expired["status_detail"] == "the acceptance expired on 2020-01-01: the finding counts again"


def test_everything_is_bounded():
    huge = scan_result()
    huge.findings[0].evidence = [f"line {i} " + "x" * 400 for i in range(10_000)] + ["\u00e9" * 100_000]
    huge.findings[0].title = "T" * 100_000
    huge.findings[0].references = [f"https://example.invalid/{i}" for i in range(1_000)]
    huge.endpoints[0].details["transcript"] = [{"transport": "plaintext", "calls": [
        {"method": "/tensorflow.WorkerService/GetStatus", "request": "empty", "code": "OK", "size": 1}] * 5_000}]
    text = to_ocsf(huge)
    record = check_every_record(text)[0]
    desc = record["finding_info"]["desc"]
    assert len(desc.encode()) <= 64 * 1024 + 64 and re.search(r"… \([\d,]+ more characters\)$", desc)
    lines = record["evidences"][0]["data"]["lines"]
    assert sum(len(line.encode()) + 1 for line in lines) <= 64 * 1024 + 64 and re.fullmatch(r"… and [\d,]+ more lines", lines[-1])
    calls = record["evidences"][1]["data"]["calls"]
    assert sum(len(line.encode()) + 1 for line in calls) <= 64 * 1024 + 64 and re.fullmatch(r"… and [\d,]+ more lines", calls[-1])
    assert len(record["finding_info"]["title"].encode()) <= 4 * 1024 + 64
    assert len(record["remediation"]["references"]) == 64
    assert len(text.split("\n")[0]) < 400 * 1024


def test_a_report_with_policy_findings(tmp_path):
    scan = ScanResult(vantage="corp", started="2026-12-01T01:00:00Z", finished="2026-12-01T01:00:05Z", complete=True,
                      endpoints=[Endpoint("198.18.1.10", 2222, "open", "tf-server", "plaintext", False)],
                      findings=[Finding("tf-server-unauthenticated-plaintext", "critical", "198.18.1.10", 2222,
                                        "Unauthenticated tf.distribute.Server (plaintext)", ["GetStatus answered"],
                                        "Isolate it.", [], compliance={"CWE": ["CWE-306"]},
                                        cvss_vector="CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", cvss_score=9.8)])
    (tmp_path / "corp.json").write_text(json.dumps(scan.to_dict()))
    (tmp_path / "policy.toml").write_text('[segments.cluster]\ncidrs = ["198.18.1.0/24"]\ntrust = "trusted"\n\n'
                                          '[segments.corp]\ncidrs = ["198.18.3.0/24"]\ntrust = "untrusted"\n\n'
                                          '[[allow]]\nkinds = ["tf-server"]\nfrom = ["cluster"]\n')
    proc = run("report", "corp.json", "--policy", "policy.toml", "--no-history", "--format", "ocsf", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    records = check_every_record(proc.stdout)
    policy = [r for r in records if r["finding_info"]["types"][0].startswith("policy-")]
    assert policy, [r["finding_info"]["types"] for r in records]
    assert all(r["unmapped"]["context"] == "seen from corp (untrusted)" for r in policy)
    assert {r["unmapped"]["vantage"] for r in records} == {"corp"}
    # A report's time is when it was generated; its span starts with the earliest scan.
    assert {r["start_time"] for r in records} == {1796086800000} and not any("end_time" in r for r in records)
    # The report's JSON converts to the same records, but for the time it was generated again.
    proc = run("report", "corp.json", "--policy", "policy.toml", "--no-history", "--format", "json", "-o", "report.json",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["schema"] == "netaudit/report-v1"
    proc = run("convert", "report.json", "--format", "ocsf", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    converted = check_every_record(proc.stdout)
    assert [r["finding_info"]["uid"] for r in converted] == [f["id"] for f in report["findings"]]
    assert [r["finding_info"] | {"last_seen_time": 0} for r in converted] == \
           [r["finding_info"] | {"last_seen_time": 0} for r in records]


def test_every_command_offers_ocsf(tmp_path):
    from netaudit.cli.parser import build_parser
    from netaudit.outputs.formats import BY_SUFFIX, WHOLE

    assert "ocsf" in WHOLE and BY_SUFFIX[".ocsf"] == "ocsf"
    parser = build_parser()
    for argv in (["scan", "198.18.1.10", "--format", "ocsf"], ["report", "a.json", "--format", "ocsf"],
                 ["convert", "a.json", "--format", "ocsf"]):
        assert parser.parse_args(argv).format == "ocsf"
    for command in ("scan", "report", "convert"):
        proc = run(command, "--help", cwd=tmp_path)
        assert proc.returncode == 0 and "ocsf" in proc.stdout and "OCSF 1.5.0 Detection Finding" in " ".join(proc.stdout.split())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_result_netaudit_accepts_gives_valid_records(data, tmp_path_factory):
    """Whatever a result file holds, if convert takes it, every record it writes is valid; never exit 4."""
    from netaudit.cli.main import main

    scan = copy.deepcopy(MUTABLE)
    where = data.draw(st.sampled_from(list(paths(scan))[1:]))
    node = scan
    for part in where[:-1]:
        node = node[part]
    node[where[-1]] = data.draw(MUTATIONS)
    folder = tmp_path_factory.mktemp("mutated")
    (folder / "r.json").write_text(json.dumps(scan))
    code = main(["convert", str(folder / "r.json"), "--format", "ocsf", "-o", str(folder / "out.ocsf")])
    assert code in (0, 1, 2), (where, node[where[-1]])
    if code != 2:
        check_every_record((folder / "out.ocsf").read_text())


def _mutable() -> dict:
    data = scan_result().to_dict()
    data["findings"] = data["findings"][:2]
    data["findings"][0]["state"] = "new"
    data["findings"][0]["accepted"] = {"reason": "r", "owner": "o", "expires": "2099-01-01", "expired": False}
    data["findings"][1]["context"] = "seen from corp (untrusted)"
    data["diff"] = {"baseline": "run 1", "new": [], "persisting": [], "resolved": []}
    return data


MUTABLE = _mutable()
