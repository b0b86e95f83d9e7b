"""The tf.distribute.Server (TF distributed runtime, gRPC) family: its declaration (family.toml) and its probes."""
