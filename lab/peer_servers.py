"""Start the lab's neighbour servers (issue 12): KServe, MLServer, Triton (through PyTriton) and TensorBoard.

Each starter writes what its server serves (models, a log directory), spawns it (inside `netns` when given)
and returns the process plus the facts a scan must find, for the lab's LabEndpoint entries. Processes print
or log a READY marker only once every port of theirs accepts, so wait_ready() works inside namespaces too.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from netaudit.lab import kserve_server, tensorboard_server
from netaudit.lab.peers import PEER_VENVS, venv_python
from netaudit.lab.processes import LabProcess, module_argv, spawn

# MLServer logs this for its last server (metrics, REST, gRPC start concurrently; gRPC comes last).
MLSERVER_READY = "gRPC server running on"
MLSERVER_MODELS: dict[str, dict] = {
    "half_plus_two": {"implementation": "netaudit_lab_model.HalfPlusTwo", "versions": ["1"],
                      "platform": "netaudit-lab",
                      "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1]}],
                      "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}]},
    "fraud_detector": {"implementation": "netaudit_lab_model.HalfPlusTwo",
                       "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 8]}],
                       "outputs": [{"name": "fraud", "datatype": "FP32", "shape": [-1, 1]}]},
}
# PyTriton bundles tritonserver and a Python-backend stub linked against the system's libpython3.11, so
# its venv must be built from that same interpreter (pyenv's 3.11.7 stdlib breaks the stub's 3.11.2).
TRITON_READY = "READY"


@dataclass(frozen=True)
class Started:
    process: LabProcess
    facts: dict


def _prefix(netns: str | None) -> list[str]:
    return ["ip", "netns", "exec", netns] if netns else []


def start_kserve(name: str, http_port: int, grpc_port: int, log_dir: Path, netns: str | None = None) -> Started:
    argv = [*_prefix(netns), *module_argv("netaudit.lab.kserve_server", "--http-port", str(http_port),
                                          "--grpc-port", str(grpc_port))]
    models = {model: {"ready": healthy, "inputs": inputs, "outputs": outputs}
              for model, (healthy, inputs, outputs) in kserve_server.MODELS.items()}
    return Started(spawn(name, argv, log_dir), {"product": "kserve", "version": metadata.version("kserve"),
                                                "models": models})


def write_mlserver_repository(root: Path, http_port: int, grpc_port: int, metrics_port: int) -> Path:
    """settings.json plus one folder per model with its model-settings.json and the model's module."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "settings.json").write_text(json.dumps({
        "http_port": http_port, "grpc_port": grpc_port, "metrics_port": metrics_port, "host": "0.0.0.0",
        "parallel_workers": 0, "load_models_at_startup": True}))
    for model, settings in MLSERVER_MODELS.items():
        folder = root / model
        folder.mkdir()
        shutil.copy(Path(__file__).with_name("mlserver_model.py"), folder / "netaudit_lab_model.py")
        (folder / "model-settings.json").write_text(json.dumps({"name": model, **settings}))
    return root


def start_mlserver(name: str, http_port: int, grpc_port: int, metrics_port: int, root: Path, log_dir: Path,
                   netns: str | None = None) -> Started:
    python = venv_python("mlserver")
    repository = write_mlserver_repository(root, http_port, grpc_port, metrics_port)
    argv = [*_prefix(netns), str(python), "-m", "mlserver.cli.main", "start", str(repository)]
    version = _venv_version(python, "mlserver")
    models = {model: {"versions": s.get("versions", []),
                      "platform": s.get("platform", ""), "ready": True, "inputs": s["inputs"], "outputs": s["outputs"]}
              for model, s in MLSERVER_MODELS.items()}
    return Started(spawn(name, argv, log_dir, MLSERVER_READY),
                   {"product": "mlserver", "version": version, "models": models, "metrics_port": metrics_port})


def triton_available() -> bool:
    """PyTriton's venv needs the system interpreter its stub is linked against (Debian's python3.11)."""
    interpreter = PEER_VENVS["triton"][0]
    return interpreter is None or Path(interpreter).exists()


def triton_version(process: LabProcess) -> str | None:
    """The Triton release, from the `server_version` row of the table tritonserver logs at start-up."""
    for line in Path(process.log).read_text(errors="replace").splitlines():
        if "| server_version" in line:
            return line.split("|")[2].strip()
    return None


def start_triton(name: str, http_port: int, grpc_port: int, metrics_port: int, workdir: Path, log_dir: Path,
                 netns: str | None = None) -> Started:
    python = venv_python("triton")
    argv = [*_prefix(netns), str(python), str(Path(__file__).with_name("triton_server.py")),
            "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
            "--workdir", str(workdir)]
    return Started(spawn(name, argv, log_dir, TRITON_READY, optional=True),
                   {"product": "triton", "pytriton": _venv_version(python, "nvidia-pytriton"),
                    "metrics_port": metrics_port})


def start_tensorboard(name: str, port: int, logdir: Path, log_dir: Path, netns: str | None = None) -> Started:
    argv = [*_prefix(netns), *module_argv("netaudit.lab.tensorboard_server", "--logdir", str(logdir),
                                          "--port", str(port))]
    return Started(spawn(name, argv, log_dir),
                   {"product": "tensorboard", "version": metadata.version("tensorboard"),
                    "logdir": str(logdir.resolve()), "runs": sorted(tensorboard_server.RUNS)})


def _venv_version(python: Path, package: str) -> str:
    """A package's version inside a peer venv, read from its dist-info without starting the interpreter."""
    site = next(python.parent.parent.glob("lib/python*/site-packages"))
    found = metadata.distributions(path=[str(site)], name=package)
    return next(iter(found)).version
