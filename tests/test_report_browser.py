"""The interactive HTML report in a real browser: Debian's chromium driven by selenium through
chromium-driver. A report merged from two real scans of the lab (from vantage "loopback": everything; from
"edge": the TF servers only), with hostile strings in place of what the servers said. Filters, search and
sorting are asserted on the rows a user sees; links reveal their target; the hostile strings stay text;
without JavaScript the whole report still reads. What a reviewer reads is measured in the page: the banner
names exactly what it counts, no word breaks inside (each word's rendered line boxes), the legend's marks are
the cells' marks, advice comes most severe first, and every finding says why its evidence proves it, in the
same words as the text output. The README's screenshot is taken here."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import tempfile
import time

import pytest

from conftest import TREE, run_cli
from test_html_report import poison

HOSTILE = ["<img src=x onerror=alert(1)>", "\"'><script>alert(2)</script>", "</script><svg onload=alert(3)>"]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,1000"]
POLICY = """
[segments.lab]
cidrs = ["127.0.0.0/8"]
trust = "untrusted"

[[allow]]
kinds = ["modelserver-grpc", "modelserver-rest"]
from = ["lab"]
"""


@pytest.fixture(scope="module")
def report(lab, lab_scan, tmp_path_factory):
    out = tmp_path_factory.mktemp("browser")
    scan = poison(json.loads(json.dumps(lab_scan.to_dict())), HOSTILE)
    (out / "loopback.json").write_text(json.dumps(scan))
    tf = [e.target for e in lab.endpoints if e.kind == "tf-server"]
    edge = run_cli("scan", *tf, "--vantage", "edge", "--engine", "connect", "--timeout", "5", "--no-history",
                   "--format", "json", "-o", str(out / "edge.json"), timeout=300)
    assert edge.returncode == 0, edge.stderr
    (out / "policy.toml").write_text(POLICY)
    for fmt in ("html", "json", "text"):
        proc = run_cli("report", str(out / "loopback.json"), str(out / "edge.json"), "--policy", str(out / "policy.toml"),
                       "--no-history", "--format", fmt, "-o", str(out / f"report.{fmt}"))
        assert proc.returncode == 0, proc.stderr
    # The same report from what the servers really said, for the README's screenshot and the axe-core check.
    (out / "clean.json").write_text(json.dumps(lab_scan.to_dict()))
    proc = run_cli("report", str(out / "clean.json"), str(out / "edge.json"), "--policy", str(out / "policy.toml"),
                   "--no-history", "--format", "html", "-o", str(out / "clean.html"))
    assert proc.returncode == 0, proc.stderr
    return out, json.loads((out / "report.json").read_text())


def driver_for(profile: str, javascript: bool = True):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not browser or not chromedriver:
        pytest.skip("chromium and chromium-driver are not installed (.ci/run installs them)")
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must not look for drivers on the network
    options = Options()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    return webdriver.Chrome(service=Service(chromedriver), options=options)


@pytest.fixture
def browser():
    with tempfile.TemporaryDirectory() as profile:
        driver = driver_for(profile)
        try:
            yield driver
        finally:
            driver.quit()


def visible(driver, selector: str) -> list:
    return [el for el in driver.find_elements("css selector", selector) if el.is_displayed()]


def click(driver, element) -> None:
    """Scroll the element to the middle first: at the top of the window the sticky filter bar covers it."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def choose(driver, facet: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("css selector", f"select[data-facet={facet}]")).select_by_value(value)


def test_filters_search_sort_and_links(report, browser, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    folder, data = report
    browser.get((folder / "report.html").as_uri())
    assert browser.find_element(By.ID, "filters").is_displayed()  # the script ran under the hash-only CSP
    endpoints = {(e["host"], e["port"]): e for e in data["endpoints"]}
    findings = data["findings"]
    assert len(visible(browser, "#all-findings tbody tr")) == len(findings) > 20
    assert len(visible(browser, "#inventory tbody tr")) == len(endpoints)

    choose(browser, "severity", "critical")
    rows = visible(browser, "#all-findings tbody tr")
    assert len(rows) == sum(f["severity"] == "critical" for f in findings) > 0
    assert {r.get_attribute("data-severity") for r in rows} == {"critical"}
    assert all(c.get_attribute("data-severity") == "critical" for c in visible(browser, "article.card"))
    browser.save_screenshot(str(tmp_path / "critical.png"))

    choose(browser, "severity", "")
    choose(browser, "kind", "tf-server")
    rows = visible(browser, "#inventory tbody tr")
    assert len(rows) == sum(e["kind"] == "tf-server" for e in endpoints.values()) > 1
    assert all(r.find_elements(By.TAG_NAME, "td")[2].text == "tf-server" for r in rows)

    choose(browser, "kind", "")
    choose(browser, "family", "tf-serving")
    rows = visible(browser, "#inventory tbody tr")
    assert len(rows) == sum(e["kind"] in ("modelserver-grpc", "modelserver-rest") for e in endpoints.values()) > 0

    choose(browser, "family", "")
    choose(browser, "vantage", "edge")
    from_edge = {(r["host"], r["port"]) for r in data["reachability"] if r["vantage"] == "edge" and r["state"] == "open"}
    rows = visible(browser, "#matrix table.matrix tbody tr")
    assert len(rows) == len(from_edge) > 0
    assert len(visible(browser, "#all-findings tbody tr")) == sum((f["host"], f["port"]) in from_edge for f in findings)
    choose(browser, "segment", "lab")
    assert len(visible(browser, "#matrix table.matrix tbody tr")) == len(from_edge)
    browser.save_screenshot(str(tmp_path / "vantage-edge.png"))
    click(browser, browser.find_element(By.ID, "filter-reset"))

    # Free-text search: one endpoint's address.
    target = next(f for f in findings if f["severity"] == "high")
    address = f"{target['host']}:{target['port']}"
    browser.find_element(By.ID, "filter-text").send_keys(address)
    time.sleep(0.5)  # the search waits for typing to pause
    rows = visible(browser, "#all-findings tbody tr")
    assert len(rows) == sum(f"{f['host']}:{f['port']}" == address for f in findings) > 0
    assert all(address in r.text for r in rows)
    assert [r.get_attribute("id") for r in visible(browser, "#inventory tbody tr")] == [
        f"ep-{target['host']}-{target['port']}"]
    shown, total = map(int, re.match(r"(\d+) of (\d+) rows and cards match",
                                     browser.find_element(By.ID, "filter-count").text).groups())
    assert len(rows) < shown < total

    # A finding links to its endpoint, even when a filter hides the endpoint's row: the link clears it.
    browser.find_element(By.ID, "filter-text").clear()
    browser.find_element(By.ID, "filter-text").send_keys(target["rule"])
    time.sleep(0.5)
    assert not browser.find_element(By.ID, f"ep-{target['host']}-{target['port']}").is_displayed()
    click(browser, browser.find_element(By.CSS_SELECTOR, f"#row-{target['id']} a[href^='#ep-']"))
    time.sleep(0.3)
    assert browser.find_element(By.ID, f"ep-{target['host']}-{target['port']}").is_displayed()
    assert browser.find_element(By.ID, "filter-text").get_attribute("value") == ""

    # A matrix cell links to its evidence, which sits in a closed <details>: the link opens it.
    cell = browser.find_element(By.CSS_SELECTOR, "table.matrix td.cell a")
    evidence_id = cell.get_attribute("href").split("#", 1)[1]
    assert not browser.find_element(By.ID, evidence_id).is_displayed()
    click(browser, cell)
    time.sleep(0.3)
    assert browser.find_element(By.ID, evidence_id).is_displayed()

    # Sorting: severity ascending puts the least severe first; the endpoint column sorts addresses numerically.
    heading = browser.find_element(By.CSS_SELECTOR, "#all-findings thead th:nth-child(1)")
    click(browser, heading)
    ranks = [int(r.find_element(By.TAG_NAME, "td").get_attribute("data-sort"))
             for r in browser.find_elements(By.CSS_SELECTOR, "#all-findings tbody tr")]
    assert ranks == sorted(ranks) and ranks[0] < ranks[-1]
    click(browser, heading)
    ranks = [int(r.find_element(By.TAG_NAME, "td").get_attribute("data-sort"))
             for r in browser.find_elements(By.CSS_SELECTOR, "#all-findings tbody tr")]
    assert ranks == sorted(ranks, reverse=True)
    click(browser, browser.find_element(By.CSS_SELECTOR, "#inventory thead th:nth-child(1)"))
    ports = [int(r.find_element(By.TAG_NAME, "td").text.rsplit(":", 1)[1])
             for r in browser.find_elements(By.CSS_SELECTOR, "#inventory tbody tr")]
    assert ports == sorted(ports)  # one host (127.0.0.1): numeric order, so 9000 before 10000
    browser.save_screenshot(str(tmp_path / "sorted.png"))

    # Hostile strings from the servers are text: no alert, no element they would have made.
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert
    assert browser.find_elements(By.TAG_NAME, "img") == [] and browser.find_elements(By.TAG_NAME, "svg") == []
    assert len(browser.find_elements(By.TAG_NAME, "script")) == 1
    assert browser.title == "netaudit report: TensorFlow server exposure"
    assert HOSTILE[0] in browser.find_element(By.ID, "inventory").text
    browser.find_element(By.ID, "filter-text").clear()
    browser.find_element(By.ID, "filter-text").send_keys(HOSTILE[1])
    time.sleep(0.5)
    assert visible(browser, "#inventory tbody tr")  # searching for the hostile string finds it, as text
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []  # no CSP violation, no script error
    print(f"screenshots in {tmp_path}")


def test_without_javascript_the_report_reads_in_full(report, tmp_path):
    from selenium.webdriver.common.by import By

    folder, data = report
    with tempfile.TemporaryDirectory() as profile:
        driver = driver_for(profile, javascript=False)
        try:
            driver.get((folder / "report.html").as_uri())
            assert not driver.find_element(By.ID, "filters").is_displayed()
            assert len(visible(driver, "#inventory tbody tr")) == len(data["endpoints"])
            assert len(visible(driver, "#all-findings tbody tr")) == len(data["findings"])
            assert len(visible(driver, "article.card")) == min(len(data["findings"]), 250)
            driver.save_screenshot(str(tmp_path / "no-javascript.png"))
        finally:
            driver.quit()


def test_csp_allows_only_the_inline_script_by_hash(report):
    html = (report[0] / "report.html").read_text(encoding="utf-8")
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)[1]
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert len(scripts) == 1 and scripts[0][0] == ""  # inline, no src
    digest = base64.b64encode(hashlib.sha256(scripts[0][1].encode()).digest()).decode()
    assert csp == f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{digest}'"
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document.write|eval|http", scripts[0][1])


# Each whitespace-separated word of each visible cell (td, th, badge, banner, legend entry), taken as a DOM
# Range across the cell's text nodes (a <br> or a block inside the cell separates words, as a space does):
# the word is broken when its line boxes lie on more than one line.
WORD_LINES = r"""
var out = {broken: [], words: 0, cells: 0};
var cells = document.querySelectorAll("td, th, .badge, .verdict, .legend li");
for (var i = 0; i < cells.length; i++) {
  var cell = cells[i];
  if (!cell.getClientRects().length) { continue; }
  out.cells++;
  var pieces = [], text = "";
  var walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT | NodeFilter.SHOW_ELEMENT);
  for (var node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.nodeType === Node.ELEMENT_NODE) {
      if (node.tagName === "BR" || getComputedStyle(node).display !== "inline") { text += "\n"; }
      continue;
    }
    pieces.push([node, text.length]);
    text += node.nodeValue;
  }
  var at = function (offset) {
    for (var k = pieces.length - 1; k >= 0; k--) {
      if (pieces[k][1] <= offset) { return [pieces[k][0], offset - pieces[k][1]]; }
    }
  };
  var words = /\S+/g, m;
  while ((m = words.exec(text))) {
    var start = at(m.index), end = at(m.index + m[0].length - 1);
    var range = document.createRange();
    range.setStart(start[0], start[1]);
    range.setEnd(end[0], end[1] + 1);
    var lines = [];
    Array.prototype.forEach.call(range.getClientRects(), function (r) {
      var middle = r.top + r.height / 2;
      if (r.width > 0 && r.height > 0 && !lines.some(function (y) { return Math.abs(y - middle) < r.height / 2; })) {
        lines.push(middle);
      }
    });
    out.words++;
    if (lines.length > 1) {
      out.broken.push({word: m[0].slice(0, 80), length: m[0].length, lines: lines.length,
                       cell: cell.tagName.toLowerCase() + "." + cell.className, width: cell.clientWidth});
    }
  }
}
return out;
"""
# In free text (what a server chose: model names, banners, hostile markup) a word may be wider than any column,
# and the line-breaking rules of Unicode (UAX #14) let it wrap after a '/' or before a '<': such words may wrap.
# A word that is made of a netaudit token's characters and is no wider than LONGEST_UNBROKEN never does; in a
# column of netaudit's own tokens (addresses, kinds, states, marks, badges, rule ids) no word does.
LONGEST_UNBROKEN = 40
TOKEN_LIKE = re.compile(r"[\w.:@()\[\],;+*=!?-]+")


def must_not_break(word: dict) -> bool:
    return "token" in word["cell"] or not word["cell"].startswith("td.free") or (
        word["length"] <= LONGEST_UNBROKEN and TOKEN_LIKE.fullmatch(word["word"]) is not None)


@pytest.mark.parametrize("width", [1024, 1400])
def test_no_cell_breaks_a_word(report, browser, width):
    folder, data = report
    browser.set_window_size(width, 1000)
    browser.get((folder / "report.html").as_uri())
    assert width - 20 <= browser.execute_script("return window.innerWidth") <= width
    browser.execute_script("document.querySelectorAll('details').forEach(function (d) { d.open = true; })")
    measured = browser.execute_script(WORD_LINES)
    assert measured["cells"] > 4 * len(data["endpoints"]) and measured["words"] > 2000
    broken = [b for b in measured["broken"] if must_not_break(b)]
    assert broken == [], [(b["word"], b["cell"], b["width"]) for b in broken[:10]]
    print(f"{width} px: {measured['words']} words in {measured['cells']} cells, none broken inside but "
          f"{len(measured['broken'])} words of server text: {sorted({b['word'][:30] for b in measured['broken']})}")


def label_of(kind: str | None) -> str:
    from netaudit.core import registry

    declared = registry.kind(kind)
    return declared.label if declared else kind or "unidentified"


def banner_groups(driver) -> tuple[str, list[tuple[str, int, list[str]]]]:
    """The banner's text and, per kind it names: the label, the count it says and the addresses it lists,
    each group's wording checked for number ("1 … endpoint", "2 … endpoints")."""
    from selenium.webdriver.common.by import By

    banner = driver.find_element(By.CSS_SELECTOR, "#summary .verdict")
    groups = []
    for group in banner.find_elements(By.CSS_SELECTOR, ".exposed"):
        count, label, noun = re.match(r"(\d+) (.+?) (endpoints?) \(", group.text).groups()
        assert noun == ("endpoint" if count == "1" else "endpoints"), group.text
        groups.append((label, int(count), [code.text for code in group.find_elements(By.TAG_NAME, "code")]))
    return banner.text, groups


def test_banner_names_exactly_the_endpoints_of_the_findings_it_counts(report, browser):
    folder, data = report
    browser.get((folder / "report.html").as_uri())
    text, groups = banner_groups(browser)
    critical = [f for f in data["findings"] if f["severity"] == "critical"]
    on = {f"{f['host']}:{f['port']}" for f in critical}
    kinds = {f"{e['host']}:{e['port']}": e["kind"] for e in data["endpoints"]}
    found, endpoints, vantages = map(int, re.match(r"(\d+) critical findings? on (\d+) endpoints?, across (\d+) "
                                                   r"vantages?:", text).groups())
    assert (found, endpoints, vantages) == (len(critical), len(on), len(data["scans"]))
    listed = [address for _, _, addresses in groups for address in addresses]
    assert sorted(listed) == sorted(on)  # every endpoint of a critical finding, once, and no other
    for label, count, addresses in groups:
        assert count == len(addresses) and {label_of(kinds[a]) for a in addresses} == {label}
    assert len(groups) < len({kinds[a] for a in kinds if kinds[a] != "unknown"})  # not every exposed kind


def test_banner_for_one_endpoint_says_so_in_the_singular(report, browser, tmp_path):
    """The issue's case: both critical findings on one tf.distribute.Server. A scan that holds one TF server
    of the lab's loopback scan (and a TF Serving REST endpoint, with findings none of them critical)."""
    folder, data = report
    scan = json.loads((folder / "clean.json").read_text())
    tf = next(e for e in scan["endpoints"] if e["kind"] == "tf-server" and e["transport"] == "plaintext")
    rest = next(e for e in scan["endpoints"] if e["kind"] == "modelserver-rest")
    keep = {(tf["host"], tf["port"]), (rest["host"], rest["port"])}
    scan["endpoints"] = [e for e in scan["endpoints"] if (e["host"], e["port"]) in keep]
    scan["findings"] = [f for f in scan["findings"] if (f["host"], f["port"]) in keep]
    (tmp_path / "one.json").write_text(json.dumps(scan))
    proc = run_cli("report", str(tmp_path / "one.json"), "--policy", str(folder / "policy.toml"), "--no-history",
                   "--format", "html", "-o", str(tmp_path / "one.html"))
    assert proc.returncode == 0, proc.stderr
    browser.get((tmp_path / "one.html").as_uri())
    text, groups = banner_groups(browser)
    address = f"{tf['host']}:{tf['port']}"
    assert text.startswith("2 critical findings on 1 endpoint, across 1 vantage: 1 tf.distribute.Server endpoint "
                           f"({address})"), text
    assert groups == [("tf.distribute.Server", 1, [address])]


def test_legend_marks_are_the_cells_marks_and_a_violation_reads_as_one(report, browser):
    from collections import Counter

    from selenium.webdriver.common.by import By

    folder, data = report
    browser.get((folder / "report.html").as_uri())
    legend = {li.get_attribute("data-verdict"): li.find_element(By.CSS_SELECTOR, ".mark").text
              for li in browser.find_elements(By.CSS_SELECTOR, "#matrix .legend li")}
    cells = [(c.get_attribute("data-verdict"), c.text.split("\n")[0].split(" ")[0])
             for c in browser.find_elements(By.CSS_SELECTOR, "table.matrix td.cell")]
    assert Counter(v for v, _ in cells) == Counter(r["verdict"] for r in data["reachability"])
    assert set(legend) == {v for v, _ in cells}  # every legend entry is in a cell, every cell's verdict in the legend
    assert all(word == legend[verdict] for verdict, word in cells)  # with the same word
    assert len(set(legend.values())) == len(legend)
    # Without colour: a violating cell's word is none of the others', and it is there in the demo.
    violating = {word for verdict, word in cells if verdict == "open-not-allowed"}
    others = {word for verdict, word in cells if verdict != "open-not-allowed"}
    assert violating and "open-allowed" in legend and not violating & others
    print("legend:", legend)


def expected_advice(data: dict) -> dict[str, str]:
    """Per advice group with an open endpoint, the highest severity among the findings on its open endpoints
    ("none" without any)."""
    from netaudit.core import registry
    from netaudit.core.model import severity_rank

    found: dict[tuple[str, int], list[str]] = {}
    for f in data["findings"]:
        found.setdefault((f["host"], f["port"]), []).append(f["severity"])
    out = {}
    for group in registry.advice_groups():
        exposed = [e for e in data["endpoints"] if e["kind"] in group.kinds and e["state"] == "open"]
        severities = [s for e in exposed for s in found.get((e["host"], e["port"]), [])]
        if exposed:
            out[group.name] = max(severities, key=severity_rank) if severities else "none"
    return out


def advice_shown(driver) -> list[tuple[str, str]]:
    from selenium.webdriver.common.by import By

    articles = driver.find_elements(By.CSS_SELECTOR, "#advice article.advice")
    shown = [(a.get_attribute("data-group"), a.get_attribute("data-severity")) for a in articles]
    for article, (_, severity) in zip(articles, shown):
        badges = [b.text.lower() for b in article.find_elements(By.CSS_SELECTOR, "h3 .badge")]
        assert badges == ([] if severity == "none" else [severity])
    return shown


def assert_most_severe_first(shown: list[tuple[str, str]], expected: dict[str, str]) -> None:
    from netaudit.core.model import severity_rank

    assert shown and all(expected[group] == severity for group, severity in shown)
    ranks = [severity_rank(severity) if severity != "none" else -1 for _, severity in shown]
    assert ranks == sorted(ranks, reverse=True)
    groups = [group for group, _ in shown]
    assert groups == sorted(groups, key=groups.index) and set(groups) == set(expected)  # each group's snippets together


def test_advice_comes_most_severe_first(report, browser):
    folder, data = report
    browser.get((folder / "report.html").as_uri())
    shown = advice_shown(browser)
    assert_most_severe_first(shown, expected_advice(data))
    assert shown[0] == ("tf-cluster", "critical")  # the TF cluster carries the critical findings: its advice leads


def test_advice_for_a_cluster_behind_mtls_comes_after_an_open_model_server(lab, tmp_path, browser):
    """With the lab's client certificate the TF server behind nginx's mTLS is reached and named, and has no
    finding; the TF Serving gRPC port next to it lets anyone reload models (critical). The serving advice
    must lead, though the registry lists the cluster's group first."""
    behind = next(e for e in lab.endpoints if e.facts.get("variant") == "nginx-mtls")
    serving = next(e for e in lab.endpoints if e.kind == "modelserver-grpc" and not e.facts.get("variant", "").endswith("tls"))
    proc = run_cli("scan", behind.target, serving.target, "--vantage", "lab", "--timeout", "5", "--no-history",
                   "--ca-bundle", behind.facts["ca"], "--client-cert", behind.facts["client_cert"],
                   "--client-key", behind.facts["client_key"], "--format", "json", "-o", str(tmp_path / "scan.json"),
                   timeout=300)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("report", str(tmp_path / "scan.json"), "--no-history", "--format", "json", "-o",
                   str(tmp_path / "report.json"))
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "report.json").read_text())
    expected = expected_advice(data)
    assert expected == {"tf-serving": "critical", "tf-cluster": "none"}, expected
    proc = run_cli("report", str(tmp_path / "scan.json"), "--no-history", "--format", "html", "-o",
                   str(tmp_path / "report.html"))
    assert proc.returncode == 0, proc.stderr
    browser.get((tmp_path / "report.html").as_uri())
    shown = advice_shown(browser)
    assert_most_severe_first(shown, expected)
    assert shown[0][0] == "tf-serving"


def test_every_finding_says_why_its_evidence_proves_it_as_the_text_output_does(report, browser):
    from selenium.webdriver.common.by import By

    from netaudit.outputs.render import why

    folder, data = report
    text = (folder / "report.text").read_text(encoding="utf-8").splitlines()
    browser.get((folder / "report.html").as_uri())
    findings = {f["id"]: f for f in data["findings"]}
    cards = browser.find_elements(By.CSS_SELECTOR, "article.card")
    assert len(cards) == len(findings)
    for card in cards:
        f = findings[card.get_attribute("id").removeprefix("finding-")]
        declared = why(f["rule"])
        assert declared, f["rule"]
        line = f"Why this proves it: {declared}"
        assert card.find_element(By.CSS_SELECTOR, ".why").text == line
        assert card.find_element(By.TAG_NAME, "h3").text.endswith(f["title"])
        where = text.index(next(t for t in text if t.endswith(f"{f['title']}  [{f['rule']}]")))
        assert text[where + 1].strip() == line  # the title and its why-line, worded once, in both outputs
    profiler = why("tf-profiler-exposed")
    assert "UNIMPLEMENTED 'unimplemented.'" in profiler and "UNAUTHENTICATED" in profiler


SCREENSHOT = TREE / "docs" / "report-screenshot.png"
SCREENSHOT_FINDINGS = 16  # rows of the findings table below the matrix


def test_readme_screenshot_of_the_matrix_and_findings(report, browser):
    """docs/report-screenshot.png, which the README shows: the reachability matrix and the first rows of the
    findings table below it, from the lab report, at 1400 px."""
    from selenium.webdriver.common.by import By

    folder, _ = report
    browser.set_window_size(1400, 1000)
    browser.get((folder / "clean.html").as_uri())
    top = browser.find_element(By.ID, "matrix").rect["y"]
    rows = browser.find_elements(By.CSS_SELECTOR, "#all-findings tbody tr")[:SCREENSHOT_FINDINGS]
    assert rows
    bottom = rows[-1].rect["y"] + rows[-1].rect["height"]
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": top - 8, "width": 1400, "height": bottom - top + 16, "scale": 1}})
    png = base64.b64decode(shot["data"])
    assert png.startswith(b"\x89PNG") and len(png) > 50_000
    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.write_bytes(png)
    print(f"wrote {SCREENSHOT} ({len(png)} bytes, {bottom - top:.0f} px tall)")
