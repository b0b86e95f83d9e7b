"""A real Triton Inference Server for the lab, through PyTriton (which bundles the tritonserver binary and
its Python backend). This file runs inside the Triton venv (lab/peers.py), where netaudit is not installed.

It serves `half_plus_two` on CPU; netaudit never calls its inference (probes only read). READY is printed
once Triton has loaded the model and its HTTP, gRPC and metrics ports accept. PyTriton's workspace and
temporary model files go under --workdir (inside the lab's directory), never ~/.cache or /tmp, and SIGTERM
exits through the `with` block so PyTriton stops tritonserver and cleans up.

    python triton_server.py --http-port 8000 --grpc-port 8001 --metrics-port 8002 --workdir DIR
"""

import argparse
import glob
import pathlib
import signal
import sys
import tempfile
import time

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig


TRITON_TMP = "/tmp/folder*"


@batch
def half_plus_two(x):
    return {"y": x * 0.5 + 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag in ("--http-port", "--grpc-port", "--metrics-port"):
        parser.add_argument(flag, type=int, required=True)
    parser.add_argument("--workdir", type=pathlib.Path, required=True)
    args = parser.parse_args()
    (args.workdir / "tmp").mkdir(parents=True, exist_ok=True)
    tempfile.tempdir = str(args.workdir / "tmp")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    before = set(glob.glob(TRITON_TMP))
    config = TritonConfig(http_port=args.http_port, grpc_port=args.grpc_port, metrics_port=args.metrics_port,
                          http_address="0.0.0.0", grpc_address="0.0.0.0", allow_gpu_metrics=False)
    with Triton(config=config, workspace=args.workdir / "workspace") as triton:
        triton.bind(model_name="half_plus_two", infer_func=half_plus_two,
                    inputs=[Tensor(name="x", dtype=np.float32, shape=(-1,))],
                    outputs=[Tensor(name="y", dtype=np.float32, shape=(-1,))],
                    config=ModelConfig(max_batch_size=8))
        triton.run()
        # Triton's Python backend copies each model into /tmp/folderXXXXXX whatever TMPDIR says, and only a
        # clean unload removes it: name them for `lab down` (lab/base.py LEFTOVERS) in case this is killed.
        made = sorted(set(glob.glob(TRITON_TMP)) - before)
        with open(args.workdir.parent / "leftovers", "a") as out:
            out.writelines(f"{path}\n" for path in made)
        print("READY", flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
