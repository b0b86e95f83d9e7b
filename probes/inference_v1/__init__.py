"""The KServe V1 REST (TF Serving's REST layout) family: its declaration (family.toml) and its probes."""
