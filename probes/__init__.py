"""Protocol probes: one module per protocol family, each declaring what it sends as data at the top."""
