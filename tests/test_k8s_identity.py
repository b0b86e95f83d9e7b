"""A TF server's own job and task against its pod's TF_CONFIG and replica labels: a real tf.distribute.Server on
loopback (job worker, task 0), scanned as the `k8s:` identity of a snapshot pod that says otherwise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tf_worker
from netaudit.lab.processes import free_port

NETAUDIT = [sys.executable, "-m", "netaudit"]


def tfjob_pod(port: int, rtype: str, index: int, label_type: str | None = None) -> dict:
    """A replica of TFJob `mnist` as the training operator makes it: its labels, its tfjob-port and its
    TF_CONFIG, at the loopback address where the test's TF worker listens."""
    cluster = {"worker": [f"mnist-worker-0.ml.svc:{port}"], "ps": [f"mnist-ps-0.ml.svc:{port}",
                                                                 f"mnist-ps-1.ml.svc:{port}"]}
    config = {"cluster": cluster, "task": {"type": rtype, "index": index}, "environment": "cloud"}
    name = f"mnist-{rtype}-{index}"
    return {"kind": "Pod",
            "metadata": {"namespace": "ml", "name": name,
                         "labels": {"training.kubeflow.org/job-name": "mnist",
                                    "training.kubeflow.org/replica-type": label_type or rtype,
                                    "training.kubeflow.org/replica-index": str(index),
                                    "training.kubeflow.org/operator-name": "tfjob-controller"},
                         "ownerReferences": [{"kind": "TFJob", "name": "mnist", "controller": True}]},
            "spec": {"nodeName": "node-1", "containers": [{
                "name": "tensorflow", "image": "tensorflow/tensorflow:2.16.1",
                "ports": [{"name": "tfjob-port", "containerPort": port}],
                "env": [{"name": "TF_CONFIG", "value": json.dumps(config)}]}]},
            "status": {"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}}


@pytest.fixture(scope="module")
def worker_port():
    port = free_port()
    with tf_worker(lambda *argv, **kw: subprocess.Popen(argv, **kw), port):
        yield port


def scanned(snapshot: Path, tmp_path: Path, fmt: str) -> Path:
    out = tmp_path / f"scan.{fmt}"
    proc = subprocess.run([*NETAUDIT, "scan", f"k8s:{snapshot}", "--scope", "127.0.0.1/32", "--engine", "connect",
                           "--format", fmt, "-o", str(out), "--timeout", "3"], capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr
    return out


def scan(snapshot: Path, tmp_path: Path, fmt: str) -> dict:
    out = scanned(snapshot, tmp_path, fmt)
    if fmt == "jsonl":
        from netaudit.results.stream import read_stream

        return read_stream(str(out))
    return json.loads(out.read_text())


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_a_server_that_is_not_the_replica_its_pod_names(worker_port, tmp_path, fmt):
    snapshot = tmp_path / "cluster.json"
    snapshot.write_text(json.dumps({"kind": "List", "items": [tfjob_pod(worker_port, "ps", 1)]}))
    data = scan(snapshot, tmp_path, fmt)
    (endpoint,) = [e for e in data["endpoints"] if e["port"] == worker_port]
    assert endpoint["kind"] == "tf-server" and endpoint["details"]["job"] == "worker"
    assert endpoint["details"]["k8s"]["pod"] == "mnist-ps-1" and endpoint["details"]["k8s"]["replica_type"] == "ps"
    (finding,) = [f for f in data["findings"] if f["rule"] == "k8s-tf-task-mismatch"]
    assert finding["severity"] == "medium" and finding["port"] == worker_port
    assert "job 'worker' task 0" in finding["title"] and "ml/mnist-ps-1" in finding["title"]
    assert any("TF_CONFIG task: type 'ps', index 1" in line for line in finding["evidence"])
    assert any("replica-type and -index: type 'ps', index 1" in line for line in finding["evidence"])


def test_labels_alone_can_disagree(worker_port, tmp_path):
    """TF_CONFIG says worker 0, as the server does; the labels, set by hand, say chief."""
    snapshot = tmp_path / "cluster.json"
    snapshot.write_text(json.dumps({"kind": "List", "items": [tfjob_pod(worker_port, "worker", 0, "Chief")]}))
    (finding,) = [f for f in scan(snapshot, tmp_path, "json")["findings"] if f["rule"] == "k8s-tf-task-mismatch"]
    assert "labels" in finding["title"] and "TF_CONFIG" not in finding["title"]


def test_the_replica_its_pod_names_is_no_finding(worker_port, tmp_path):
    snapshot = tmp_path / "cluster.json"
    snapshot.write_text(json.dumps({"kind": "List", "items": [tfjob_pod(worker_port, "worker", 0, "Worker")]}))
    data = scan(snapshot, tmp_path, "json")
    assert any(e["details"].get("job") == "worker" for e in data["endpoints"])
    assert not [f for f in data["findings"] if f["rule"] == "k8s-tf-task-mismatch"]


def test_the_report_shows_the_endpoint_under_its_namespace_and_tfjob(worker_port, tmp_path):
    """The HTML report's Kubernetes view: the endpoint under `ml / TFJob mnist`, with its pod, replica, node
    and how it was reached, and its worst finding; a scan with no k8s: identity has no such section."""
    from html.parser import HTMLParser

    snapshot = tmp_path / "cluster.json"
    snapshot.write_text(json.dumps({"kind": "List", "items": [tfjob_pod(worker_port, "ps", 1)]}))
    page = scanned(snapshot, tmp_path, "html").read_text()

    class Section(HTMLParser):
        """The text of the Kubernetes section: its heading and each table row as a list of cells."""

        def __init__(self) -> None:
            super().__init__()
            self.inside, self.depth, self.headings, self.rows, self.cell = False, 0, [], [], None

        def handle_starttag(self, tag, attrs):
            if tag == "section":
                self.depth += 1
                self.inside = self.inside or dict(attrs).get("id") == "kubernetes"
            if self.inside and tag == "tr":
                self.rows.append([])
            if self.inside and tag in ("td", "h3"):
                self.cell = ""

        def handle_endtag(self, tag):
            if self.inside and tag == "td" and self.cell is not None:
                self.rows[-1].append(self.cell.strip())
                self.cell = None
            if self.inside and tag == "h3":
                self.headings.append(self.cell.strip())
                self.cell = None
            if tag == "section":
                self.depth -= 1
                self.inside = self.inside and self.depth > 0

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

    view = Section()
    view.feed(page)
    assert view.headings == ["ml / TFJob mnist"]
    (row,) = [r for r in view.rows if r]
    assert row == [f"127.0.0.1:{worker_port}", "tf-server", "open", "critical", "mnist-ps-1", "ps 1", "node-1",
                   "pod IP", "-"]
    plain = tmp_path / "plain.html"
    proc = subprocess.run([*NETAUDIT, "scan", f"127.0.0.1:{worker_port}", "--engine", "connect", "--no-history",
                           "-o", str(plain)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert 'id="kubernetes"' not in plain.read_text()
