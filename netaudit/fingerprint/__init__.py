"""Stage 3: the probe runner that asks each family's probes what answers on an open port."""
