"""Three of the output formats (netaudit/outputs/formats.py lists them all) for a scan result or a merged
report: the scan-v1/report-v1 JSON, a terminal summary, and HTML.

JSON keeps every string exactly as the server sent it; the terminal summary shows each control
character as an escape (netaudit/core/textsafe.py), so no server can write to the user's terminal."""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from netaudit.assess import rules
from netaudit.core import registry
from netaudit.outputs.advice import build_advice
from netaudit.core.caps import more
from netaudit.policy.reachability import VERDICTS
from netaudit.core.model import SEVERITIES, endpoint_order, severity_rank, vantage_name
from netaudit.core.textsafe import terminal_lines, terminal_safe
from netaudit.outputs.json_pieces import iter_json
from netaudit.results.spool import briefs, sorted_items
from netaudit.transport.transcript import sentences

AUTH_TEXT = {True: "yes", False: "NO", None: "?"}
# A report stays readable and small at 20,000 findings: full cards (evidence, remediation) for the most
# severe ones, one table row for every finding, a bounded list of links per compliance control.
CARD_LIMIT = 250
COMPLIANCE_LINKS = 25


def as_dict(result) -> dict[str, Any]:
    """A result as every format writes it: a merged report gets its isolation advice here, in the outputs."""
    data = result.to_dict()
    if "reachability" in data and "advice" not in data:
        data["advice"] = build_advice(data)
    return data


def json_pieces(result) -> Iterator[str]:
    yield from iter_json(as_dict(result))
    yield "\n"


def to_json(result) -> str:
    return "".join(json_pieces(result))


def endpoint_summary(ep: dict[str, Any]) -> str:
    """One line that says what matters about an endpoint: its role, devices and version, or what it is.
    Server-supplied text in it is escaped for the terminal; what the caps (core/caps.py, core/bounds.py) cut is counted."""
    details = ep.get("details", {})
    cut = details.get("truncated", {})
    parts = []
    if "job" in details:
        parts.append(f"{details['job']}:{details['task']}")
    if details.get("devices"):
        kinds = Counter(d["device_type"] for d in details["devices"])
        parts.append(", ".join(f"{n}x{t}" for t, n in sorted(kinds.items()))
                     + (f" {more(cut['devices'], 'devices')}" if cut.get("devices") else ""))
    if "tf_version" in details:
        parts.append(f"TF {details['tf_version']['range']}")
    if details.get("coordination") == "leader":
        parts.append("coordination leader")
    if details.get("product"):
        parts.append(" ".join(str(details[k]) for k in ("product", "version") if details.get(k)))
    if details.get("logdir"):
        parts.append(f"logdir {details['logdir']}, {details.get('runs_total', 0)} runs")
    if details.get("models"):
        parts.append("models: " + ", ".join(_model_summary(name, model) for name, model in details["models"].items())
                     + (f" {more(cut['models'], 'models')}" if cut.get("models") else ""))
    if details.get("admin_reload") == "reachable":
        parts.append("reload API open")
    if details.get("reflection_services"):
        parts.append("reflection: " + ", ".join(details["reflection_services"])
                     + (f" {more(cut['reflection_services'], 'services')}" if cut.get("reflection_services") else ""))
    if "banner" in details:
        parts.append(f"banner {details['banner'][:40]!r}")
    if "http_status" in details:
        parts.append(details["http_status"])
    if details.get("tls"):
        parts.append(f"{details['tls'].get('version')}, ALPN {details['tls'].get('alpn') or 'none'}")
    if "target_name" in details:
        parts.append(f"({details['target_name']})")
    if "probe_error" in details:
        error = details["probe_error"]
        parts.append(f"probe error during {error['during']}: {error['error']}")
    if not parts and ep["state"] != "open":
        parts.append(ep["evidence"][0] if ep["evidence"] else "")
    return terminal_safe("; ".join(str(p) for p in parts if p))


def _model_summary(name: str, model: dict[str, Any]) -> str:
    """`half_plus_two v1,2`: TF Serving's versions are records, the Open Inference Protocol's strings; a
    V1 listing has only readiness."""
    versions = [str(v["version"]) if isinstance(v, dict) else str(v) for v in model.get("versions") or ()]
    ready = {True: "", False: " (not ready)", None: ""}.get(model.get("ready"), "")
    return name + (f" v{','.join(versions)}" if versions else "") + ready


def _table(rows: list[list[str]]) -> list[str]:
    rows = [[terminal_safe(str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows]


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _sorted_findings(findings: Sequence[dict[str, Any]]) -> Sequence[dict[str, Any]]:
    order = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    return sorted_items(findings, lambda f: (order[f["severity"]], f["host"], f["port"], f["rule"]))


def _endpoint_and_finding_lines(data: dict[str, Any]) -> list[str]:
    lines = []
    if data["endpoints"]:
        rows = [["ENDPOINT", "STATE", "KIND", "TRANSPORT", "AUTH", "DETAILS"]]
        for ep in data["endpoints"]:
            rows.append([_address(ep["host"], ep["port"]), ep["state"], ep["kind"] or "-", ep["transport"] or "-",
                         AUTH_TEXT[ep["authenticated"]] if ep["state"] == "open" else "-", endpoint_summary(ep)])
        lines += _table(rows)
    elif listed := (data.get("stream") or {}).get("endpoints"):  # a run as history keeps it (results.stream)
        lines.append(f"{plural(listed, 'endpoint')} listed by the scan: its output holds them, history keeps the "
                     "findings")
    else:
        lines.append("no open ports found")
    counts = Counter(f["severity"] for f in briefs(data["findings"]))
    diff = data.get("diff")
    if diff and diff["baseline"]:
        lines += ["", f"SINCE {diff['baseline']}: {len(diff['new'])} new, {len(diff['persisting'])} persisting, "
                      f"{len(diff['resolved'])} resolved"]
        lines += [f"  RESOLVED  {f['severity'].upper():8}  {f['title']}" for f in diff["resolved"]]
    if expired := data.get("expired_acceptances"):
        lines += ["", f"EXPIRED ACCEPTANCES ({len(expired)}): the findings they covered count again"]
        lines += [f"  {a['entry']}  expired {a['expires']}  owner {a['owner']}  covers {len(a['covers'])} "
                  f"finding{'' if len(a['covers']) == 1 else 's'}: {a['reason']}" for a in expired]
    lines += ["", f"FINDINGS ({len(data['findings'])})"
              + (": " + ", ".join(f"{counts[s]} {s}" for s in reversed(SEVERITIES) if counts[s]) if counts else "")]
    for index, f in enumerate(_sorted_findings(data["findings"])):
        marks = ("NEW " if f.get("state") == "new" and (data.get("diff") or {}).get("baseline") else "") + ("ACCEPTED " if f.get("accepted") and
                                                               not f["accepted"]["expired"] else "")
        lines.append(f"  {f['severity'].upper():8}  {marks}{f['title']}  [{f['rule']}]")
        if index < CARD_LIMIT:  # the evidence of the most severe, as the HTML report's cards
            if f.get("evidence") and (proof := why(f["rule"])):  # history keeps no evidence
                lines.append(f"            {WHY_LABEL}: {proof}")
            lines += [f"            {line}" for line in f.get("evidence", ())]
    return lines


def transcripts(endpoints: list[dict[str, Any]], wanted: set[tuple[str, int]]) -> dict[tuple[str, int], list[str]]:
    """The recorded gRPC calls of the wanted endpoints, as sentences."""
    return {(ep["host"], ep["port"]): sentences(ep["details"]["transcript"]) for ep in endpoints
            if (ep["host"], ep["port"]) in wanted and ep.get("details", {}).get("transcript")}


def matrix(data: dict[str, Any]) -> tuple[list[str], list[tuple[dict[str, Any], list[dict[str, Any]]]]]:
    """Vantages (columns) and, per endpoint, its reachability row from each vantage."""
    vantages = list(dict.fromkeys(r["vantage"] for r in data["reachability"]))
    cells = {(r["vantage"], r["host"], r["port"]): r for r in data["reachability"]}
    return vantages, [(ep, [cells[(v, ep["host"], ep["port"])] for v in vantages]) for ep in data["endpoints"]]


# The label of a finding's why-line, the same in the text output and the HTML cards.
WHY_LABEL = "Why this proves it"


@functools.cache
def why(rule_id: str) -> str | None:
    """The why-line its rule declares for a finding, from whichever rule file declares the rule: the families'
    and the policy's (assess/rules.py), the k8s identity check's and the NetworkPolicy rules'. None for a rule
    this netaudit does not know (a result written by another release)."""
    from netaudit.assess.k8s_identity import mismatch_rule
    from netaudit.policy.k8s_policy import intent_rules

    base = rule_id.split("@", 1)[0]
    return rules.why(base) or next((r.why for r in (mismatch_rule(), *intent_rules()) if r.id == base), None)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def to_text(result) -> str:
    data = as_dict(result)
    if "reachability" not in data:
        stats = data.get("stats") or {}
        status = "complete" if data["complete"] else f"INCOMPLETE ({stats.get('incomplete_reason', 'stopped')})"
        lines = [f"netaudit scan  {data['started']} -> {data['finished'] or '(not finished)'}  "
                 f"vantage: {vantage_name(data)}  {status}",
                 f"{plural(stats.get('probes', 0), 'port')} probed, states: "
                 + (", ".join(f"{k} {v}" for k, v in sorted(stats.get("states", {}).items())) or "none recorded")
                 + (f"; probe errors on {stats['probe_errors']} endpoints" if stats.get("probe_errors") else ""), ""]
        return terminal_lines("\n".join(lines + _endpoint_and_finding_lines(data))) + "\n"
    vantages, rows = matrix(data)
    lines = [f"netaudit report  {data['generated']}  {plural(len(data['scans']), 'scan')}: "
             + ", ".join(f"{s['vantage']} ({s['segment'] or 'no segment'})" for s in data["scans"])
             + ("" if data["complete"] else "  INCOMPLETE: a scan did not finish")]
    lines += [f"  {s['vantage']}: {shard_note(s['shards'])}" for s in data["scans"] if s.get("shards")]
    lines += ["", "REACHABILITY"]
    table = [["ENDPOINT", "KIND", *vantages]]
    table += [[_address(ep["host"], ep["port"]), ep.get("kind") or "-", *(cell_label(c) for c in cells)]
              for ep, cells in rows]
    lines += _table([r + [""] for r in table])
    lines += ["", "LEGEND"] + [f"  {mark:<13} {text}" for _, mark, text in legend(rows)] + [""]
    lines.append("EVIDENCE PER CELL")
    for ep, cells in rows:
        lines += [f"  {c['vantage']} -> {_address(ep['host'], ep['port'])}: {c['evidence']}" for c in cells]
    lines.append("")
    if data["expected_unreachable"]:
        lines.append("EXPECTED BUT UNREACHABLE")
        lines += [f"  {r['kind']} {_address(r['host'], r['port'])} from {r['vantage']}: {r['state']}"
                  + (f" ({r['reason']})" if r.get("reason") else "") for r in data["expected_unreachable"]]
        lines.append("")
    return terminal_lines("\n".join(lines + _endpoint_and_finding_lines(data))) + "\n"


def shard_note(shards: dict[str, Any]) -> str:
    """What a merge of shard results holds, and what it lacks."""
    text = f"{len(shards['present'])} of {shards['count']} shards"
    if shards["missing"]:
        text += ", missing " + ", ".join(f"{k}/{shards['count']}" for k in shards["missing"])
    if shards["unfinished"]:
        text += ", unfinished " + ", ".join(f"{k}/{shards['count']}" for k in shards["unfinished"])
    return text


# How a matrix cell reads in text: the verdict's mark, then the state and the reply.
CELL_MARKS = {"open-not-allowed": "OPEN!", "open-allowed": "open+", "open": "open", "blocked": "blocked",
              "expected-unreachable": "UNREACHABLE!", "unknown": "?", "intent-unknown": "?policy"}


def cell_verdict(cell: dict[str, Any]) -> str:
    return cell.get("verdict") or ("open" if cell["state"] == "open" else "unknown")


def cell_parts(cell: dict[str, Any]) -> tuple[str, str]:
    """A matrix cell as (its verdict's mark, what was seen): the mark is the legend's word, so a cell that
    breaks the policy reads differently from an allowed one without its colour."""
    mark = CELL_MARKS[cell_verdict(cell)]
    if cell["state"] == "open":
        return mark, ""
    if cell.get("reason") == "not-probed":
        return mark, "not probed"
    return mark, cell["state"] + (f" ({cell['reason']})" if cell.get("reason") else "")


def cell_label(cell: dict[str, Any]) -> str:
    return " ".join(part for part in cell_parts(cell) if part)


def legend(rows: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> list[tuple[str, str, str]]:
    """(verdict, mark, meaning) of each verdict the matrix shows, in the legend's order: a legend entry
    that no cell shows would only be noise."""
    shown = {cell_verdict(c) for _, cells in rows for c in cells}
    return [(v, CELL_MARKS[v], text) for v, text in VERDICTS.items() if v in shown]


def facets(data: dict[str, Any]) -> dict[tuple[str, int], dict[str, str]]:
    """Per endpoint, what the HTML report filters on: its worst finding, kind, family, policy segment and the
    vantages that reached it. The same values tag the endpoint's rows, its findings and its matrix row."""
    segments = [(ipaddress.ip_network(cidr), name) for name, seg in ((data.get("policy") or {}).get("segments")
                                                                    or {}).items() for cidr in seg["cidrs"]]
    reached: dict[tuple[str, int], list[str]] = {}
    if "reachability" in data:
        for r in data["reachability"]:
            if r["state"] == "open":
                reached.setdefault((r["host"], r["port"]), []).append(r["vantage"])
    worst: dict[tuple[str, int], str] = {}
    for f in briefs(data["findings"]):
        key = (f["host"], f["port"])
        if key not in worst or severity_rank(f["severity"]) > severity_rank(worst[key]):
            worst[key] = f["severity"]
    segment_of: dict[str, str] = {}
    out = {}
    for ep in data["endpoints"]:
        key = (ep["host"], ep["port"])
        if ep["host"] not in segment_of:
            address = ipaddress.ip_address(ep["host"])
            segment_of[ep["host"]] = next((name for net, name in segments if address in net), "-")
        vantages = reached.get(key) if "reachability" in data else \
            [data.get("vantage") or "(not named)"] if ep["state"] == "open" else []
        out[key] = {"severity": worst.get(key, "none"), "kind": ep.get("kind") or "-",
                    "family": family(ep.get("kind")), "segment": segment_of[ep["host"]],
                    "vantage": " ".join(vantages or [])}
    return out


def family(kind: str | None) -> str:
    known = registry.kind(kind)
    return known.family if known else "other"


def script_hash(script: str) -> str:
    """The CSP source that lets exactly this inline script run, and nothing else."""
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


def to_html(result) -> str:
    return "".join(html_pieces(result))


def html_pieces(result) -> Iterator[str]:
    """The report as jinja renders it, a piece at a time: the template reads the endpoints and findings in
    passes, and a spooled result (netaudit/results/spool.py) is never one list or one string."""
    from importlib import resources

    from jinja2 import Environment, FileSystemLoader

    templates = resources.files("netaudit.report_templates")
    env = Environment(loader=FileSystemLoader(str(templates)), autoescape=True)
    env.filters.update(summary=endpoint_summary, why=why, cell_parts=cell_parts, cell_verdict=cell_verdict,
                       legend=legend)
    data = as_dict(result)
    if "advice" not in data:
        data["advice"] = build_advice(data)
    vantages, rows = matrix(data) if "reachability" in data else ([], [])
    findings = _sorted_findings(data["findings"])
    tags = facets(data)
    choices = {name: sorted({t[name] for t in tags.values()} - {"-", "none", ""}) for name in
               ("kind", "family", "segment")}
    choices["vantage"] = vantages or sorted({v for t in tags.values() for v in t["vantage"].split()})
    script = templates.joinpath("report.js").read_text()
    return env.get_template("report.html.j2").generate(
        result=data, findings=findings, counts=Counter(f["severity"] for f in briefs(data["findings"])),
        severities=list(reversed(SEVERITIES)), vantages=vantages, matrix_rows=rows, controls=by_control(findings),
        trend=trend_svg(data.get("trend") or []), verdicts=VERDICTS, verdict_marks=CELL_MARKS,
        exposed=critical_endpoints(briefs(data["findings"]), data["endpoints"]), why_label=WHY_LABEL,
        kubernetes=kubernetes_view(data["endpoints"], tags),
        card_limit=CARD_LIMIT, compliance_links=COMPLIANCE_LINKS, tags=tags, no_tags=NO_TAGS, choices=choices,
        transcripts=transcripts(data["endpoints"], {(f["host"], f["port"]) for f in findings[:CARD_LIMIT]}),
        script=script, script_hash=script_hash(script), severity_rank=severity_rank,
        css=templates.joinpath("report.css").read_text())


NO_TAGS = {"severity": "none", "kind": "-", "family": "other", "segment": "-", "vantage": ""}


@dataclass
class K8sWorkload:
    """One Kubernetes workload in the report: its endpoints with the pod identity each carries (details.k8s,
    from a k8s: target source)."""

    namespace: str
    label: str  # "TFJob mnist", "InferenceService flowers", "Deployment serving", "Service tf-ps"
    rows: list[dict[str, Any]] = field(default_factory=list)


def _workload_label(k8s: dict[str, Any]) -> str:
    for key, kind in (("tfjob", "TFJob"), ("inferenceservice", "InferenceService")):
        if k8s.get(key):
            return f"{kind} {k8s[key]}"
    if k8s.get("service"):  # a Service address, not a pod: the workload is the Service
        return f"Service {k8s['service']}"
    if k8s.get("owner_kind"):
        return f"{k8s['owner_kind']} {k8s.get('owner_name') or '?'}"
    return f"Pod {k8s.get('pod') or '?'}"


def kubernetes_view(endpoints: Iterable[dict[str, Any]],
                    tags: dict[tuple[str, int], dict[str, str]]) -> list[K8sWorkload]:
    """The endpoints that carry a Kubernetes identity, grouped by namespace and workload, in that order; one
    pass, keeping a few fields per endpoint."""
    groups: dict[tuple[str, str], K8sWorkload] = {}
    for ep in endpoints:
        k8s = (ep.get("details") or {}).get("k8s")
        if not isinstance(k8s, dict):
            continue
        namespace = str(k8s.get("namespace") or "-")
        label = _workload_label(k8s)
        replica = " ".join(str(k8s[key]) for key in ("replica_type", "replica_index") if k8s.get(key) is not None)
        group = groups.setdefault((namespace, label), K8sWorkload(namespace, label))
        group.rows.append({
            "host": ep["host"], "port": ep["port"], "state": ep["state"], "kind": ep.get("kind") or "-",
            "pod": k8s.get("pod") or ("pods " + ", ".join(k8s.get("pods") or []) if k8s.get("service") else "-"),
            "replica": replica or "-", "node": k8s.get("node") or "-",
            "via": ("NodePort" if k8s.get("node_port") else k8s.get("type") or "Service") if k8s.get("service")
            else ("hostNetwork" if k8s.get("host_network") else "pod IP"),
            "services": ", ".join(k8s.get("services") or []) or "-",
            "severity": tags.get((ep["host"], ep["port"]), NO_TAGS)["severity"]})
    return [groups[key] for key in sorted(groups)]


# How many addresses the summary banner names per kind before it says "and N more".
BANNER_ADDRESSES = 20


def critical_endpoints(findings: Iterable[dict[str, Any]], endpoints: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The endpoints the critical findings are on, per kind (registry order): the banner names exactly what
    it counts. Each entry: label, count, the first BANNER_ADDRESSES addresses and how many more there are."""
    on: dict[tuple[str, int], None] = {(f["host"], f["port"]): None for f in findings if f["severity"] == "critical"}
    by_kind: dict[str | None, list[tuple[str, int]]] = {}
    for e in endpoints:
        if (e["host"], e["port"]) in on:
            by_kind.setdefault(e.get("kind"), []).append((e["host"], e["port"]))
            del on[(e["host"], e["port"])]
    order = list(registry.kinds())
    out = []
    for kind in sorted(by_kind, key=lambda k: order.index(k) if k in order else len(order)):
        keys = sorted(by_kind[kind], key=lambda k: endpoint_order(*k))
        declared = registry.kind(kind)
        out.append({"label": declared.label if declared else kind or "unidentified", "count": len(keys),
                    "addresses": [_address(*k) for k in keys[:BANNER_ADDRESSES]],
                    "more": max(0, len(keys) - BANNER_ADDRESSES)})
    return out


def trend_svg(trend: list) -> dict | None:
    """Bars per run (findings by severity), as plain numbers the template turns into inline SVG rects."""
    if len(trend) < 2:
        return None
    peak = max(sum(counts.values()) for _, _, counts in trend) or 1
    bars = []
    for index, (run_id, started, counts) in enumerate(trend[-30:]):
        y, stack = 120.0, []
        for severity in SEVERITIES:
            height = 100.0 * counts.get(severity, 0) / peak
            if height:
                y -= height
                stack.append({"severity": severity, "y": round(y, 1), "height": round(height, 1),
                              "count": counts[severity]})
        bars.append({"x": 10 + index * 24, "run": run_id, "started": started, "stack": stack})
    return {"bars": bars, "width": 20 + 24 * len(bars)}


@dataclass
class ControlFindings:
    """The findings that map to one compliance control: how many, and the first COMPLIANCE_LINKS of them
    (what the report links), so thousands of findings are counted, not kept."""

    total: int = 0
    first: list[dict[str, Any]] = field(default_factory=list)


def by_control(findings: Iterable[dict[str, Any]]) -> dict[str, dict[str, ControlFindings]]:
    """framework -> control id -> the findings that map to it: the compliance view."""
    view: dict[str, dict[str, ControlFindings]] = {}
    for f in findings:
        for framework, ids in f.get("compliance", {}).items():
            for control in ids:
                entry = view.setdefault(framework, {}).setdefault(control, ControlFindings())
                entry.total += 1
                if len(entry.first) < COMPLIANCE_LINKS:
                    entry.first.append({k: f[k] for k in ("id", "severity", "host", "port", "rule")})
    return {fw: dict(sorted(controls.items())) for fw, controls in view.items()}
