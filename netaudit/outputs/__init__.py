"""Stage 7: every format a result is written in, and where it is written."""
