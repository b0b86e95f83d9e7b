"""The Open Inference Protocol (V2): KServe, MLServer, Triton family: its declaration (family.toml) and its probes."""
