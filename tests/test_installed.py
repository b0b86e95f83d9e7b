"""What users install is what we test: the sdist and the wheel built from a clean copy of the committed tree,
the wheel installed into fresh venvs and run from a folder outside the tree, against the real lab."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import TREE, run_cli

SHIPPED = ("netaudit", "probes", "report_templates", "lab")
# Where each source folder lands inside the wheel (pyproject.toml's package-dir).
IN_WHEEL = {"netaudit": "netaudit", "probes": "netaudit/probes", "report_templates": "netaudit/report_templates",
            "lab": "netaudit/lab"}


def tracked(*folders: str) -> set[str]:
    out = subprocess.run(["git", "-C", str(TREE), "ls-files", "--", *folders], capture_output=True, text=True,
                         check=True).stdout
    return {line for line in out.splitlines() if line}


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """The sdist and the wheel, built by `python -m build` from `git archive HEAD` (never the working tree)."""
    if shutil.which("git") is None or not (TREE / ".git").exists():
        pytest.skip("needs the git checkout to build from its committed tree")
    root = tmp_path_factory.mktemp("dist")
    src = root / "src"
    src.mkdir()
    archive = subprocess.run(["git", "-C", str(TREE), "archive", "HEAD"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    built = subprocess.run([sys.executable, "-m", "build", "--sdist", "--wheel", "-o", str(root / "out"), str(src)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    return {"wheel": next((root / "out").glob("*.whl")), "sdist": next((root / "out").glob("*.tar.gz"))}


def test_the_wheel_and_the_sdist_ship_every_tracked_file_of_the_shipped_folders(dist):
    files = tracked(*SHIPPED)
    assert any(f.endswith(".toml") for f in files)  # the family declarations are among them
    wheel = set(zipfile.ZipFile(dist["wheel"]).namelist())
    expected = {IN_WHEEL[f.split("/", 1)[0]] + "/" + f.split("/", 1)[1] for f in files}
    assert expected - wheel == set(), "tracked files missing from the wheel"
    with tarfile.open(dist["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert files - names == set(), "tracked files missing from the sdist"
    assert tracked("docs") - names == set(), "docs/ pages the output cites are missing from the sdist"


def make_venv(path: Path, requirement: str) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    done = subprocess.run([str(path / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", requirement],
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return path


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> Path:
    """A working folder outside the tree: nothing can be found relative to the checkout from there."""
    return tmp_path_factory.mktemp("elsewhere")


@pytest.fixture(scope="module")
def lab_venv(dist, tmp_path_factory):
    """A fresh venv with the wheel and its [lab] extra (what `netaudit demo` needs); removed afterwards."""
    path = tmp_path_factory.mktemp("venv-lab") / "venv"
    try:
        yield make_venv(path, f"{dist['wheel']}[lab]")
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def bare_venv(dist, tmp_path_factory):
    """A fresh venv with the wheel alone, as `pip install netaudit-tf` makes it."""
    path = tmp_path_factory.mktemp("venv-bare") / "venv"
    try:
        yield make_venv(path, str(dist["wheel"]))
    finally:
        shutil.rmtree(path, ignore_errors=True)


def installed(venv: Path, cwd: Path, *args: str, timeout: float = 600,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(venv / "bin" / "netaudit"), *args], capture_output=True, text=True, cwd=cwd,
                          env={**clean, **(env or {})}, timeout=timeout)


def test_the_installed_package_is_the_venvs_own_copy(bare_venv, outside):
    where = subprocess.run([str(bare_venv / "bin" / "python"), "-c", "import netaudit; print(netaudit.__file__)"],
                           capture_output=True, text=True, cwd=outside, check=True).stdout.strip()
    assert where.startswith(str(bare_venv)), where
    version = installed(bare_venv, outside, "--version")
    assert version.returncode == 0, version.stderr
    assert "tf-runtime" in version.stdout and "tf-serving" in version.stdout, version.stdout


def key_facts(data: dict) -> tuple[set, set]:
    endpoints = {(e["host"], e["port"], e["state"], e["kind"]) for e in data["endpoints"]}
    findings = {(f["rule"], f["host"], f["port"], f["severity"]) for f in data["findings"]}
    return endpoints, findings


def test_the_installed_scan_finds_on_the_lab_what_the_checkout_finds(bare_venv, outside, lab, lab_scan):
    """Endpoint for endpoint and finding for finding, against the same real lab and the same options."""
    proc = installed(bare_venv, outside, "scan", *lab.targets(), "--scope", "127.0.0.1/32", "--engine", "connect",
                     "--vantage", "loopback", "--timeout", "5", "--format", "json", "--no-history")
    assert proc.returncode == 0, proc.stderr
    mine = key_facts(json.loads(proc.stdout))
    theirs = key_facts(lab_scan.to_dict())
    assert {e[3] for e in mine[0]} >= {"tf-server", "modelserver-grpc", "modelserver-rest"}
    assert mine == theirs


def test_the_installed_export_names_the_tf_worker_through_nmap(bare_venv, outside, lab):
    if shutil.which("nmap") is None:
        pytest.skip("nmap is not installed (.ci/run installs it)")
    probes = outside / "netaudit-probes"
    done = installed(bare_venv, outside, "export", "nmap-probes", "-o", str(probes))
    assert done.returncode == 0, done.stderr
    worker = next(e for e in lab.endpoints if e.kind == "tf-server" and e.name.startswith("train/"))
    nmap = subprocess.run(["nmap", "-sT", "-sV", "-n", "-Pn", "--versiondb", str(probes), "-p", str(worker.port),
                           "127.0.0.1", "-oX", "-"], capture_output=True, text=True, timeout=300)
    assert 'product="TensorFlow distributed runtime gRPC"' in nmap.stdout, nmap.stdout[-2000:]


def test_the_installed_scan_without_its_declarations_exits_4_in_one_line(bare_venv, outside, lab):
    folder = Path(subprocess.run([str(bare_venv / "bin" / "python"), "-c",
                                  "import netaudit.probes as p; print(p.__path__[0])"],
                                 capture_output=True, text=True, cwd=outside, check=True).stdout.strip())
    aside = outside / "declarations-aside"
    aside.mkdir()
    declarations = sorted(folder.glob("*/family.toml"))
    assert len(declarations) >= 7
    worker = next(e for e in lab.endpoints if e.kind == "tf-server")
    try:
        for path in declarations:
            path.rename(aside / f"{path.parent.name}.toml")
        for args in (("scan", f"127.0.0.1:{worker.port}", "--no-history"), ("--version",),
                     ("export", "nmap-probes")):
            proc = installed(bare_venv, outside, *args)
            assert proc.returncode == 4, (args, proc.stdout, proc.stderr)
            assert len(proc.stderr.strip().splitlines()) == 1 and "family.toml" in proc.stderr, proc.stderr
            assert str(folder) in proc.stderr  # where it looked
        for path in declarations:
            if path.parent.name != "tf_serving":
                (aside / f"{path.parent.name}.toml").rename(path)
        one = installed(bare_venv, outside, "scan", f"127.0.0.1:{worker.port}", "--no-history")
        assert one.returncode == 4 and len(one.stderr.strip().splitlines()) == 1, one.stderr
        assert "probes/tf_serving/ holds probe code but no family.toml" in one.stderr, one.stderr
    finally:
        for path in declarations:
            if not path.exists():
                (aside / f"{path.parent.name}.toml").rename(path)


def test_the_demo_without_the_lab_extra_says_what_to_install_before_it_builds_anything(bare_venv, outside):
    out = outside / "demo-bare"
    cache = outside / "cache-bare"
    proc = installed(bare_venv, outside, "demo", "--loopback", "-o", str(out), timeout=120,
                     env={"NETAUDIT_PEER_VENVS": str(cache)})
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "pip install 'netaudit-tf[lab]'" in proc.stderr and "tensorflow" in proc.stderr
    assert not cache.exists()  # no peer venv was built


def test_the_installed_demo_writes_its_report(lab_venv, outside):
    out = outside / "demo"
    proc = installed(lab_venv, outside, "demo", "--loopback", "-o", str(out), timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (out / "report.html").read_text(encoding="utf-8")
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    kinds = {e["kind"] for e in report["endpoints"] if e["state"] == "open"}
    assert {"tf-server", "modelserver-grpc", "inference-v2-rest", "tensorboard"} <= kinds, kinds
    assert any(f["severity"] == "critical" for f in report["findings"])
    assert "tf-server" in html


def test_the_checkout_and_the_install_agree_on_the_version(bare_venv, outside):
    mine = installed(bare_venv, outside, "--version").stdout
    assert mine == run_cli("--version").stdout


def test_the_installed_k8s_expect_gives_the_checkouts_verdicts(bare_venv, outside):
    """The NetworkPolicy engine, its rule files and the snapshot reader ship: the installed wheel, run outside
    the tree on a copy of the kubectl fixture and a TFJob manifest, agrees cell for cell with the checkout."""
    for name in ("kubectl-list.json", "tfjob-cluster.yaml"):
        shutil.copy(TREE / "tests" / "k8s" / name, outside / name)
    files = ("kubectl-list.json", "tfjob-cluster.yaml")
    mine = installed(bare_venv, outside, "k8s", "expect", *files, "--format", "json")
    theirs = run_cli("k8s", "expect", *(str(outside / f) for f in files), "--format", "json")
    assert mine.returncode == theirs.returncode and mine.returncode in (0, 1), mine.stderr
    data = json.loads(mine.stdout)
    assert data["schema"] == "netaudit/k8s-expect-v1" and data["cells"] and data["findings"]
    assert {c["verdict"] for c in data["cells"]} >= {"allowed", "denied"}
    assert data["cells"] == json.loads(theirs.stdout)["cells"]
