"""The TensorFlow Serving ModelServer (gRPC and REST) family: its declaration (family.toml) and its probes."""
