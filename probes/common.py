"""What the ModelServer gRPC and REST probes share: model names to try and how a model is described."""

from __future__ import annotations

import secrets

from netaudit.transport import protowire

# Default and documented model names, most common first: TF Serving's docs and examples (docs/wire-facts.md §2.6).
BUILTIN_MODEL_NAMES = ("half_plus_two", "model", "default", "saved_model_half_plus_three",
                       "saved_model_half_plus_two_cpu", "resnet", "mnist", "my_model")

# A name no server serves, so its NOT_FOUND message (which echoes it) proves the server read the request;
# the nmap probe export embeds one in its probes and its match lines.
RANDOM_MODEL_PREFIX = "netaudit-probe-"


def random_model_name() -> str:
    return f"{RANDOM_MODEL_PREFIX}{secrets.token_hex(6)}"


# tensorflow/core/framework/types.proto DataType values (tests check them against TensorFlow's enum).
DTYPES = {1: "DT_FLOAT", 2: "DT_DOUBLE", 3: "DT_INT32", 4: "DT_UINT8", 5: "DT_INT16", 6: "DT_INT8",
          7: "DT_STRING", 8: "DT_COMPLEX64", 9: "DT_INT64", 10: "DT_BOOL", 14: "DT_BFLOAT16", 17: "DT_UINT16",
          18: "DT_COMPLEX128", 19: "DT_HALF", 20: "DT_RESOURCE", 21: "DT_VARIANT", 22: "DT_UINT32", 23: "DT_UINT64"}

# tensorflow_serving/apis/get_model_status.proto ModelVersionStatus.State.
MODEL_STATES = {0: "UNKNOWN", 10: "START", 20: "LOADING", 30: "AVAILABLE", 40: "UNLOADING", 50: "END"}

# tensorflow/core/protobuf/error_codes.proto (the same numbers as gRPC status codes).
# SavedModel bookkeeping signatures that are not an inference API.
INTERNAL_SIGNATURES = ("__saved_model_init_op",)


def tensor(dtype: str, dims: list[int] | None, name: str) -> dict:
    return {"dtype": dtype, "shape": dims, "tensor_name": name}


# The standard gRPC health and reflection services, which any family's server may register.
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
REFLECTION = ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
              "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
# ServerReflectionRequest.list_services = 7 (reflection.proto).
LIST_SERVICES = protowire.field(7, "")

# Bounds of what the inference-protocol families keep of a server's answers.
MAX_MODELS = 64
MAX_TEXT = 128


def bounded(value: object, limit: int = MAX_TEXT) -> str:
    """A server-sent string, cut to `limit` and stripped of control characters (it ends up on terminals)."""
    text = value if isinstance(value, str) else ""
    return "".join(ch for ch in text[:limit] if ch.isprintable())
