"""Kubernetes: read a cluster snapshot (kubectl or API JSON/YAML) and say what its NetworkPolicies allow.

Offline on purpose: a snapshot is a file, so what netaudit concludes about a cluster can be reviewed,
replayed and tested without credentials or a live API server.
"""
