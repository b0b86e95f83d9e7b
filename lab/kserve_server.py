"""A real KServe ModelServer for the lab: REST (V1 and V2 on one port) and V2 gRPC, serving models the lab
defines here, so no framework (TF, sklearn) has to be loaded.

`half_plus_two` is ready; `churn_scorer` is registered but its health check fails (as when a model's
backend is down), so it answers "not ready".
Neither predict method is ever reached by netaudit (probes only read); they exist so the models are real.

KServe's model_server module parses sys.argv when imported (measured; docs/families.md, "Installing them
together"), so this launcher takes its own arguments first and hands KServe only the ones it knows.

    python -m netaudit.lab.kserve_server --http-port 8080 --grpc-port 8081
"""

from __future__ import annotations

import argparse
import sys

from netaudit.lab.processes import announce_when_listening

# What the lab serves, and what a probe must find: name -> (healthy, inputs, outputs).
MODELS: dict[str, tuple[bool, list[dict], list[dict]]] = {
    "half_plus_two": (True, [{"name": "x", "datatype": "FP32", "shape": [-1]}],
                      [{"name": "y", "datatype": "FP32", "shape": [-1]}]),
    "churn_scorer": (False, [{"name": "features", "datatype": "FP32", "shape": [-1, 3]}],
                     [{"name": "score", "datatype": "FP32", "shape": [-1, 1]}]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    args = parser.parse_args()
    sys.argv = [sys.argv[0], f"--http_port={args.http_port}", f"--grpc_port={args.grpc_port}",
                "--enable_latency_logging=false"]

    from kserve import Model, ModelServer

    class LabModel(Model):
        def __init__(self, name: str, healthy: bool, inputs: list[dict], outputs: list[dict]):
            super().__init__(name)
            self.is_healthy, self.inputs, self.outputs = healthy, inputs, outputs

        async def healthy(self) -> bool:
            return self.is_healthy

        def get_input_types(self) -> list[dict]:
            return self.inputs

        def get_output_types(self) -> list[dict]:
            return self.outputs

        def predict(self, payload, headers=None):
            return {"predictions": [0.5 * x + 2 for x in payload["instances"]]}

    models = [LabModel(name, *spec) for name, spec in MODELS.items()]
    for model in models:
        model.load()  # registered only when loaded; readiness then comes from healthy()
    announce_when_listening(args.http_port, args.grpc_port)
    ModelServer().start(models)


if __name__ == "__main__":
    main()
