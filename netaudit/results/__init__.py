"""Stage 6: results as streams, loading them back, their history store, the diff against a baseline and
the accept list."""
