"""The TLS in front of any server family: its declaration (family.toml) and its probes."""
