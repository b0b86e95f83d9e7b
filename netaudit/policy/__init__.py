"""Stage 5: segments, reachability verdicts, and merging scans from several vantages."""
