"""The Protocols (gRPC, HTTP, TLS, banners) that no TF family claims family: its declaration (family.toml) and its probes."""
