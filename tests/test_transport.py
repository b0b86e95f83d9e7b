"""Transport security on every lab TLS variant: exact transport, client-certificate state, certificate
facts and findings, without and with a client identity. Decoy TLS services stay decoys."""

from __future__ import annotations

import pytest

from netaudit.probes.transport.tls import TlsOptions
from netaudit.scanner.scan import ScanOptions, scan
from netaudit.targets.parse import build_targets

TLS_VARIANTS = ("tls/no-alpn", "tls/expired", "tls/self-signed", "tls/mismatch", "tls/dual", "tls/legacy",
                "tls/nginx-mtls", "tls/nginx-optional",
                "modelserver-tls/grpc", "modelserver-mtls/grpc", "decoy/tls")
GOOD_CERT = {"subject": "CN=localhost", "issuer": "CN=netaudit lab CA", "sans": ["localhost", "127.0.0.1"],
             "expired": False, "self_signed": False, "hostname_match": True, "key": "EC secp256r1 (256)"}
TF_TLS_FINDINGS = {"tf-server-unauthenticated-tls": "critical", "tls-without-client-auth": "high",
                   "tf-profiler-exposed": "medium"}


def lab_endpoint(lab, name):
    return next(e for e in lab.endpoints if e.name == name)


def pki(lab) -> dict:
    return lab_endpoint(lab, "tls/expired").facts


def run(lab, client: bool):
    from pathlib import Path

    facts = pki(lab)
    options = TlsOptions(ca_bundle=Path(facts["ca"]), client_cert=Path(facts["client_cert"]) if client else None,
                         client_key=Path(facts["client_key"]) if client else None)
    targets = [lab_endpoint(lab, name).target for name in TLS_VARIANTS]
    result = scan(build_targets(targets), ScanOptions(tls=options, timeout=5))
    by_name = {}
    for name in TLS_VARIANTS:
        port = lab_endpoint(lab, name).port
        by_name[name] = (next(e for e in result.endpoints if e.port == port),
                         {f.rule: f.severity for f in result.findings if f.port == port})
    return by_name


@pytest.fixture(scope="module")
def outsider(lab):
    """What someone with the CA bundle but no client certificate sees."""
    return run(lab, client=False)


@pytest.fixture(scope="module")
def insider(lab):
    """The same scan with the lab's client certificate."""
    return run(lab, client=True)


def cert_subset(ep) -> dict:
    cert = ep.details["tls"]["certificate"]
    return {k: cert[k] for k in GOOD_CERT}


@pytest.mark.parametrize("name, changes, extra_finding", [
    ("tls/no-alpn", {}, None),
    ("tls/expired", {"expired": True}, "tls-certificate-expired"),
    ("tls/self-signed", {"self_signed": True, "issuer": "CN=localhost"}, "tls-certificate-self-signed"),
    ("tls/mismatch", {"subject": "CN=wrong.example", "sans": ["wrong.example"], "hostname_match": False},
     "tls-certificate-hostname-mismatch"),
    ("tls/legacy", {}, "tls-legacy-version"),
])
def test_tf_server_behind_tls_proxies(lab, outsider, name, changes, extra_finding):
    ep, findings = outsider[name]
    expected = lab_endpoint(lab, name)
    assert (ep.kind, ep.transport, ep.authenticated) == ("tf-server", "tls", False), ep.evidence
    assert (ep.details["job"], ep.details["task"]) == (expected.job, expected.task)
    tls = ep.details["tls"]
    assert tls["client_cert"] == "not requested"
    legacy = name == "tls/legacy"
    assert tls["versions"] == (["TLSv1.0", "TLSv1.1"] if legacy else []) + ["TLSv1.2", "TLSv1.3"]
    assert cert_subset(ep) == {**GOOD_CERT, **changes}
    assert tls["trusted_ca_bundle"] is (not changes) and tls["trusted_public"] is False
    want = dict(TF_TLS_FINDINGS)
    if extra_finding:
        want[extra_finding] = "medium"
    assert findings == want
    if name == "tls/no-alpn":
        assert tls["alpn"] is None and tls["alpn_note"] == "no ALPN h2 negotiated: current gRPC clients refuse this peer"
    else:
        assert tls["alpn"] == "h2" and "alpn_note" not in tls


def test_plaintext_and_tls_on_one_port_is_a_downgrade(outsider):
    ep, findings = outsider["tls/dual"]
    assert (ep.kind, ep.transport, ep.authenticated) == ("tf-server", "plaintext", False), ep.evidence
    assert ep.details["downgrade"] == {"tls_version": "TLSv1.3"}
    assert "plaintext and TLS (TLSv1.3) on the same port: a downgrade" in ep.evidence
    assert findings == {"tf-server-unauthenticated-plaintext": "critical", "tls-downgrade": "high",
                        "tf-profiler-exposed": "medium"}


def test_nginx_requires_the_certificate_at_the_http_layer(outsider, insider):
    ep, findings = outsider["tls/nginx-mtls"]
    assert (ep.kind, ep.transport, ep.authenticated) == ("tls", "mtls", True), ep.evidence
    assert ep.details["tls"]["client_cert"] == "required at the HTTP layer (HTTP 400 without a certificate)"
    assert any("Received http2 header with status: 400" in line for line in ep.evidence)
    assert findings == {}
    ep, findings = insider["tls/nginx-mtls"]
    assert (ep.kind, ep.transport, ep.authenticated) == ("tf-server", "mtls", True), ep.evidence
    assert (ep.details["job"], ep.details["task"]) == ("chief", 0)
    assert findings == {}


def test_client_certificate_requested_but_not_required(outsider):
    ep, findings = outsider["tls/nginx-optional"]
    assert (ep.kind, ep.transport, ep.authenticated) == ("tf-server", "tls", False), ep.evidence
    assert ep.details["tls"]["client_cert"] == "requested, not required"
    assert (ep.details["job"], ep.details["task"]) == ("chief", 0)
    assert findings == TF_TLS_FINDINGS


def test_modelserver_tls_without_client_verify(outsider):
    ep, findings = outsider["modelserver-tls/grpc"]
    assert (ep.kind, ep.transport, ep.authenticated) == ("modelserver-grpc", "tls", False), ep.evidence
    assert ep.details["tls"]["client_cert"] == "not requested" and cert_subset(ep) == GOOD_CERT
    assert ep.details["tls"]["trusted_ca_bundle"] is True
    assert findings == {"modelserver-reload-exposed": "critical", "modelserver-predict-exposed": "high",
                        "tls-without-client-auth": "high", "tf-profiler-exposed": "medium",
                        "modelserver-known-advisories-no-new-access": "info"}


def test_modelserver_with_client_verify(outsider, insider):
    ep, findings = outsider["modelserver-mtls/grpc"]
    assert (ep.kind, ep.transport, ep.authenticated) == ("tls", "mtls", True), ep.evidence
    assert ep.details["tls"]["client_cert"] == "required"
    assert cert_subset(ep) == GOOD_CERT and ep.details["tls"]["trusted_ca_bundle"] is True
    assert findings == {}
    ep, findings = insider["modelserver-mtls/grpc"]
    assert (ep.kind, ep.transport, ep.authenticated) == ("modelserver-grpc", "mtls", True), ep.evidence
    assert list(ep.details["models"]) == ["half_plus_two"]
    assert ep.details["admin_reload"] == "reachable"
    assert any(line.startswith("HandleReloadConfigRequest reachable with the --client-cert identity")
               for line in ep.evidence)
    # Behind mTLS the TF Serving advisories of its (derived) release are the remaining risk.
    assert findings == {"modelserver-known-advisories-behind-mtls": "medium"}


def test_tls_decoy_is_not_a_tf_server(outsider):
    ep, findings = outsider["decoy/tls"]
    assert (ep.kind, ep.transport, ep.authenticated) == ("tls", "tls", None), ep.evidence
    tls = ep.details["tls"]
    assert (tls["alpn"], tls["client_cert"]) == ("http/1.1", "not requested")
    assert tls["certificate"]["self_signed"] is True and tls["certificate"]["hostname_match"] is False
    assert findings == {}


def test_client_identity_changes_nothing_where_none_is_required(outsider, insider):
    for name in ("tls/no-alpn", "tls/expired", "tls/dual", "tls/nginx-optional", "modelserver-tls/grpc", "decoy/tls"):
        before, after = outsider[name][0], insider[name][0]
        assert (before.kind, before.transport, before.authenticated) == (after.kind, after.transport, after.authenticated)
        assert outsider[name][1] == insider[name][1]


def test_a_rejected_client_certificate_leaves_the_inside_undetermined(lab, tmp_path):
    """A --client-cert from another CA: the server refuses it (in TLS 1.3 only after the handshake), so
    what runs behind the certificate check is undetermined, with the server's reason, never "not gRPC"."""
    from pathlib import Path

    from netaudit.lab.certs import LabCA

    cert, key = LabCA(tmp_path / "other-ca", "not the lab CA").issue("intruder", "intruder")
    options = TlsOptions(ca_bundle=Path(pki(lab)["ca"]), client_cert=cert, client_key=key)
    target = lab_endpoint(lab, "modelserver-mtls/grpc")
    result = scan(build_targets([target.target]), ScanOptions(tls=options, timeout=5))
    (ep,) = result.endpoints
    assert (ep.kind, ep.transport, ep.authenticated) == ("tls", "mtls", True), ep.evidence
    inside = ep.details["tls"]["inside"]
    assert inside.startswith("undetermined: the TLS connection for the probes failed"), inside
    assert "without sending anything" in inside or "ALERT" in inside.upper(), inside
    assert result.findings == []
