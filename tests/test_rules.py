"""Rules are data checked when they load, and every rule is shown matching one hand-built endpoint and
missing another that differs in the fact the rule is about."""

from __future__ import annotations

import copy

import pytest

from netaudit.assess.rules import load_rules, parse_rules
from netaudit.core.model import Endpoint
from netaudit.core.registry import RegistryError


def ep(kind: str, transport: str = "plaintext", authenticated: bool | None = False, services=(), **details) -> Endpoint:
    return Endpoint("198.18.1.10", 2222, "open", kind, transport, authenticated, list(services), details)


ADVISORIES = {"list": [{"id": "CVE-2021-29569", "affected": "all", "severity": "unknown", "fixed_in": "2.5.0",
                        "summary": "heap read", "url": "https://osv.dev/CVE-2021-29569"}],
              "all": 1, "some": 0, "by_severity": "1 unknown"}
VERSION = {"range": "2.4", "min": "2.4", "max": "2.4"}
TLS_BAD = {"certificate": {"expired": True, "self_signed": True, "hostname_match": False}, "versions": ["TLSv1.0"]}

# rule -> (an endpoint it must match, one it must not: the same but for the fact the rule judges)
CASES = {
    "tf-server-unauthenticated-plaintext": (ep("tf-server"), ep("tf-server", authenticated=True)),
    "tf-server-unauthenticated-tls": (ep("tf-server", "tls"), ep("tf-server", "mtls")),
    "tf-coordination-service-exposed": (ep("tf-server", coordination="leader"),
                                        ep("tf-server", coordination="registered")),
    "tf-profiler-exposed": (ep("modelserver-grpc", services=["tensorflow.ProfilerService"]),
                            ep("modelserver-grpc", services=["tensorflow.serving.ModelService"])),
    "tf-known-advisories-no-new-access": (ep("tf-server", tf_version=VERSION, advisories=ADVISORIES),
                                          ep("tf-server", tf_version=VERSION, advisories={"list": []})),
    "modelserver-known-advisories-no-new-access": (
        ep("modelserver-grpc", admin_reload="reachable", serving_version=VERSION, advisories=ADVISORIES),
        ep("modelserver-grpc", admin_reload="refused", serving_version=VERSION, advisories=ADVISORIES)),
    "modelserver-known-advisories": (
        ep("modelserver-grpc", admin_reload="refused", serving_version=VERSION, advisories=ADVISORIES),
        ep("modelserver-grpc", admin_reload="refused", serving_version=VERSION, advisories={"list": []})),
    "modelserver-known-advisories-behind-mtls": (
        ep("modelserver-grpc", "mtls", True, serving_version=VERSION, advisories=ADVISORIES),
        ep("modelserver-grpc", "tls", True, serving_version=VERSION, advisories=ADVISORIES)),
    "tf-known-advisories-behind-mtls": (ep("tf-server", "mtls", True, tf_version=VERSION, advisories=ADVISORIES),
                                        ep("tf-server", "tls", True, tf_version=VERSION, advisories=ADVISORIES)),
    "modelserver-reload-exposed": (ep("modelserver-grpc", admin_reload="reachable"),
                                   ep("modelserver-grpc", admin_reload="refused")),
    "modelserver-predict-exposed": (ep("modelserver-rest", predict="reachable", models={"m": {}}),
                                    ep("modelserver-rest", predict="reachable", models={})),
    "modelserver-plaintext": (ep("modelserver-grpc"), ep("modelserver-grpc", "tls")),
    "modelserver-metrics-leak-model-names": (ep("modelserver-rest", metrics_model_names=["m"]),
                                             ep("modelserver-rest", metrics_model_names=[])),
    "modelserver-rest-cors-wildcard": (ep("modelserver-rest", cors="*"),
                                       ep("modelserver-rest", cors="https://app.internal")),
    "tls-without-client-auth": (ep("modelserver-grpc", "tls"), ep("grpc", "tls")),
    "tls-certificate-expired": (ep("tf-server", "tls", tls=TLS_BAD),
                                ep("tf-server", "tls", tls={"certificate": {"expired": False}})),
    "tls-certificate-self-signed": (ep("tf-server", "tls", tls=TLS_BAD),
                                    ep("tf-server", "tls", tls={"certificate": {"self_signed": False}})),
    "tls-certificate-hostname-mismatch": (ep("tf-server", "tls", tls=TLS_BAD),
                                          ep("tf-server", "tls", tls={"certificate": {"hostname_match": True}})),
    "tls-legacy-version": (ep("tf-server", "tls", tls=TLS_BAD), ep("tf-server", "tls", tls={"versions": ["TLSv1.3"]})),
    "tls-downgrade": (ep("tf-server", downgrade={"tls_version": "TLSv1.3"}), ep("tf-server")),
    "tensorboard-unauthenticated": (ep("tensorboard", version="2.21.0", logdir="/srv/logs"),
                                    ep("tensorboard", authenticated=None, version="2.21.0", logdir="/srv/logs")),
    "inference-v1-predict-exposed": (ep("inference-v1-rest", protocols=["v1"], models={"m": {"ready": True}}),
                                     ep("inference-v1-rest", protocols=["v1"], models={})),
    "inference-v2-infer-exposed": (ep("inference-v2-grpc", product="mlserver", version="1.7.1", protocols=["v2"]),
                                   ep("inference-v2-grpc", "plaintext", True, product="mlserver", version="1.7.1",
                                      protocols=["v2"])),
    "inference-v2-repository-exposed": (
        ep("inference-v2-rest", product="triton", version="2.51.0", protocols=["v2"],
           extensions=["classification", "model_repository", "model_repository(unload_dependents)"]),
        ep("inference-v2-rest", product="mlserver", version="1.7.1", protocols=["v2"], extensions=[])),
}


def test_every_endpoint_rule_has_a_case():
    assert {r.id for r in load_rules() if r.scope == "endpoint"} == set(CASES)


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_matches_and_misses(rule_id):
    rule = next(r for r in load_rules() if r.id == rule_id)
    hit, miss = CASES[rule_id]
    assert rule.matches(hit)
    assert not rule.matches(miss)
    finding = rule.finding(hit)
    assert finding.title and finding.remediation and finding.rule == rule_id


def test_policy_rules_load_in_the_same_format():
    assert {r.id: r.when for r in load_rules() if r.scope == "policy"} == {
        "policy-unexpected-reachability": {"policy": "not-allowed"},
        "policy-transport-requirement": {"policy": "requirement-unmet"}}


GOOD = {"id": "x-rule", "severity": "high", "when": {"kind": "tf-server"}, "title": "t", "why": "w",
        "remediation": "r"}


@pytest.mark.parametrize("change, message", [
    ({"whne": {"kind": "tf-server"}}, "unknown key 'whne'"),
    ({"severity": "hgih"}, "severity 'hgih' is not one of"),
    ({"when": {"kind": "tf-sever"}}, "kind 'tf-sever' is not declared"),
    ({"when": {"family": "tf-servnig"}}, "family 'tf-servnig' is not declared"),
    ({"cvss": "CVSS:3.1/AV:N/AC:L"}, "does not parse"),
    ({"when": {"admin_reload": "open"}}, "'open' is not one of reachable, refused"),
    ({"when": {"coordination_service": "enabled"}}, "neither an endpoint field"),
    ({"when": {"authenticated": "no"}}, "expected true or false"),
    ({"when": {"models": "x"}}, "a table fact takes"),
    ({"when": {"policy": "not-allowed"}}, "when.policy is for policy rules"),
    ({"why": None}, "missing 'why'"),
    ({"why": "two\nlines"}, "'why' must be one line"),
])
def test_a_broken_rule_is_a_clear_error_naming_it(change, message):
    rule = {**copy.deepcopy(GOOD), **change}
    if "whne" in change:
        del rule["when"]
    with pytest.raises(RegistryError) as err:
        parse_rules([rule], "test")
    assert message in str(err.value) and "'x-rule'" in str(err.value)
