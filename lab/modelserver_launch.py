"""Start a ModelServer for the lab: the real tensorflow_model_server when it is on PATH, else the stand-in.

Both get the same flags; only the stand-in keeps an audit log.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from netaudit.lab.processes import LabProcess, module_argv, spawn, wait_ready

# The real binary logs this once REST is up (SRV server.cc); the stand-in prints READY.
BINARY_READY = "Exporting HTTP/REST API"
PROMETHEUS = 'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n'


@dataclass
class ModelServerSpec:
    grpc_port: int
    rest_port: int
    model_config_file: Path
    monitoring: bool = False
    ssl_config_file: Path | None = None
    audit_log: Path | None = None
    cors: bool = False
    release: str | None = None  # stand-in only: the TF Serving release whose method set it registers
    healthcheck: bool = False  # --enable_grpc_healthcheck_service (TF Serving 2.15.1+)


def write_lab_models(out: Path, processes: list[LabProcess], log_dir: Path, deadline: float,
                     extra: int = 0) -> tuple[Path, str]:
    """Write the lab's SavedModels with TensorFlow in a child process; returns (config file, secret name)."""
    writer = spawn("models-writer", module_argv("netaudit.lab.models", "--out", str(out), "--extra", str(extra)),
                   log_dir)
    processes.append(writer)
    wait_ready([writer], deadline)
    processes.remove(writer)
    Path(writer.log).unlink()
    config = out / "models.config"
    secret = next(line.split('"')[1] for line in config.read_text().splitlines() if "churn_scorer_" in line)
    return config, secret


def write_ssl_config(path: Path, server: tuple[Path, Path], ca: Path, client_verify: bool) -> Path:
    """A text SSLConfig (SRV config/ssl_config.proto: server_key, server_cert, custom_ca, client_verify)."""
    cert, key = server
    path.write_text(f"server_key: {json.dumps(key.read_text())}\nserver_cert: {json.dumps(cert.read_text())}\n"
                    f"custom_ca: {json.dumps(ca.read_text())}\nclient_verify: {str(client_verify).lower()}\n")
    return path


def start_modelserver(name: str, spec: ModelServerSpec, log_dir: Path,
                      netns: str | None = None) -> tuple[LabProcess, str | None]:
    """Start the server (inside `netns` when given); returns the process and the real binary's path, if used."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    flags = [f"--port={spec.grpc_port}", f"--rest_api_port={spec.rest_port}",
             f"--model_config_file={spec.model_config_file}"]
    if spec.monitoring:
        monitoring = log_dir / f"{name}-monitoring.config"
        monitoring.write_text(PROMETHEUS)
        flags.append(f"--monitoring_config_file={monitoring}")
    if spec.ssl_config_file:
        flags.append(f"--ssl_config_file={spec.ssl_config_file}")
    if spec.cors:
        flags.append("--rest_api_enable_cors_support=true")
    if spec.healthcheck:
        flags.append("--enable_grpc_healthcheck_service=true")
    binary = shutil.which("tensorflow_model_server")
    if binary:
        return spawn(name, [*prefix, binary, *flags], log_dir, BINARY_READY), binary
    if spec.audit_log:
        flags.append(f"--audit_log={spec.audit_log}")
    if spec.release:
        flags.append(f"--emulate_release={spec.release}")
    return spawn(name, [*prefix, *module_argv("netaudit.lab.modelserver", *flags)], log_dir), None
