"""Accessibility of the HTML report, measured by a tool nobody here wrote: axe-core (npm package), injected by
the test through selenium into the lab report and into a 10,000-endpoint report, in Debian's chromium. The
report never ships axe: the test injects it with execute_script, which runs outside the page's CSP, so the
report's CSP still allows only its own script. No violation of impact serious or critical; the rest are
counted and printed. The keyboard alone reaches and works every filter and sort control."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections import Counter

import pytest

from conftest import TREE, run_cli
from test_report_browser import browser, report  # noqa: F401  (fixtures: the lab report and a browser)

# .ci/run installs the same version into the same folder; the test installs it there itself when it is missing.
AXE_PACKAGE = "axe-core@4.14.1"
AXE_FOLDER = TREE / ".cache" / "axe"
AXE_SCRIPT = AXE_FOLDER / "node_modules" / "axe-core" / "axe.min.js"
# The large report: the lab scan's real endpoints and findings, again and again on other loopback addresses.
LARGE = 10_000
AXE_DEADLINE = 1800.0  # seconds for one axe run on the large report (about 450,000 elements) on a shared machine


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE_SCRIPT.is_file():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip(f"npm is not installed, so {AXE_PACKAGE} cannot be installed (.ci/run installs it into "
                        f"{AXE_FOLDER.relative_to(TREE)})")
        done = subprocess.run([npm, "install", "--prefix", str(AXE_FOLDER), "--no-save", "--no-audit", "--no-fund",
                               "--no-package-lock", AXE_PACKAGE], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0 and AXE_SCRIPT.is_file(), done.stderr[-2000:]
    return AXE_SCRIPT.read_text(encoding="utf-8")


def axe(driver, source: str, deadline: float) -> list[dict]:
    """axe-core's violations on the loaded page, each with its rule, impact and count of elements. The run is
    started in the page and polled, so a long run (the large report) is not one blocking WebDriver call."""
    driver.set_script_timeout(deadline)  # axe.run's first, synchronous part reads the whole DOM before it yields
    driver.execute_script(source)
    assert driver.execute_script("return typeof axe.run") == "function"
    driver.execute_script("""
        window.__netauditAxe = null;
        axe.run(document, {resultTypes: ["violations"]}).then(function (result) {
          window.__netauditAxe = {violations: result.violations.map(function (v) {
            return {id: v.id, impact: v.impact, help: v.help, count: v.nodes.length,
                    examples: v.nodes.slice(0, 3).map(function (n) { return [n.target.join(" "), n.failureSummary]; })};
          }), version: axe.version, review: result.incomplete.map(function (v) { return v.id; })};
        }, function (error) { window.__netauditAxe = {error: String(error)}; });""")
    started = time.monotonic()
    while (result := driver.execute_script("return window.__netauditAxe")) is None:
        assert time.monotonic() - started < deadline, f"axe-core did not finish in {deadline:.0f} s"
        time.sleep(2)
    assert "error" not in result, result
    print(f"axe-core {result['version']}: {len(result['violations'])} rules violated; rules whose result needs a "
          f"person's review: {', '.join(result['review']) or 'none'}")
    return result["violations"]


def judged(violations: list[dict], name: str) -> None:
    """Fails on a serious or critical violation; prints the count of the rest."""
    grave = [v for v in violations if v["impact"] in ("serious", "critical")]
    rest = Counter({f"{v['id']} ({v['impact']})": v["count"] for v in violations if v not in grave})
    print(f"{name}: {sum(v['count'] for v in grave)} serious or critical violations, {sum(rest.values())} other: "
          f"{dict(rest) or 'none'}")
    assert grave == [], json.dumps(grave, indent=1)[:4000]


def scripts_allowed(driver) -> str:
    return driver.execute_script(
        "return document.querySelector('meta[http-equiv=\"Content-Security-Policy\"]').content")


def test_axe_finds_no_serious_violation_in_the_lab_report(report, browser, axe_source):  # noqa: F811
    folder, _ = report
    browser.set_window_size(1400, 1000)
    for name in ("clean.html", "report.html"):  # as the servers said it, and with hostile strings in its place
        browser.get((folder / name).as_uri())
        csp = scripts_allowed(browser)
        judged(axe(browser, axe_source, 600), f"lab report {name}")
        assert scripts_allowed(browser) == csp and "script-src 'sha256-" in csp
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []  # injecting axe broke no CSP rule: execute_script runs outside the page's policy


def multiplied(scan: dict, count: int) -> dict:
    """The scan's endpoints and their findings, `count` endpoints in all: copy k of the scan on loopback
    address 127.x.y.z for k+1. Real records, real shapes; only the addresses (and finding ids) differ."""
    findings: dict[tuple[str, int], list[dict]] = {}
    for f in scan["findings"]:
        findings.setdefault((f["host"], f["port"]), []).append(f)
    out = {**scan, "endpoints": [], "findings": [], "port_states": []}
    for n in range(count):
        copy, index = divmod(n, len(scan["endpoints"]))
        ep = scan["endpoints"][index]
        host = f"127.{(copy + 1) >> 16 & 255}.{(copy + 1) >> 8 & 255}.{(copy + 1) & 255}"
        out["endpoints"].append({**ep, "host": host})
        out["findings"] += [{**f, "host": host, "id": f"{f['id'][:8]}{n:08x}"}
                            for f in findings.get((ep["host"], ep["port"]), [])]
    return out


@pytest.fixture(scope="module")
def large_report(lab_scan, tmp_path_factory):
    out = tmp_path_factory.mktemp("large")
    (out / "scan.json").write_text(json.dumps(multiplied(lab_scan.to_dict(), LARGE)))
    proc = run_cli("report", str(out / "scan.json"), "--no-history", "--format", "html", "-o", str(out / "report.html"),
                   timeout=1200)
    assert proc.returncode == 0, proc.stderr
    return out / "report.html"


def test_axe_finds_no_serious_violation_in_a_10k_endpoint_report(large_report, browser, axe_source):  # noqa: F811
    from selenium.webdriver.common.by import By

    browser.command_executor.client_config.timeout = AXE_DEADLINE  # a page load of ~30 MB on a busy machine
    browser.get(large_report.as_uri())
    assert len(browser.find_elements(By.CSS_SELECTOR, "#inventory tbody tr")) == LARGE
    judged(axe(browser, axe_source, AXE_DEADLINE), f"{LARGE}-endpoint report")


def test_keyboard_reaches_and_works_every_filter_and_sort_control(report, browser):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    folder, data = report
    browser.get((folder / "report.html").as_uri())
    def displayed(selector: str) -> list:
        return [el for el in browser.find_elements(By.CSS_SELECTOR, selector) if el.is_displayed()]

    filters = displayed("#filters select, #filters input, #filters button")
    headings = displayed("th.sortable button")
    assert len(filters) == 7 and len(headings) > 10  # five facets, search and Clear; the headings of the tables shown
    wanted = {el.id: el for el in filters + headings}
    reached: list = []
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    for _ in range(5000):
        active = browser.switch_to.active_element
        if reached and active.id == reached[0].id:
            break  # round the page once
        reached.append(active)
        if wanted.keys() <= {el.id for el in reached}:
            break
        active.send_keys(Keys.TAB)
    missing = [el.get_attribute("outerHTML")[:80] for key, el in wanted.items() if key not in {r.id for r in reached}]
    assert missing == []
    order = [r.id for r in reached]
    assert max(map(order.index, (el.id for el in filters))) < min(map(order.index, (el.id for el in headings)))

    def shown(selector: str) -> int:
        return len(displayed(selector))

    # A facet: arrow keys pick the value, Enter keeps it.
    severity = browser.find_element(By.CSS_SELECTOR, "select[data-facet=severity]")
    severity.send_keys(Keys.ARROW_DOWN)
    severity.send_keys(Keys.ENTER)
    assert severity.get_attribute("value") == "critical"
    assert shown("#all-findings tbody tr") == sum(f["severity"] == "critical" for f in data["findings"]) > 0
    # Clear, by Enter on the focused button.
    reset = browser.find_element(By.ID, "filter-reset")
    reset.send_keys(Keys.ENTER)
    assert severity.get_attribute("value") == "" and shown("#all-findings tbody tr") == len(data["findings"])
    # Search: Enter applies it at once.
    target = data["findings"][0]
    address = f"{target['host']}:{target['port']}"
    search = browser.find_element(By.ID, "filter-text")
    search.send_keys(address, Keys.ENTER)
    assert shown("#all-findings tbody tr") == sum(f"{f['host']}:{f['port']}" == address for f in data["findings"])
    reset.send_keys(Keys.ENTER)
    # Sort: Enter on a heading's button sorts its table, Enter again reverses it.
    heading = browser.find_element(By.CSS_SELECTOR, "#all-findings thead th:nth-child(1)")
    button = heading.find_element(By.TAG_NAME, "button")

    def ranks() -> list[int]:
        return [int(row.find_element(By.TAG_NAME, "td").get_attribute("data-sort"))
                for row in browser.find_elements(By.CSS_SELECTOR, "#all-findings tbody tr")]

    button.send_keys(Keys.ENTER)
    assert heading.get_attribute("aria-sort") == "ascending" and ranks() == sorted(ranks()) and ranks()[0] < ranks()[-1]
    button.send_keys(Keys.ENTER)
    assert heading.get_attribute("aria-sort") == "descending" and ranks() == sorted(ranks(), reverse=True)
