"""Stage 3: the probe runner that asks each family's probes what answers on an open port, and the loader
of the family modules the registry declares."""
