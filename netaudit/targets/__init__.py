"""Stage 1: what to scan, from arguments, files and other scanners' output (with the one nmap XML reader),
within the scope."""
