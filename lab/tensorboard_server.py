"""A real TensorBoard for the lab, on a log directory this module writes: a few scalar events per run.

The events are written with TensorBoard's own writer (no TensorFlow import), then TensorBoard's Werkzeug
server is started in-process and READY is printed once it accepts connections. TensorBoard has no
authentication; the scanner proves that by reading /data/environment, /data/runs and /data/plugins_listing.

    python -m netaudit.lab.tensorboard_server --logdir DIR --port 6006 [--host 0.0.0.0]
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from pathlib import Path

# Runs the lab writes, and the scalar tags each holds: what a probe must list.
RUNS: dict[str, tuple[str, ...]] = {"run_alpha": ("loss", "accuracy"), "run_beta": ("loss",)}
STEPS = 5


def write_logdir(logdir: Path) -> None:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    for run, tags in RUNS.items():
        writer = EventFileWriter(str(logdir / run))
        for step in range(STEPS):
            for tag in tags:
                value = 1.0 / (step + 1) if tag == "loss" else step / STEPS
                summary = Summary(value=[Summary.Value(tag=tag, simple_value=value)])
                writer.add_event(Event(wall_time=time.time(), step=step, summary=summary))
        writer.close()


def runs_listed(port: int) -> list[str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=2) as reply:
            return json.loads(reply.read())
    except (OSError, ValueError):
        return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logdir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="0.0.0.0")
    args = parser.parse_args()
    write_logdir(args.logdir.resolve())

    from tensorboard import program

    board = program.TensorBoard()
    board.configure(argv=[None, "--logdir", str(args.logdir.resolve()), "--host", args.host,
                          "--port", str(args.port), "--reload_interval", "1"])
    board.launch()
    # TensorBoard reads the log directory in a background thread: ready once every run is listed.
    while not set(RUNS) <= set(runs_listed(args.port)):
        time.sleep(0.2)
    print("READY", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
