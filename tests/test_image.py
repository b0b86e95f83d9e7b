"""The container image, as tools/build-image builds it from the committed tree: its user scans a real TF
worker on loopback and names it, and the Indexed Job of docs/scheduling (scan shards, then the merge) runs
as written, as uid 65532 with HOME=/. The test removes every image and container it made."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from contextlib import contextmanager

import pytest

from conftest import TREE
from conftest import tf_worker as start_tf_worker
from netaudit import __version__

BASE = "localhost/netaudit-base:bookworm"


def buildah(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["buildah", *args], capture_output=True, text=True, timeout=timeout, check=check)


def exists(ref: str) -> bool:
    return buildah("inspect", "--type", "image", ref, check=False).returncode == 0


@pytest.fixture(scope="module")
def image():
    if shutil.which("buildah") is None:
        pytest.skip("buildah is not installed (.ci/run installs it)")
    if os.geteuid() != 0:
        pytest.skip("building the image with buildah needs root here (CI runs as root)")
    name = f"localhost/netaudit-test-{uuid.uuid4().hex[:8]}"
    base_was_there = exists(BASE)
    built = subprocess.run([str(TREE / "tools" / "build-image"), "--name", name], capture_output=True, text=True,
                           timeout=1800)
    try:
        assert built.returncode == 0, built.stderr[-3000:]
        ref = built.stdout.strip().splitlines()[-1]
        assert exists(ref) and exists(f"{name}:latest")
        print(f"\nimage {ref}: {built.stderr.strip().splitlines()[-2]}")  # the size line of buildah images
        yield ref
    finally:
        for tag in ("latest", __version__):
            buildah("rmi", f"{name}:{tag}", check=False)
        if not base_was_there:
            buildah("rmi", BASE, check=False)


@contextmanager
def container(ref: str):
    ctr = buildah("from", "--quiet", ref).stdout.strip()
    try:
        yield ctr
    finally:
        buildah("rm", ctr, check=False)


def run_in(ctr: str, *argv: str, user: str | None = None, env: dict[str, str] | None = None,
           volumes: tuple[str, ...] = (), timeout: float = 300) -> subprocess.CompletedProcess:
    opts = ["--isolation", "chroot", *(["--user", user] if user else [])]
    for key, value in (env or {}).items():
        opts += ["--env", f"{key}={value}"]
    for volume in volumes:
        opts += ["--volume", volume]
    done = buildah("run", *opts, ctr, "--", *argv, timeout=timeout, check=False)
    # buildah's own lines about the exit status follow the command's stderr; keep only what netaudit wrote.
    done.stderr = "".join(line for line in done.stderr.splitlines(keepends=True)
                          if not line.startswith(("subprocess exited with status", "Error: exit status")))
    return done


@pytest.fixture(scope="module")
def tf_worker():
    """A real tf.distribute.Server worker on a loopback port of this test's own."""
    from netaudit.lab.processes import free_port

    port = free_port()
    with start_tf_worker(lambda *argv, **kw: subprocess.Popen(argv, **kw), port):
        yield port


def test_the_images_user_scans_a_real_tf_worker_and_names_it(image, tf_worker):
    with container(image) as ctr:
        who = run_in(ctr, "id", "-u")
        assert who.stdout.strip() == "65532", who
        proc = run_in(ctr, "netaudit", "scan", f"127.0.0.1:{tf_worker}", "--format", "json", "--no-history")
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        endpoint = next(e for e in data["endpoints"] if e["port"] == tf_worker)
        assert (endpoint["kind"], endpoint["authenticated"]) == ("tf-server", False), endpoint
        assert any(f["severity"] == "critical" and f["port"] == tf_worker for f in data["findings"])
        # No CAP_NET_RAW for this user: connect by default, and an explicit syn is refused in one line.
        assert data["options"]["engine"] == "connect" and "CAP_NET_RAW" in data["options"]["engine_reason"]
        syn = run_in(ctr, "netaudit", "scan", f"127.0.0.1:{tf_worker}", "--engine", "syn", "--no-history")
        assert syn.returncode == 2 and len(syn.stderr.strip().splitlines()) == 1, syn.stderr
        assert shutil.which("nmap") is None or run_in(ctr, "nmap", "--version").returncode == 0


def test_the_indexed_job_scans_and_merges_as_written_as_its_uid_with_home_slash(image, tf_worker, tmp_path):
    import yaml

    sweep, merge = yaml.safe_load_all((TREE / "docs" / "scheduling" / "kubernetes-indexed-job.yaml").read_text())
    results = tmp_path / "results"
    results.mkdir()
    results.chmod(0o777)  # the PersistentVolume, writable by the pods' fsGroup
    uid = str(sweep["spec"]["template"]["spec"]["securityContext"]["runAsUser"])

    def pod_env(job: dict) -> dict[str, str]:
        return {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}

    scan_script = " ".join(sweep["spec"]["template"]["spec"]["containers"][0]["args"])
    # The one change: the lab's worker instead of the manifest's 10.20.0.0/16 (nothing else may be probed).
    assert "10.20.0.0/16 --scope 10.20.0.0/16" in scan_script
    scan_script = scan_script.replace("10.20.0.0/16 --scope 10.20.0.0/16",
                                      f"127.0.0.1 --scope 127.0.0.1/32 -p {tf_worker}")
    env = pod_env(sweep)
    with container(image) as ctr:
        for index in range(sweep["spec"]["completions"]):
            proc = run_in(ctr, "sh", "-c", scan_script, user=f"{uid}:{uid}",
                          env={**env, "HOME": "/", "JOB_COMPLETION_INDEX": str(index)},
                          volumes=(f"{results}:/results",))
            assert proc.returncode in (0, 1), (index, proc.stderr)
        merge_script = " ".join(merge["spec"]["template"]["spec"]["containers"][0]["args"])
        proc = run_in(ctr, "sh", "-c", merge_script, user=f"{uid}:{uid}", env={**pod_env(merge), "HOME": "/"},
                      volumes=(f"{results}:/results",))
    assert proc.returncode in (0, 1), proc.stderr
    run = results / env["RUN"]
    assert len(list(run.glob("shard-*.jsonl"))) == sweep["spec"]["completions"]
    html = (run / "report.html").read_text(encoding="utf-8")
    assert "tf-server" in html and f"127.0.0.1:{tf_worker}" in html
    assert (results / "history.sqlite").exists()  # the store where the manifest's NETAUDIT_STORE put it
