"""Machine outputs for pipelines: SARIF 2.1.0 (code-scanning dashboards) and JUnit XML (CI test reports).

Both take the same dict as the JSON output, from a single scan or a merged report. Network locations
follow OWASP ZAP's SARIF template: an absolute URI (`grpc://host:port`) in artifactLocation, which SARIF
2.1.0 allows (a `uri-reference`), plus a logical location of kind "resource"; GitHub's `security-severity`
carries the CVSS score. Sources:
https://github.com/zaproxy/zap-extensions/tree/main/addOns/reports/src/main/zapHomeFiles/reports/sarif-json
https://github.com/oasis-tcs/sarif-spec/blob/e0583813964ec43cea53b6b531b402866095ed1f/sarif-2.1/schema/sarif-schema-2.1.0.json
https://docs.github.com/en/code-security/code-scanning/integrating-with-code-scanning/sarif-support-for-code-scanning
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

from netaudit import __version__
from netaudit.core import registry
from netaudit.core.model import SEVERITIES, vantage_name
from netaudit.outputs.json_pieces import iter_json
from netaudit.results.spool import briefs, sorted_items

BASELINE_STATE = {"new": "new", "persisting": "unchanged"}
SARIF_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
# GitHub's bands (security-severity): over 9.0 critical, 7.0-8.9 high, 4.0-6.9 medium, below low.
DEFAULT_SCORE = {"critical": 9.5, "high": 8.0, "medium": 5.5, "low": 3.0, "info": 0.0}
INFO_URI = "https://github.com/netaudit/netaudit"
INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _kinds(data: dict[str, Any]) -> dict[tuple[str, int], str | None]:
    return {(e["host"], e["port"]): e.get("kind") for e in data["endpoints"]}


def _identified(kind: str | None) -> bool:
    """A service netaudit named by its protocol or product (not a bare TLS port or an unknown one)."""
    declared = registry.kind(kind)
    return declared is not None and declared.uri_scheme != "tcp"


def _location(finding: dict[str, Any], kind: str | None) -> dict[str, Any]:
    address = f"[{finding['host']}]:{finding['port']}" if ":" in finding["host"] else f"{finding['host']}:{finding['port']}"
    scheme = registry.kind(kind).uri_scheme if registry.kind(kind) else "tcp"
    return {"physicalLocation": {"artifactLocation": {"uri": f"{scheme}://{address}"}},
            "logicalLocations": [{"name": address, "kind": "resource"}]}


def _score(finding: dict[str, Any]) -> float:
    score = finding.get("cvss_score")
    return DEFAULT_SCORE[finding["severity"]] if score is None else score  # None: an advisory summary's rule


def to_sarif(result) -> str:
    return "".join(sarif_pieces(result))


def sarif_pieces(result) -> Iterator[str]:
    """Written in pieces: a first pass over the findings makes the rules (each with the highest score of its
    findings), a second writes the results, so no list of results is ever held."""
    data = result.to_dict()
    kinds = _kinds(data)
    rules: dict[str, dict[str, Any]] = {}
    for f in data["findings"]:
        score = _score(f)
        rule = rules.setdefault(f["rule"], {
            "id": f["rule"], "name": f["rule"].replace("-", " ").replace("@", " from "),
            "shortDescription": {"text": f["title"]}, "help": {"text": f["remediation"]},
            "helpUri": f["references"][0] if f["references"] else INFO_URI,
            "properties": {"security-severity": f"{score:.1f}", "tags": ["security", "network", "tensorflow"]}})
        if float(rule["properties"]["security-severity"]) < score:
            rule["properties"]["security-severity"] = f"{score:.1f}"

    def results() -> Iterator[dict[str, Any]]:
        for f in data["findings"]:
            yield {
                **({"baselineState": BASELINE_STATE[f["state"]]} if (data.get("diff") or {}).get("baseline") else {}),
                "ruleId": f["rule"], "level": SARIF_LEVEL[f["severity"]], "message": {"text": f["title"]},
                "locations": [_location(f, kinds.get((f["host"], f["port"])))],
                "partialFingerprints": {"netauditFindingId/v1": f["id"]},
                "properties": {"severity": f["severity"], "evidence": f["evidence"],
                               "compliance": f.get("compliance", {}),
                               **({"cvss": {"vector": f["cvss_vector"], "score": f["cvss_score"]}}
                                  if f.get("cvss_vector") else {})}}
        for f in (data.get("diff") or {}).get("resolved", []):
            if f["rule"] in rules:
                yield {"baselineState": "absent", "ruleId": f["rule"], "level": "none",
                       "message": {"text": "resolved since the baseline: " + f["title"]},
                       "locations": [_location(f, kinds.get((f["host"], f["port"])))],
                       "partialFingerprints": {"netauditFindingId/v1": f["id"]}}

    vantage = vantage_name(data)
    run = {"tool": {"driver": {"name": "netaudit", "version": __version__, "informationUri": INFO_URI,
                               "rules": list(rules.values())}},
           "automationDetails": {"id": f"netaudit/{vantage}/{data.get('started') or data.get('generated')}"},
           "invocations": [{"executionSuccessful": bool(data["complete"])}],
           "results": results()}
    yield from iter_json({"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0",
                          "runs": [run]})
    yield "\n"


def xml_safe(text: str) -> str:
    """Drop characters XML 1.0 cannot carry: server-supplied strings may hold control characters."""
    return INVALID_XML.sub("\ufffd", text)


def to_junit(result) -> str:
    return "".join(junit_pieces(result))


def junit_pieces(result) -> Iterator[str]:
    """One test case per finding (a failure) and one per open TF endpoint without findings (a pass); for a
    merged report, also one per policy expectation: each vantage-to-endpoint cell the policy judges.
    Written a test case at a time: the counts the suite opens with come from a first pass."""
    data = result.to_dict()
    order = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    label = data.get("vantage") or ("report" if "reachability" in data else "scan")
    failing = {(f["host"], f["port"]) for f in briefs(data["findings"])}
    passing = [(ep["host"], ep["port"], ep["kind"]) for ep in data["endpoints"]
               if ep["state"] == "open" and _identified(ep.get("kind")) and (ep["host"], ep["port"]) not in failing]
    # A policy finding is named RULE@SEGMENT (policy/reachability.py, policy/k8s_policy.py): the cell it fails.
    violations: dict[tuple[str, str, int], dict[str, Any]] = {}
    for f in data["findings"] if "reachability" in data else ():
        if "@" in f["rule"]:
            violations.setdefault((f["rule"].rsplit("@", 1)[1], f["host"], f["port"]), f)
    expectations = [(row, violations.get((row["segment"], row["host"], row["port"])))
                    for row in data.get("reachability", [])
                    if row["segment"] and row["kind"] in registry.sensitive_kinds()]
    cases = len(data["findings"]) + len(passing) + len(expectations) + (not data["complete"])
    failures = len(data["findings"]) + sum(1 for _, violation in expectations if violation)

    def cases_xml() -> Iterator[ET.Element]:
        for f in sorted_items(data["findings"], lambda f: (order[f["severity"]], f["host"], f["port"])):
            case = ET.Element("testcase", classname=xml_safe(f"{f['host']}:{f['port']}"),
                              name=xml_safe(f"{f['rule']}: {f['title']}"))
            failure = ET.SubElement(case, "failure", type=f["severity"], message=xml_safe(f["title"]))
            failure.text = xml_safe("\n".join(f["evidence"]) + "\n\nRemediation: " + f["remediation"])
            yield case
        for host, port, kind in passing:
            yield ET.Element("testcase", classname=xml_safe(f"{host}:{port}"), name=f"{kind}: no findings")
        for row, violation in expectations:
            name = f"policy: {row['vantage']} -> {row['kind']} {row['host']}:{row['port']} ({row['state']})"
            case = ET.Element("testcase", classname=xml_safe(f"policy.{row['vantage']}"), name=xml_safe(name))
            if violation:
                ET.SubElement(case, "failure", type=violation["severity"], message=xml_safe(violation["title"])).text = \
                    xml_safe("\n".join(violation["evidence"]))
            yield case
        if not data["complete"]:
            case = ET.Element("testcase", classname="netaudit", name="scan completed")
            ET.SubElement(case, "error", type="incomplete", message="the scan did not finish; results are partial")
            yield case

    suite = ET.Element("testsuite", name=xml_safe(f"netaudit:{label}"), tests=str(cases), failures=str(failures),
                       errors=str(int(not data["complete"])))
    yield '<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="netaudit">\n  '
    if not cases:
        yield ET.tostring(suite, encoding="unicode") + "\n</testsuites>\n"
        return
    yield ET.tostring(suite, encoding="unicode").removesuffix(" />") + ">"
    for case in cases_xml():
        ET.indent(case, level=2)
        yield "\n    " + ET.tostring(case, encoding="unicode")
    yield "\n  </testsuite>\n</testsuites>\n"


def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def to_prom(result) -> str:
    """A Prometheus textfile (node_exporter's textfile collector): findings by severity and rule, new
    findings, exposed TF endpoints by kind, scan duration and completeness, so existing alerting works."""
    from collections import Counter
    from datetime import datetime

    data = result.to_dict()
    vantage = _label(vantage_name(data))
    lines = ["# HELP netaudit_findings Findings in the latest run, by severity and rule.",
             "# TYPE netaudit_findings gauge"]
    for (severity, rule), count in sorted(Counter((f["severity"], f["rule"]) for f in data["findings"]).items()):
        lines.append(f'netaudit_findings{{vantage="{vantage}",severity="{severity}",rule="{_label(rule)}"}} {count}')
    lines += ["# HELP netaudit_new_findings Findings not in the baseline run, by severity.",
              "# TYPE netaudit_new_findings gauge"]
    new = Counter(f["severity"] for f in data["findings"] if f.get("state") == "new")
    for severity in SEVERITIES:
        lines.append(f'netaudit_new_findings{{vantage="{vantage}",severity="{severity}"}} {new[severity]}')
    lines += ["# HELP netaudit_exposed_endpoints Open TF endpoints, by kind.", "# TYPE netaudit_exposed_endpoints gauge"]
    kinds = Counter(e["kind"] for e in data["endpoints"] if e["state"] == "open")
    for kind in registry.sensitive_kinds():
        lines.append(f'netaudit_exposed_endpoints{{vantage="{vantage}",kind="{kind}"}} {kinds[kind]}')
    started, finished = data.get("started"), data.get("finished")
    if started and finished:
        parse = lambda t: datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
        lines += ["# HELP netaudit_scan_duration_seconds Wall time of the scan.",
                  "# TYPE netaudit_scan_duration_seconds gauge",
                  f'netaudit_scan_duration_seconds{{vantage="{vantage}"}} {(parse(finished) - parse(started)).total_seconds():g}']
    lines += ["# HELP netaudit_scan_complete 1 when the run finished, 0 when it was cut short.",
              "# TYPE netaudit_scan_complete gauge", f'netaudit_scan_complete{{vantage="{vantage}"}} {int(bool(data["complete"]))}']
    return "\n".join(lines) + "\n"
