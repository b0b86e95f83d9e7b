"""Stage 7: every format a result is written in (formats.py is their one table), and where it is written."""
