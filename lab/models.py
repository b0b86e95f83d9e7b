"""Real SavedModels for the lab ModelServer, written with TensorFlow: `python -m netaudit.lab.models --out DIR`.

- half_plus_two, versions 1 and 2: y = 0.5 * x + 2 (the model TF Serving's own docs use,
  https://github.com/tensorflow/serving/blob/9d981c5c2708d23c5407c7c1e30309e6f9798874/tensorflow_serving/g3doc/docker.md);
- a scoring model whose name no wordlist would guess, so only a leak (the metrics) can reveal it.
Prints the model_config_file text (ModelServerConfig) the server should load, then READY.
"""

from __future__ import annotations

import argparse
import secrets
from pathlib import Path


def write_models(out: Path, secret_name: str, extra: int = 0) -> str:
    import tensorflow as tf

    class HalfPlusTwo(tf.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = tf.Variable(0.5), tf.Variable(2.0)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return {"y": self.a * x + self.b}

    class Scorer(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable([[0.2], [-0.1], [0.7]])

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="features")])
        def serve(self, features):
            return {"score": tf.sigmoid(tf.matmul(features, self.w))}

    models: list[tuple[str, list[int], str]] = [("half_plus_two", [1, 2], "all {}"), (secret_name, [1], "")]
    models += [(f"bulk_model_{i:03d}", [1], "") for i in range(extra)]
    for name, versions, _ in models:
        for version in versions:
            module = HalfPlusTwo() if name != secret_name else Scorer()
            tf.saved_model.save(module, str(out / name / str(version)), signatures={"serving_default": module.serve})
    configs = []
    for name, _, policy in models:
        policy_text = f" model_version_policy {{ {policy} }}" if policy else ""
        configs.append(f'  config {{ name: "{name}" base_path: "{out / name}" model_platform: "tensorflow"{policy_text} }}')
    return "model_config_list {\n" + "\n".join(configs) + "\n}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--secret-name", default=f"churn_scorer_{secrets.token_hex(4)}")
    parser.add_argument("--extra", type=int, default=0, help="also write N more small models (benchmarks)")
    args = parser.parse_args()
    config = write_models(args.out, args.secret_name, args.extra)
    (args.out / "models.config").write_text(config)
    print(f"READY {args.out / 'models.config'}", flush=True)


if __name__ == "__main__":
    main()
