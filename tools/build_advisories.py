"""Maintainer script: rebuild netaudit/data/tf_advisories.json from local copies of the advisory databases.

The scanner never goes online; it reads only the JSON this writes. Sources (each a local directory):

  --pypa       pypa/advisory-database: a work tree or a bare git directory (vulns/tensorflow, tensorflow-cpu,
               tensorflow-gpu, tensorflow-serving-api if present). Required. Gives PYSEC, GHSA and CVE ids,
               affected ranges, fixed releases and the description; no severity.
  --ghsa-osv   a copy of pypa/advisory-database that also holds records created from the GitHub Security
               Advisory Database (westonsteimel/advisory-database-pypa; work tree or bare git directory).
               Adds the GHSA-only advisories (TF published every one from 2022-05 on only there) with their
               CVSS vectors. Only records the --pypa copy lacks are read, and their PYSEC ids are dropped:
               they were assigned in that copy, not in pypa/advisory-database.
  --ghsa       GitHub advisory records (OSV JSON): a github/advisory-database work tree, or any directory of
               GHSA-*.json files saved from it (e.g. .cache/advisories/ghsa). Adds GHSA ids, the severity
               GitHub assigned (also where no CVSS vector exists) and the CVSS vector.
  --tfsa       tfsa-*.md files: tensorflow/tensorflow's tensorflow/security/advisory directory, or a directory
               of files saved from it. TFSA ids by CVE.
  tools/tf_serving_advisories.toml (in this repository): TF Serving advisories, curated with sources.

Fetched copies stay outside the repository or under .cache/ (gitignored); only the JSON this writes is
committed.

    .venv/bin/python tools/build_advisories.py --pypa /path/to/advisory-database \\
        [--ghsa-osv /path/to/advisory-database-pypa] [--ghsa .cache/advisories/ghsa] [--tfsa DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tarfile
import tomllib
from datetime import date
from io import BytesIO
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netaudit.core.advisories import parse  # noqa: E402
from netaudit.assess.scoring import band, scores  # noqa: E402

OUT = ROOT / "netaudit" / "data" / "tf_advisories.json"
SERVING = ROOT / "tools" / "tf_serving_advisories.toml"
TF_PACKAGES = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu")
SERVING_PACKAGES = ("tensorflow-serving-api", "tensorflow-serving-api-gpu")
BOILERPLATE = re.compile(r"^(In affected versions of TensorFlow,? |TensorFlow is an? (end-to-end )?open[- ]source "
                         r"(platform|library) for machine learning\.\s*)", re.I)
RELEASE = re.compile(r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?")
URL_ORDER = (re.compile(r"/security/advisory/tfsa-\d{4}-\d+\.md$"),
             re.compile(r"^https://github\.com/tensorflow/tensorflow/security/advisories/GHSA-"),
             re.compile(r"^https://github\.com/advisories/GHSA-"))


def fail(message: str) -> None:
    print(f"build_advisories: {message}", file=sys.stderr)
    raise SystemExit(2)


def release(text: str) -> str:
    """"2.5.0rc1" -> "2.5.0": pre-releases are counted with their final release."""
    if text == "0":
        return "0.0.0"
    parts = RELEASE.match(text)
    if not parts:
        raise ValueError(f"unreadable version {text!r}")
    return ".".join(p or "0" for p in parts.groups())


def intervals(events: list[dict]) -> list[dict]:
    spans: list[dict] = []
    for event in events:
        if "introduced" in event:
            spans.append({"introduced": release(str(event["introduced"])), "fixed": None})
        elif "fixed" in event and spans and spans[-1]["fixed"] is None:
            spans[-1]["fixed"] = release(str(event["fixed"]))
        elif "last_affected" in event and spans and spans[-1]["fixed"] is None:
            major, minor, patch = (int(p) for p in release(str(event["last_affected"])).split("."))
            spans[-1]["fixed"] = f"{major}.{minor}.{patch + 1}"
    # A span that only held pre-releases ("2.4.0rc0" up to "2.4.0") affects no final release.
    return [s for s in spans if s["fixed"] is None or key(s["introduced"]) < key(s["fixed"])]


def key(version: str) -> list[int]:
    return [int(p) for p in version.split(".")]


def one_line(text: str) -> str:
    text = BOILERPLATE.sub("", " ".join(text.split()))
    sentence = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    return sentence if len(sentence) <= 200 else sentence[:197].rstrip() + "..."


def pypa_records(path: Path) -> tuple[list[dict], str]:
    """YAML records of the TF packages, read from a work tree or a bare git directory."""
    dirs = [f"vulns/{p}" for p in TF_PACKAGES + SERVING_PACKAGES]
    if (path / "vulns").is_dir():
        files = [f for d in dirs for f in sorted((path / d).glob("*.yaml"))]
        records = [yaml.safe_load(f.read_text()) for f in files]
        rev = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    else:
        git = ["git", f"--git-dir={path}"]
        rev = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout
        present = subprocess.run(git + ["ls-tree", "--name-only", "HEAD", "vulns/"], capture_output=True, text=True,
                                 check=True).stdout.split()
        archive = subprocess.run(git + ["archive", "HEAD"] + [d for d in dirs if d in present], capture_output=True,
                                 check=True).stdout
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            records = [yaml.safe_load(tar.extractfile(m).read()) for m in tar.getmembers()
                       if m.isfile() and m.name.endswith(".yaml")]
    return records, rev.strip()


def from_osv(record: dict, product_of: dict[str, str], pysec: bool = True, reviewed: bool = False) -> dict | None:
    """An OSV record (PYSEC YAML or GHSA JSON) -> an entry, or None when it names no TF package. `pysec`
    False drops PYSEC ids (a copy that assigned its own). A `reviewed` record (GitHub-reviewed, written from
    TF's own advisory) is kept even when it affects no final release: its ranges replace the NVD-derived
    ones of a PYSEC record in merge()."""
    spans: list[dict] = []
    product = None
    for affected in record.get("affected", []):
        package = affected.get("package", {}).get("name", "").lower()
        if affected.get("package", {}).get("ecosystem") != "PyPI" or package not in product_of:
            continue
        product = product_of[package]
        for r in affected.get("ranges", []):
            if r.get("type") == "ECOSYSTEM":
                spans.extend(s for s in intervals(r["events"]) if s not in spans)
    if not product or not (spans or reviewed):
        return None
    aliases = [record["id"]] + record.get("aliases", [])
    ids = {"tfsa": [], "ghsa": sorted({a for a in aliases if a.startswith("GHSA-")}),
           "cve": sorted({a for a in aliases if a.startswith("CVE-")}),
           "pysec": sorted({a for a in aliases if a.startswith("PYSEC-")}) if pysec else []}
    for ref in record.get("references", []):
        tfsa = re.search(r"tfsa-(\d{4}-\d{3})", ref.get("url", ""), re.I)
        if tfsa and f"TFSA-{tfsa[1]}" not in ids["tfsa"]:
            ids["tfsa"].append(f"TFSA-{tfsa[1]}")
    severity, cvss = "unknown", None
    # v3 first: it is the vector every source gives and the one netaudit.assess.scoring computes.
    for kind in ("CVSS_V3", "CVSS_V4"):
        cvss = cvss or next((s["score"] for s in record.get("severity") or [] if s.get("type") == kind), None)
    declared = str(record.get("database_specific", {}).get("severity", "")).lower()
    if declared in ("critical", "high", "medium", "moderate", "low"):
        severity = "medium" if declared == "moderate" else declared
    elif cvss and cvss.startswith("CVSS:3"):
        severity = {"info": "low"}.get(band(scores(cvss)[0]), band(scores(cvss)[0]))
    url = next((u for u in (r.get("url", "") for r in record.get("references", [])) if URL_ORDER[0].search(u)),
               None) or advisory_url(record)
    primary = (ids["cve"] or ids["ghsa"] or ids["pysec"])[0]
    summary = one_line(record.get("summary") or record.get("details") or primary)
    fixed = sorted({s["fixed"] for s in spans if s["fixed"]}, key=lambda v: [int(p) for p in v.split(".")])
    return {"id": primary, "ids": ids, "product": product, "affected": spans, "fixed": fixed, "severity": severity,
            "cvss": cvss, "summary": summary, "url": url, "reviewed": reviewed}


def advisory_url(record: dict) -> str:
    """TF's own advisory (tfsa file, GitHub security advisory) before a database's page."""
    urls = [r.get("url", "") for r in record.get("references", [])]
    for pattern in URL_ORDER[1:]:
        if found := next((u for u in urls if pattern.search(u)), None):
            return found
    return next((r["url"] for r in record.get("references", []) if r.get("type") == "ADVISORY"),
                f"https://osv.dev/vulnerability/{record['id']}")


def merge(entries: list[dict]) -> list[dict]:
    """One entry per advisory: records that share a CVE or GHSA id (tensorflow, -cpu, -gpu; PYSEC and GHSA)
    are merged; severity and CVSS come from whichever record has them, the affected ranges from the reviewed
    records when there are any."""
    merged: list[dict] = []
    index: dict[str, dict] = {}
    for entry in entries:
        keys = entry["ids"]["cve"] + entry["ids"]["ghsa"] + entry["ids"]["pysec"]
        target = next((index[k] for k in keys if k in index and index[k]["product"] == entry["product"]), None)
        if target is None:
            merged.append(entry)
            target = entry
        else:
            for kind, values in entry["ids"].items():
                target["ids"][kind] = sorted(set(target["ids"][kind]) | set(values))
            if target["severity"] == "unknown":
                target["severity"] = entry["severity"]
            target["cvss"] = target["cvss"] or entry["cvss"]
            if entry["reviewed"] and not target["reviewed"]:
                target["affected"], target["fixed"], target["reviewed"] = entry["affected"], entry["fixed"], True
            elif entry["reviewed"] == target["reviewed"]:
                target["affected"] += [s for s in entry["affected"] if s not in target["affected"]]
                target["fixed"] = sorted(set(target["fixed"]) | set(entry["fixed"]),
                                         key=lambda v: [int(p) for p in v.split(".")])
            if rank_url(entry["url"]) < rank_url(target["url"]):
                target["url"] = entry["url"]
        for k in keys:
            index[k] = target
    for entry in merged:
        entry["id"] = (entry["ids"]["cve"] or entry["ids"]["ghsa"] or entry["ids"]["pysec"])[0]
    return merged


def rank_url(url: str) -> int:
    return next((i for i, pattern in enumerate(URL_ORDER) if pattern.search(url)), len(URL_ORDER))


def tfsa_ids(path: Path) -> dict[str, str]:
    found = {}
    for md in sorted(path.rglob("tfsa-*.md")):
        for cve in set(re.findall(r"CVE-\d{4}-\d{4,}", md.read_text(errors="replace"))):
            found.setdefault(cve, md.stem.upper())
    return found


def serving_entries(tensorflow: list[dict]) -> list[dict]:
    """The curated TF Serving advisories, plus the TF advisories that name TF Serving: a ModelServer release
    is built with the TF release of the same number, so it carries that TF advisory's ranges."""
    data = tomllib.loads(SERVING.read_text())
    entries = []
    for raw in data["advisory"]:
        entries.append({"id": raw["id"], "ids": {k: raw.get(k, []) for k in ("tfsa", "ghsa", "cve", "pysec")},
                        "product": "tensorflow-serving", "affected": raw["affected"], "fixed": raw.get("fixed", []),
                        "severity": raw["severity"], "cvss": raw.get("cvss"), "summary": raw["summary"],
                        "url": raw["url"]})
    by_id = {i: e for e in tensorflow for ids in e["ids"].values() for i in ids}
    for cve in data["same_as_tensorflow"]["ids"]:
        if cve not in by_id:
            fail(f"{SERVING.name}: {cve} is not among the TF advisories read")
        entries.append(json.loads(json.dumps(by_id[cve])) | {"product": "tensorflow-serving"})
    return entries


def published(records: list[dict]) -> str:
    months = sorted(str(r.get("published", ""))[:7] for r in records if r.get("published"))
    return f"published {months[0]} … {months[-1]}" if months else "no publication dates"


def read_sources(args: argparse.Namespace, product_of: dict[str, str]) -> tuple[list[dict], list[dict], list[str]]:
    """Entries of every source given, the `sources` list, and one line of coverage per source."""
    try:
        records, pypa_rev = pypa_records(args.pypa)
    except (OSError, subprocess.CalledProcessError, tarfile.TarError) as exc:
        fail(f"cannot read {args.pypa} as pypa/advisory-database: {exc}")
    entries = [e for e in (from_osv(r, product_of) for r in records) if e]
    sources = [{"name": "pypa/advisory-database", "commit": pypa_rev, "records": str(len(records))}]
    lines = [f"pypa/advisory-database {pypa_rev[:8]}: PYSEC records, {published(records)}, no severity"]
    if args.ghsa_osv:
        try:
            extra, rev = pypa_records(args.ghsa_osv)
        except (OSError, subprocess.CalledProcessError, tarfile.TarError) as exc:
            fail(f"cannot read {args.ghsa_osv} as a copy of pypa/advisory-database: {exc}")
        known = {r["id"] for r in records}
        extra = [r for r in extra if r["id"] not in known and any(a.startswith("GHSA-") for a in r.get("aliases", []))]
        entries += [e for e in (from_osv(r, product_of, pysec=False, reviewed=True) for r in extra) if e]
        sources.append({"name": "westonsteimel/advisory-database-pypa", "commit": rev, "records": str(len(extra))})
        aliases = sorted({a for r in extra for a in r.get("aliases", []) if a.startswith("CVE-")})
        lines.append(f"westonsteimel/advisory-database-pypa {rev[:8]}: {len(extra)} records created from the GitHub "
                     f"Security Advisory Database ({aliases[0] if aliases else '-'} … {aliases[-1] if aliases else '-'}), "
                     "with CVSS vectors")
    if args.ghsa:
        files = sorted(args.ghsa.rglob("GHSA-*.json"))
        try:
            ghsa = [json.loads(f.read_text()) for f in files]
        except (OSError, ValueError) as exc:
            fail(f"cannot read the GHSA records under {args.ghsa}: {exc}")
        ghsa_entries = [e for e in (from_osv(r, product_of, reviewed=True) for r in ghsa) if e]
        entries += ghsa_entries
        sources.append({"name": "github/advisory-database", "records": str(len(ghsa_entries))})
        lines.append(f"github/advisory-database: {len(ghsa_entries)} GHSA records read ({published(ghsa)})")
    return entries, sources, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pypa", type=Path, required=True)
    parser.add_argument("--ghsa-osv", type=Path)
    parser.add_argument("--ghsa", type=Path)
    parser.add_argument("--tfsa", type=Path)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    product_of = {p: "tensorflow" for p in TF_PACKAGES} | {p: "tensorflow-serving" for p in SERVING_PACKAGES}
    entries, sources, lines = read_sources(args, product_of)
    merged = merge(entries)
    prerelease_only = sorted(e["id"] for e in merged if not e["affected"])
    merged = [{k: v for k, v in e.items() if k != "reviewed"} for e in merged if e["affected"]]
    if args.tfsa:
        by_cve = tfsa_ids(args.tfsa)
        for entry in merged:
            entry["ids"]["tfsa"] = sorted(set(entry["ids"]["tfsa"]) | {by_cve[c] for c in entry["ids"]["cve"]
                                                                       if c in by_cve})
        sources.append({"name": "tensorflow/tensorflow security/advisory", "records": str(len(by_cve))})
        lines.append(f"tensorflow/tensorflow security/advisory: {len(by_cve)} tfsa files (TFSA ids)")
    unknown = [e for e in merged if e["severity"] == "unknown"]
    no_tfsa = [e for e in merged if not e["ids"]["tfsa"]]
    lines.append(f"{len(merged)} advisories; severity unknown for {len(unknown)}"
                 + (f" ({min(e['id'] for e in unknown)} … {max(e['id'] for e in unknown)}: no GHSA record read)"
                    if unknown else "")
                 + f"; no TFSA id for {len(no_tfsa)}"
                 + (f"; left out, as their GitHub-reviewed records affect only pre-releases: {', '.join(prerelease_only)}"
                    if prerelease_only else ""))
    coverage = {"tensorflow": "; ".join(lines), "tensorflow-serving": "curated in tools/tf_serving_advisories.toml"}
    merged += serving_entries(merged)
    merged.sort(key=lambda e: (e["product"], e["id"]))
    out = {"built": date.today().isoformat(), "sources": sources, "coverage": coverage, "advisories": merged}
    text = json.dumps(out, indent=1) + "\n"
    parse(text)  # the scanner's own validation
    args.out.write_text(text)
    print(f"{args.out}: {len(merged)} advisories ({sum(e['product'] == 'tensorflow' for e in merged)} tensorflow, "
          f"{sum(e['product'] == 'tensorflow-serving' for e in merged)} tensorflow-serving)")
    print(f"coverage: {coverage['tensorflow']}")


if __name__ == "__main__":
    main()
