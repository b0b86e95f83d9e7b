"""Stage 4: rules that turn typed endpoint facts into findings, and their scores."""
