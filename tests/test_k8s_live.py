"""`k8s:` with no file: the official `kubernetes` client reads a live API server, here a stand-in one on the real
REST paths over TLS (tests/k8s_apiserver.py), through a kubeconfig and through the in-cluster loader. The
targets and identities must be exactly those of `k8s:FILE` for the same objects."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from k8s_apiserver import ApiServer, kubeconfig, path_of, requests_by_path
from netaudit.core.errors import UsageError
from netaudit.lab.certs import LabCA
from netaudit.targets import k8s_live
from netaudit.targets.k8s_live import Access, read_cluster
from netaudit.targets.parse import build_targets, k8s_blocks

FIXTURE = Path(__file__).parent / "k8s" / "tfjob-cluster.yaml"
NETAUDIT = [sys.executable, "-m", "netaudit"]
TOKEN = "eyJhbGciOiJSUzI1NiJ9.test-service-account-token"
SCOPE = "198.18.0.0/15,fd00:198:18::/64,203.0.113.0/24"

# A Knative revision's Service has no selector: only its EndpointSlice says which pod it routes to.
KNATIVE = """\
apiVersion: v1
kind: Service
metadata: {name: flowers-predictor-00001, namespace: ml-serving}
spec:
  clusterIP: 198.18.40.77
  ports: [{name: http, port: 80, targetPort: 8012}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: flowers-predictor-00001-x7k2q
  namespace: ml-serving
  labels: {kubernetes.io/service-name: flowers-predictor-00001}
addressType: IPv4
endpoints:
- addresses: ["198.18.8.30"]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: flowers-predictor-7c9d8f6b4-k8m2p, namespace: ml-serving}
ports: [{name: http, port: 8012, protocol: TCP}]
---
apiVersion: serving.knative.dev/v1
kind: Revision
metadata: {name: flowers-predictor-00001, namespace: ml-serving}
spec: {containers: [{image: tensorflow/serving:2.16.1}]}
"""


@pytest.fixture
def cluster_files(tmp_path: Path) -> tuple[list[dict], str]:
    """The fixture cluster plus a Knative revision, as documents (for the server) and as k8s:FILE,FILE."""
    extra = tmp_path / "knative.yaml"
    extra.write_text(KNATIVE)
    documents = [d for text in (FIXTURE.read_text(), KNATIVE) for d in yaml.safe_load_all(text) if d]
    flowers = next(d for d in documents if d["kind"] == "Pod" and d["metadata"]["name"].startswith("flowers"))
    assert flowers["status"]["podIP"] == "198.18.8.30", "the EndpointSlice above points at this pod"
    return documents, f"k8s:{FIXTURE},{extra}"


@pytest.fixture
def ca(tmp_path: Path) -> tuple[LabCA, Path, Path]:
    authority = LabCA(tmp_path / "pki", "test cluster CA")
    cert, key = authority.issue("apiserver", "kube-apiserver", sans=("127.0.0.1",))
    return authority, cert, key


@pytest.fixture(autouse=True)
def fresh_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """live_snapshot() reads once per process: each test starts with no reading."""
    monkeypatch.setattr(k8s_live, "_LIVE", {})


def shape(blocks) -> list[tuple]:
    return sorted(((b.spec, tuple(map(str, b.networks)), b.ports, b.name, json.loads(b.identity or "null"))
                   for b in blocks), key=repr)


def test_the_kubeconfig_path_gives_the_targets_of_the_same_snapshot_file(cluster_files, ca, tmp_path, monkeypatch):
    documents, spec = cluster_files
    authority, cert, key = ca
    with ApiServer(documents, cert, key, TOKEN, page_size=2) as server:
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", server.url, authority.cert_path, TOKEN)))
        live = build_targets(["k8s:"], scope=SCOPE)
        seen = requests_by_path(server)
    from_file = build_targets([spec], scope=SCOPE)
    assert shape(live.blocks) == shape(from_file.blocks)
    assert {b.source for b in live.blocks} == {"k8s API"}
    flowers = next(json.loads(b.identity) for b in live.blocks if b.name.startswith("ml-serving/flowers-predictor-7"))
    assert "ml-serving/flowers-predictor-00001" in flowers["services"]  # routed by its EndpointSlice alone
    # Every list was fetched with the token, and paged: the fixture has more pods than one page holds.
    assert all(r["authorization"] == f"Bearer {TOKEN}" for r in server.requests)
    assert len(seen[path_of("Pod")]) > 1 and all(r["query"]["limit"] == "500" for r in server.requests)
    assert any("continue" in r["query"] for r in seen[path_of("Pod")])
    for kind in ("Namespace", "Service", "EndpointSlice", "NetworkPolicy", "TFJob", "InferenceService", "Revision"):
        assert seen[path_of(kind)], f"{kind} was not listed"


def test_the_in_cluster_loader_with_an_injected_token_ca_and_environment(cluster_files, ca, tmp_path):
    documents, spec = cluster_files
    authority, cert, key = ca
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(TOKEN)
    (account / "ca.crt").write_bytes(authority.cert_path.read_bytes())
    with ApiServer(documents, cert, key, TOKEN) as server:
        environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(server.port),
                   "HOME": str(tmp_path)}  # no KUBECONFIG and no ~/.kube/config: the service account is used
        snapshot = read_cluster(Access(environ=environ, token_file=str(account / "token"),
                                       ca_file=str(account / "ca.crt")))
    live = k8s_blocks(snapshot, "k8s:", "k8s API")
    from_file = build_targets([spec], scope=SCOPE)
    assert shape(live) == shape(from_file.blocks)
    assert {r["authorization"].lower() for r in server.requests} == {f"bearer {TOKEN}".lower()}
    assert sorted(snapshot.custom_objects) == ["InferenceService", "Revision", "TFJob"]


def test_an_absent_custom_resource_is_simply_absent(cluster_files, ca, tmp_path):
    documents, _ = cluster_files
    authority, cert, key = ca
    without_crds = [d for d in documents if d["kind"] not in ("TFJob", "InferenceService", "Revision")]
    with ApiServer(without_crds, cert, key, TOKEN) as server:
        config = kubeconfig(tmp_path / "config", server.url, authority.cert_path, TOKEN)
        snapshot = read_cluster(Access(environ={"KUBECONFIG": str(config)}))
    assert dict(snapshot.custom_objects) == {}
    assert len(snapshot.pods) == len([d for d in documents if d["kind"] == "Pod"])
    statuses = requests_by_path(server)
    assert statuses[path_of("TFJob")], "the TFJob list was asked for and answered 404"


def run_scan(environ: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    env.update(HOME=str(tmp_path), **environ)
    return subprocess.run([*NETAUDIT, "scan", "k8s:", "--scope", SCOPE, "--engine", "connect"], capture_output=True,
                          text=True, timeout=120, env=env)


@pytest.mark.parametrize("forbid, word", [({"NetworkPolicy"}, "networkpolicies"), ({"Pod"}, "pods")])
def test_forbidden_is_one_line_naming_the_resource_and_the_verb(cluster_files, ca, tmp_path, forbid, word):
    documents, _ = cluster_files
    authority, cert, key = ca
    with ApiServer(documents, cert, key, TOKEN, forbid=forbid) as server:
        proc = run_scan({"KUBECONFIG": str(kubeconfig(tmp_path / "config", server.url, authority.cert_path, TOKEN))},
                        tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "403" in proc.stderr and word in proc.stderr and "list" in proc.stderr
    assert "system:serviceaccount:apps:netaudit" in proc.stderr  # the server's own words name the user


@pytest.mark.parametrize("kind, plural, group", [("TFJob", "tfjobs", "kubeflow.org"),
                                                  ("InferenceService", "inferenceservices", "serving.kserve.io"),
                                                  ("Revision", "revisions", "serving.knative.dev")])
def test_a_forbidden_custom_resource_is_absent_with_one_warning(cluster_files, ca, tmp_path, capsys, kind, plural,
                                                                 group):
    """A reader bound to the built-in `view` role may list no custom resource: the rest is still read."""
    documents, _ = cluster_files
    authority, cert, key = ca
    with ApiServer(documents, cert, key, TOKEN, forbid={kind}) as server:
        config = kubeconfig(tmp_path / "config", server.url, authority.cert_path, TOKEN)
        snapshot = read_cluster(Access(environ={"KUBECONFIG": str(config)}))
    assert kind not in snapshot.custom_objects
    assert sorted(snapshot.custom_objects) == sorted({"TFJob", "InferenceService", "Revision"} - {kind})
    assert len(snapshot.pods) == len([d for d in documents if d["kind"] == "Pod"])
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "warning" in warning[0] and "403" in warning[0], warning
    assert f"resource {plural} in API group {group}" in warning[0] and "list" in warning[0]


def test_a_refused_token_is_one_line(cluster_files, ca, tmp_path):
    documents, _ = cluster_files
    authority, cert, key = ca
    with ApiServer(documents, cert, key, TOKEN) as server:
        proc = run_scan({"KUBECONFIG": str(kubeconfig(tmp_path / "config", server.url, authority.cert_path,
                                                      "not-the-token"))}, tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "401" in proc.stderr and "namespaces" in proc.stderr


def test_a_server_of_another_ca_is_refused(cluster_files, ca, tmp_path):
    documents, _ = cluster_files
    _, cert, key = ca
    other = LabCA(tmp_path / "other", "some other CA")
    with ApiServer(documents, cert, key, TOKEN) as server:
        with pytest.raises(UsageError, match="TLS|certificate"):
            read_cluster(Access(environ={"KUBECONFIG": str(kubeconfig(tmp_path / "config", server.url,
                                                                      other.cert_path, TOKEN))}))
        assert not server.requests  # nothing was asked of a server that could not prove who it is


def test_an_unreachable_server_is_one_line(ca, tmp_path):
    authority, _, _ = ca
    with socket.socket() as held:  # bound, never listening: connections to it are refused
        held.bind(("127.0.0.1", 0))
        url = f"https://127.0.0.1:{held.getsockname()[1]}"
        proc = run_scan({"KUBECONFIG": str(kubeconfig(tmp_path / "config", url, authority.cert_path, TOKEN))},
                        tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "cannot reach" in proc.stderr and "refused" in proc.stderr.lower()


def test_a_server_that_never_answers_meets_the_deadline(cluster_files, ca, tmp_path):
    documents, _ = cluster_files
    authority, cert, key = ca
    with ApiServer(documents, cert, key, TOKEN, stall=True) as server:
        config = kubeconfig(tmp_path / "config", server.url, authority.cert_path, TOKEN)
        with pytest.raises(UsageError, match="cannot reach .* timed out"):
            read_cluster(Access(environ={"KUBECONFIG": str(config)}), read_timeout=0.5)


def test_a_server_that_drips_a_page_meets_the_total_deadline(cluster_files, ca, tmp_path):
    """A byte every 0.5 s keeps each recv under its timeout; the whole reading must still end at `total`.
    The fixture's first page alone would take minutes at that rate; the subprocess is given 30 s."""
    documents, _ = cluster_files
    authority, cert, key = ca
    with ApiServer(documents, cert, key, TOKEN, drip=0.5) as server:
        config = kubeconfig(tmp_path / "config", server.url, authority.cert_path, TOKEN)
        code = ("import sys\n"
                "from netaudit.core.errors import UsageError\n"
                "from netaudit.targets.k8s_live import Access, read_cluster\n"
                "try:\n"
                f"    read_cluster(Access(environ={{'KUBECONFIG': {str(config)!r}}}), total=2, read_timeout=1)\n"
                "except UsageError as exc:\n"
                "    print(exc, file=sys.stderr)\n"
                "    sys.exit(2)\n")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "took longer than 2 s in all" in proc.stderr and "namespaces" in proc.stderr


def test_the_caps_of_a_snapshot_hold_over_all_pages(cluster_files, ca, tmp_path, monkeypatch):
    """Every page is small; the lists together are not. Counted as they arrive, not after."""
    documents, _ = cluster_files
    authority, cert, key = ca
    with ApiServer(documents, cert, key, TOKEN, page_size=2) as server:
        config = kubeconfig(tmp_path / "config", server.url, authority.cert_path, TOKEN)
        access = Access(environ={"KUBECONFIG": str(config)})
        monkeypatch.setattr(k8s_live, "MAX_OBJECTS", 5)
        with pytest.raises(UsageError, match=r"more than 5 objects in all \(at pods\)"):
            read_cluster(access)
        asked = len(server.requests)
        monkeypatch.setattr(k8s_live, "MAX_OBJECTS", 10_000)
        monkeypatch.setattr(k8s_live, "MAX_FILE_BYTES", 4096)
        with pytest.raises(UsageError, match="lists together are larger than 4,096 bytes"):
            read_cluster(access)
    page = max(len(json.dumps(d)) for d in documents)
    assert page < 4096, "each page alone is under the byte cap"
    assert len(server.requests) - asked > 2, "the byte cap was passed over several pages"
    assert len([d for d in documents if d["kind"] != "Namespace"]) > 5


def test_no_credentials_at_all(tmp_path):
    with pytest.raises(UsageError, match=r"no kubeconfig .*\(KUBERNETES_SERVICE_HOST"):
        read_cluster(Access(environ={"HOME": str(tmp_path)}))
    (tmp_path / "bad").write_text("clusters: [}")
    with pytest.raises(UsageError, match="kubeconfig .*bad"):
        read_cluster(Access(environ={"KUBECONFIG": str(tmp_path / "bad")}))


def test_the_in_cluster_role_grants_every_list_the_reader_makes():
    manifest = Path(__file__).parent.parent / "docs" / "scheduling" / "kubernetes-in-cluster.yaml"
    role = next(d for d in yaml.safe_load_all(manifest.read_text()) if d and d["kind"] == "ClusterRole")
    granted = {(group, resource) for rule in role["rules"] if {"get", "list"} <= set(rule["verbs"])
               for group in rule["apiGroups"] for resource in rule["resources"]}
    for resource in k8s_live.RESOURCES:
        assert (resource.group, resource.plural) in granted, resource.qualified


def test_k8s_expect_without_a_file_reads_the_live_api(cluster_files, ca, tmp_path):
    documents, spec = cluster_files
    authority, cert, key = ca
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    with ApiServer(documents, cert, key, TOKEN) as server:
        env.update(HOME=str(tmp_path), KUBECONFIG=str(kubeconfig(tmp_path / "config", server.url,
                                                                 authority.cert_path, TOKEN)))
        live = subprocess.run([*NETAUDIT, "k8s", "expect", "--format", "json"], capture_output=True, text=True,
                              timeout=120, env=env)
    assert live.returncode == 0, live.stderr
    files = subprocess.run([*NETAUDIT, "k8s", "expect", *spec.removeprefix("k8s:").split(","), "--format", "json"],
                           capture_output=True, text=True, timeout=120)
    assert json.loads(live.stdout)["cells"] == json.loads(files.stdout)["cells"]
    assert json.loads(live.stdout)["workloads"] == 6
