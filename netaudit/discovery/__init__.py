"""Stage 2: which ports answer, and how (connect, raw SYN, nmap), with every pair's state."""
