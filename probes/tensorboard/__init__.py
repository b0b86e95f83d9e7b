"""The TensorBoard family: its declaration (family.toml) and its probes."""
