"""docs/scheduling runs as written: every manifest passes the Kubernetes API schema, the systemd unit passes
`systemd-analyze verify`, and each writable path comes from the manifest itself. (The Indexed Job's merge
runs as its uid with HOME=/ inside the real image: tests/test_image.py.)"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess

import pytest

from conftest import TREE

FOLDER = TREE / "docs" / "scheduling"


def manifests() -> list[tuple[str, dict]]:
    """Every document of every example manifest."""
    import yaml

    return [(path.name, doc) for path in sorted(FOLDER.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize("name,doc", manifests(), ids=lambda v: v if isinstance(v, str) else v["metadata"]["name"])
def test_each_manifest_passes_the_api_schema_and_runs_the_image_as_non_root(name, doc):
    import kubernetes_validate

    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    if doc["kind"] not in ("Job", "CronJob"):
        assert doc["kind"] in ("ClusterRole", "ClusterRoleBinding", "ServiceAccount"), doc["kind"]
        if doc["kind"] == "ClusterRole":  # read-only, and never Secrets or ConfigMaps
            for rule in doc["rules"]:
                assert set(rule["verbs"]) <= {"get", "list", "watch"}
                assert not {"secrets", "configmaps"} & set(rule["resources"])
        return
    spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    container = pod["containers"][0]
    assert container["image"].endswith("/netaudit:0.1.0")
    if pod.get("serviceAccountName"):  # the in-cluster Job: its account is the one the binding names
        assert pod["serviceAccountName"] == "netaudit"
    words = " ".join(container.get("command", []) + container.get("args", []))
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}  # valueFrom (downward API): None
    written = re.findall(r"(?:-o|--store)[ ,\"]+([^\" ,\]]+)", words) + ([env["NETAUDIT_STORE"]]
                                                                        if "NETAUDIT_STORE" in env else [])
    assert written, words
    for path in written:  # each written path is on a volume, never in the image's read-only layers or HOME
        assert any(path.startswith(m + "/") for m in mounts), (path, mounts)
    if " scan " in f" {words} ":
        assert "--engine connect" in words.replace('", "', " ")  # no CAP_NET_RAW in a restricted pod


def test_the_systemd_unit_verifies_and_may_write_what_it_writes(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (.ci/run installs systemd)")
    service = (FOLDER / "netaudit-corp.service").read_text()
    binary = re.search(r"^ExecStart=(\S+)", service, re.M)[1]
    # A root of its own: the unit's binary (the install the comment gives) and the host's system units.
    root = tmp_path / "root"
    (root / binary.lstrip("/")).parent.mkdir(parents=True)
    (root / binary.lstrip("/")).write_text("#!/bin/sh\n")
    (root / binary.lstrip("/")).chmod(0o755)
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    for name in ("netaudit-corp.service", "netaudit-corp.timer"):
        shutil.copy(FOLDER / name, units / name)
    shutil.copytree("/usr/lib/systemd/system", root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    proc = subprocess.run(["systemd-analyze", "verify", f"--root={root}", "/etc/systemd/system/netaudit-corp.service",
                           "/etc/systemd/system/netaudit-corp.timer"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr
    assert "pip install netaudit-tf" in service and binary == "/opt/netaudit/bin/netaudit"
    # DynamicUser= implies ProtectSystem=strict: only the StateDirectory and ReadWritePaths are writable.
    assert "DynamicUser=yes" in service
    writable = [f"/var/lib/{d}" for d in re.findall(r"^StateDirectory=(\S+)", service, re.M)]
    writable += re.findall(r"^ReadWritePaths=(\S+)", service, re.M)
    argv = shlex.split(re.search(r"^ExecStart=(.*?)(?<!\\)$", service, re.M | re.S)[1].replace("\\\n", " "))
    for flag in ("--store", "-o"):
        path = argv[argv.index(flag) + 1]
        assert any(path.startswith(w + "/") for w in writable), (flag, path, writable)


def test_the_ci_example_installs_netaudit_from_the_package_index_under_its_own_name():
    ci = (FOLDER / "ci-pre-deploy.yml").read_text()
    installs = re.findall(r"pip install (\S+)", ci)
    assert installs == ["netaudit-tf"]
