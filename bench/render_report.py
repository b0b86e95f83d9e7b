"""Benchmark: render the HTML report for 10,000 endpoints and 20,000 findings; print time and size.

The data is synthetic but shaped like real scans (tf-server devices, transcripts of 8 RPC lines, ModelServer
inventories), because rendering cost depends on shape, not on where the data came from.

    python bench/render_report.py [--endpoints 10000] [--findings 20000] [--browser]

With --browser the report is also opened in Debian's headless chromium (selenium + chromium-driver) and the
time until it is usable is printed: until the load event (the filter script runs at the end of the body, so
filters work from then on), then one filter, one search and one sort of the findings table, each timed inside
the page.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netaudit.assess.rules import load_rules  # noqa: E402
from netaudit.core.model import Endpoint, ScanResult  # noqa: E402
from netaudit.outputs.render import to_html  # noqa: E402

TRANSCRIPT = [f"-> /tensorflow.WorkerService/Method{i} (empty request, no credentials, plaintext h2c) <- OK"
              for i in range(8)]


def synthetic(endpoints: int, findings: int) -> ScanResult:
    result = ScanResult(vantage="bench", started="2026-11-27T00:00:00Z", finished="2026-11-27T00:10:00Z",
                        complete=True, stats={"probes": endpoints * 12})
    for i in range(endpoints):
        host = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        if i % 2:
            ep = Endpoint(host, 8500, "open", "modelserver-grpc", "plaintext", False,
                          ["tensorflow.serving.ModelService", "tensorflow.serving.PredictionService"],
                          {"models": {f"model_{i}": {"versions": [{"version": 1, "state": "AVAILABLE"}]}},
                           "admin_reload": "reachable with no credentials"}, list(TRANSCRIPT))
        else:
            ep = Endpoint(host, 2222, "open", "tf-server", "plaintext", False, ["tensorflow.WorkerService"],
                          {"job": "worker", "task": i, "devices": [{"device_type": "CPU", "job": "worker", "task": i}],
                           "tf_version": {"range": ">= 2.21"}}, list(TRANSCRIPT))
        result.endpoints.append(ep)
    rules = [r for r in load_rules() if r.id in ("tf-server-unauthenticated-plaintext", "tf-profiler-exposed",
                                                 "modelserver-reload-exposed", "modelserver-plaintext")]
    per_endpoint = max(1, findings // endpoints)
    for ep in result.endpoints:
        for rule in (rules[:2] if ep.kind == "tf-server" else rules[2:])[:per_endpoint]:
            result.findings.append(rule.finding(ep))
    return result


IN_PAGE = {
    "filter severity=critical": """
        var s = document.querySelector('select[data-facet=severity]'); var t = performance.now();
        s.value = 'critical'; s.dispatchEvent(new Event('change'));
        var shown = document.querySelectorAll('#all-findings tbody tr:not([hidden])').length;
        return [performance.now() - t, shown];""",
    "search (first, reads all text)": """
        var s = document.querySelector('select[data-facet=severity]'); s.value = ''; s.dispatchEvent(new Event('change'));
        var q = document.getElementById('filter-text'); var t = performance.now();
        q.value = '10.0.7.'; q.dispatchEvent(new Event('input'));
        return new Promise(function (done) { setTimeout(function () {
            done([performance.now() - t - 120, document.querySelectorAll('#all-findings tbody tr:not([hidden])').length]);
        }, 121); });""",
    "sort findings by endpoint": """
        document.getElementById('filter-reset').click();
        var th = document.querySelector('#all-findings thead th:nth-child(2)'); var t = performance.now();
        th.click();
        return [performance.now() - t, document.querySelectorAll('#all-findings tbody tr').length];""",
}


def in_browser(html: str) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    with tempfile.TemporaryDirectory() as folder:
        options.add_argument(f"--user-data-dir={folder}/profile")
        page = Path(folder) / "report.html"
        page.write_text(html, encoding="utf-8")
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=options)
        try:
            started = time.perf_counter()
            driver.get(page.as_uri())
            wall = time.perf_counter() - started
            timing = driver.execute_script(
                "var t = performance.timing; return [t.domContentLoadedEventEnd - t.navigationStart, "
                "t.loadEventEnd - t.navigationStart];")
            print(f"chromium: DOM ready {timing[0] / 1000:.2f}s, usable (load event, filters live) "
                  f"{timing[1] / 1000:.2f}s, driver.get {wall:.2f}s")
            for name, script in IN_PAGE.items():
                if "Promise" in script:
                    script = "var cb = arguments[arguments.length - 1]; (function () {" + script + "})().then(cb);"
                    ms, rows = driver.execute_async_script(script)
                else:
                    ms, rows = driver.execute_script(script)
                print(f"chromium: {name}: {ms:.0f} ms ({rows} finding rows)")
        finally:
            driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, default=10000)
    parser.add_argument("--findings", type=int, default=20000)
    parser.add_argument("--browser", action="store_true", help="also time the report in headless chromium")
    args = parser.parse_args()
    result = synthetic(args.endpoints, args.findings)
    started = time.perf_counter()
    html = to_html(result)
    seconds = time.perf_counter() - started
    size = len(html.encode())
    print(f"{len(result.endpoints)} endpoints, {len(result.findings)} findings: rendered in {seconds:.2f}s, "
          f"{size / 1e6:.1f} MB (goal: under 3 s and 15 MB)")
    if args.browser:
        in_browser(html)


if __name__ == "__main__":
    main()
