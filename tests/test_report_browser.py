"""The interactive HTML report in a real browser: Debian's chromium driven by selenium through
chromium-driver. A report merged from two real scans of the lab (from vantage "loopback": everything; from
"edge": the TF servers only), with hostile strings in place of what the servers said. Filters, search and
sorting are asserted on the rows a user sees; links reveal their target; the hostile strings stay text;
without JavaScript the whole report still reads."""

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

from conftest import run_cli
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
    for fmt in ("html", "json"):
        proc = run_cli("report", str(out / "loopback.json"), str(out / "edge.json"), "--policy", str(out / "policy.toml"),
                       "--no-history", "--format", fmt, "-o", str(out / f"report.{fmt}"))
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
