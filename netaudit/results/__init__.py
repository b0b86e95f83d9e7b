"""Stage 6: results as streams, their history, and the diff against a baseline."""
