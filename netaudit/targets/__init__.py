"""Stage 1: what to scan, from arguments, files and other scanners' output, within the scope."""
