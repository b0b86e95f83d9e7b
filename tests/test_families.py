"""The neighbour families of issue 12 against real servers from PyPI: KServe, MLServer, Triton (PyTriton),
TensorBoard, next to the TF Serving stand-in, a plain FastAPI app and a plain grpcio server.

Every probe runs against every port, so an identification that leaks to the wrong server fails here.
"""

from __future__ import annotations

import asyncio
from importlib import metadata

import pytest

from netaudit.lab.loopback import LoopbackLab
from netaudit.lab.peer_servers import MLSERVER_MODELS, triton_version
from netaudit.probes.inference_v1 import rest as inference_v1
from netaudit.probes.inference_v2 import protocol as inference_v2
from netaudit.probes.tf_serving import rest as modelserver_rest
from netaudit.probes.tensorboard import rest as tensorboard
from netaudit.probes.base import ProbeContext
from netaudit.transport.safety import do_not_call
from netaudit.transport.rpc import RpcSession

TIMEOUT = 5.0
NAMES = ("half_plus_two", "churn_scorer", "fraud_detector")
READ_ONLY_V2 = {"ServerLive", "ServerReady", "ServerMetadata", "ModelMetadata", "ModelReady"}


class FamiliesLab(LoopbackLab):
    """The loopback lab without its TF clusters and TLS variants: the TF Serving stand-in, the decoys
    (a plain grpcio server among them) and the neighbour servers."""

    def _plan(self, deadline: float) -> None:
        self._plan_decoys()
        self._plan_modelserver(deadline)
        self._plan_peers()


@pytest.fixture(scope="module")
def fam(tmp_path_factory):
    with FamiliesLab(tmp_path_factory.mktemp("families"), peers=True) as running:
        yield running


def endpoint(lab, name: str):
    found = next((e for e in lab.endpoints if e.name == name), None)
    if found is None and name.startswith("triton/"):
        pytest.skip("no Triton in this lab: PyTriton's Python-backend stub needs the system python3.11")
    return found


def run(coro):
    return asyncio.run(coro)


def tensors(items: list[dict]) -> tuple[inference_v2.Tensor, ...]:
    return tuple(inference_v2.Tensor(t["name"], t["datatype"], tuple(t["shape"])) for t in items)


# --- the message layouts are the real proto's -------------------------------------------------------------

def test_v2_messages_match_the_kserve_proto():
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    request = pb.ModelMetadataRequest.FromString(inference_v2.name_request("half_plus_two"))
    assert request.name == "half_plus_two" and pb.ModelReadyRequest.FromString(request.SerializeToString()).name
    meta = pb.ServerMetadataResponse(name="triton", version="2.51.0", extensions=["a", "b"]).SerializeToString()
    assert inference_v2.server_metadata_grpc(meta) == ("triton", "2.51.0", ("a", "b"))
    tensor = pb.ModelMetadataResponse.TensorMetadata
    model = pb.ModelMetadataResponse(name="m", versions=["1", "2"], platform="python",
                                     inputs=[tensor(name="x", datatype="FP32", shape=[-1, 3])],
                                     outputs=[tensor(name="y", datatype="INT64", shape=[7])]).SerializeToString()
    assert inference_v2.model_grpc("m", model, True) == inference_v2.Model(
        "m", ("1", "2"), "python", True, (inference_v2.Tensor("x", "FP32", (-1, 3)),),
        (inference_v2.Tensor("y", "INT64", (7,)),))
    assert inference_v2.ready_grpc(pb.ModelReadyResponse(ready=True).SerializeToString()) is True
    assert inference_v2.ready_grpc(pb.ModelReadyResponse(ready=False).SerializeToString()) is False


def test_every_state_changing_v2_method_of_the_real_service_is_on_do_not_call():
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == inference_v2.SERVICE
    unsafe = {f"/{service.full_name}/{m.name}" for m in service.methods if m.name not in READ_ONLY_V2}
    assert unsafe == {f"/{inference_v2.SERVICE}/{m}" for m in ("ModelInfer", "RepositoryModelLoad", "RepositoryModelUnload")}
    assert unsafe <= do_not_call()
    assert not {m for m, _ in inference_v2.declared_calls()} & do_not_call()


# --- each family, identified and inventoried ----------------------------------------------------------------

def test_kserve_v1(fam):
    ep = endpoint(fam, "kserve/rest-v1")
    facts = run(inference_v1.probe(ep.host, ep.port, TIMEOUT))
    assert facts.kind == "inference-v1-rest" and facts.product == "kserve" and facts.authenticated is False
    assert facts.listed is True
    assert facts.models == (inference_v1.V1Model("churn_scorer", False), inference_v1.V1Model("half_plus_two", True))
    assert any("does not exist." in line for line in facts.evidence)


@pytest.mark.parametrize("name", ["kserve/rest-v2", "mlserver/rest", "triton/rest"])
def test_v2_rest(fam, name):
    ep = endpoint(fam, name)
    facts = run(inference_v2.probe_rest(ep.host, ep.port, TIMEOUT, NAMES))
    assert facts.kind == "inference-v2-rest" and facts.authenticated is False
    assert_v2_facts(fam, ep, facts)


@pytest.mark.parametrize("name", ["kserve/grpc", "mlserver/grpc", "triton/grpc"])
def test_v2_grpc(fam, name):
    ep = endpoint(fam, name)
    facts = run(inference_v2.probe_grpc(ep.host, ep.port, TIMEOUT, NAMES))
    assert facts.kind == "inference-v2-grpc" and facts.authenticated is False
    assert_v2_facts(fam, ep, facts)


def assert_v2_facts(fam, ep, facts) -> None:
    product = ep.facts["product"]
    assert facts.product == product
    if product == "kserve":
        assert facts.version == metadata.version("kserve") and facts.extensions == ("model_repository_extension",)
        assert facts.models == tuple(
            inference_v2.Model(name, (), "", spec["ready"], tensors(spec["inputs"]), tensors(spec["outputs"]))
            for name, spec in sorted(ep.facts["models"].items()))
    elif product == "mlserver":
        assert facts.version == ep.facts["version"] == "1.7.1" and facts.extensions == ()
        assert facts.models == tuple(
            inference_v2.Model(name, tuple(spec.get("versions", [])), spec.get("platform", ""), True,
                               tensors(spec["inputs"]), tensors(spec["outputs"]))
            for name, spec in sorted(MLSERVER_MODELS.items()))
    else:
        process = next(p for p in fam.processes if p.name == "triton")
        assert facts.version == triton_version(process) and "model_repository" in facts.extensions
        # PyTriton with max_batch_size adds the batch dimension in front.
        assert facts.models == (inference_v2.Model("half_plus_two", ("1",), "python", True,
                                                   (inference_v2.Tensor("x", "FP32", (-1, -1)),),
                                                   (inference_v2.Tensor("y", "FP32", (-1, -1)),)),)


def test_v2_rest_finds_kserve_models_without_being_told_their_names(fam):
    ep = endpoint(fam, "kserve/rest-v2")
    facts = run(inference_v2.probe_rest(ep.host, ep.port, TIMEOUT))
    assert [m.name for m in facts.models] == ["churn_scorer", "half_plus_two"]


def test_triton_metrics_leak_model_names(fam):
    ep = endpoint(fam, "triton/metrics")
    evidence: list[str] = []
    assert run(inference_v2.triton_metric_names(ep.host, ep.port, TIMEOUT, evidence)) == ["half_plus_two"]


def test_tensorboard(fam):
    ep = endpoint(fam, "tensorboard")
    facts = run(tensorboard.probe(ep.host, ep.port, TIMEOUT))
    assert facts.kind == "tensorboard" and facts.product == "tensorboard" and facts.authenticated is False
    assert facts.version == metadata.version("tensorboard") == ep.facts["version"]
    assert facts.logdir == ep.facts["logdir"] and facts.runs == tuple(ep.facts["runs"]) and facts.runs_total == 2
    assert {"scalars", "timeseries"} <= set(facts.active_plugins) and "custom_scalars" not in facts.active_plugins


# --- no cross-talk: every probe against every port ---------------------------------------------------------

def identify_http(host: str, port: int) -> set[str]:
    async def all_probes():
        return await asyncio.gather(inference_v1.probe(host, port, TIMEOUT), inference_v2.probe_rest(host, port, TIMEOUT),
                                    tensorboard.probe(host, port, TIMEOUT),
                                    modelserver_rest.probe(host, port, TIMEOUT, ProbeContext()))

    v1, v2, board, tfs = run(all_probes())
    found = {facts.kind for facts in (v1, v2, board) if facts is not None}
    return found | ({tfs.kind} if tfs.kind else set())


def identify_grpc(host: str, port: int) -> set[str]:
    facts = run(inference_v2.probe_grpc(host, port, TIMEOUT))
    return {facts.kind} if facts else set()


HTTP_EXPECTED = {
    "kserve/rest-v1": {"inference-v1-rest", "inference-v2-rest"},
    "mlserver/rest": {"inference-v2-rest"},
    "mlserver/metrics": set(),
    "triton/rest": {"inference-v2-rest"},
    "triton/metrics": set(),
    "tensorboard": {"tensorboard"},
    "decoy/fastapi": set(),
    "decoy/http": set(),
    "modelserver/rest": {"modelserver-rest"},
}
GRPC_EXPECTED = {"kserve/grpc": {"inference-v2-grpc"}, "mlserver/grpc": {"inference-v2-grpc"},
                 "triton/grpc": {"inference-v2-grpc"}, "decoy/grpc": set(), "modelserver/grpc": set()}


@pytest.mark.parametrize("name", sorted(HTTP_EXPECTED))
def test_http_ports_are_identified_as_exactly_one_family(fam, name):
    ep = endpoint(fam, name)
    assert identify_http(ep.host, ep.port) == HTTP_EXPECTED[name]


@pytest.mark.parametrize("name", sorted(GRPC_EXPECTED))
def test_grpc_ports_are_identified_as_v2_only_when_they_are(fam, name):
    ep = endpoint(fam, name)
    assert identify_grpc(ep.host, ep.port) == GRPC_EXPECTED[name]


def test_a_real_v2_grpc_probe_sends_only_read_only_calls(fam):
    ep = endpoint(fam, "kserve/grpc")

    async def calls():
        session = RpcSession(ep.target, TIMEOUT)
        try:
            assert await session.ready()
            assert await inference_v2.probe_grpc_session(session, NAMES) is not None
            return session.calls
        finally:
            await session.close()

    sent = run(calls())
    assert {m for m, _ in sent} == set(inference_v2.GRPC_CALLS)
    assert not {m for m, _ in sent} & do_not_call()



# --- the whole engine: sniff, the registry's probes, cross-referencing, rules --------------------------------

def test_a_scan_names_every_family_and_its_findings(fam):
    """The engine path a user runs: every port's kind and product, models learned across ports, and the
    findings each family's rules give."""
    from netaudit.scanner.scan import ScanOptions, scan
    from netaudit.targets.parse import build_targets

    targets = sorted({e.target for e in fam.endpoints})
    result = scan(build_targets(targets, scope="127.0.0.1/32"), ScanOptions(engine="connect", timeout=TIMEOUT))
    by_port = {e.port: e for e in result.endpoints}
    rules = {}
    for f in result.findings:
        rules.setdefault(f.port, set()).add(f.rule)

    def check(name: str, kind: str, product: str | None, expected_rules: set[str]):
        lab_ep = endpoint(fam, name)
        ep = by_port[lab_ep.port]
        assert (ep.kind, ep.details.get("product")) == (kind, product), (name, ep.evidence)
        assert rules.get(lab_ep.port, set()) == expected_rules, name
        return ep

    kserve = check("kserve/rest-v1", "inference-v1-rest", "kserve",
                   {"inference-v1-predict-exposed", "inference-v2-infer-exposed", "inference-v2-repository-exposed"})
    assert kserve.details["protocols"] == ["v1", "v2"] and set(kserve.details["models"]) == {"churn_scorer",
                                                                                           "half_plus_two"}
    grpc = check("kserve/grpc", "inference-v2-grpc", "kserve",
                 {"inference-v2-infer-exposed", "inference-v2-repository-exposed"})
    # The gRPC port lists nothing; the names came from the same host's REST port.
    assert set(grpc.details["models"]) == {"churn_scorer", "half_plus_two"}
    check("mlserver/rest", "inference-v2-rest", "mlserver", {"inference-v2-infer-exposed"})
    check("mlserver/grpc", "inference-v2-grpc", "mlserver", {"inference-v2-infer-exposed"})
    board = check("tensorboard", "tensorboard", "tensorboard", {"tensorboard-unauthenticated"})
    assert board.details["logdir"] == endpoint(fam, "tensorboard").facts["logdir"]
    assert check("modelserver/grpc", "modelserver-grpc", None, {
        "modelserver-reload-exposed", "modelserver-predict-exposed", "modelserver-plaintext", "tf-profiler-exposed",
        "modelserver-known-advisories-no-new-access"})
    check("decoy/fastapi", "http", None, set())
    check("decoy/grpc", "grpc", None, set())
    if any(e.name == "triton/rest" for e in fam.endpoints):
        check("triton/rest", "inference-v2-rest", "triton", {"inference-v2-infer-exposed",
                                                             "inference-v2-repository-exposed"})
    assert "probe_error" not in str([e.details for e in result.endpoints])
