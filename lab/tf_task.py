"""One real TensorFlow task, run as its own process by the lab: `python -m netaudit.lab.tf_task …`."""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cluster", required=True, help="ClusterSpec JSON: {job: [host:port, …]}")
    parser.add_argument("--job", required=True)
    parser.add_argument("--task", type=int, required=True)
    parser.add_argument("--mode", choices=["server", "mwms"], default="server",
                        help="server: a plain tf.distribute.Server; mwms: a MultiWorkerMirroredStrategy worker "
                             "(worker 0 then runs the coordination service)")
    args = parser.parse_args()
    cluster = json.loads(args.cluster)
    if args.mode == "mwms":
        os.environ["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": args.job, "index": args.task}})
    import tensorflow as tf

    if args.mode == "mwms":
        keep = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        keep = tf.distribute.Server(tf.train.ClusterSpec(cluster), job_name=args.job, task_index=args.task,
                                    start=True)
    print(f"READY {args.job}:{args.task} {type(keep).__name__}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
