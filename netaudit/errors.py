"""Errors the CLI turns into exit codes and one-line messages instead of tracebacks."""


class UsageError(Exception):
    """Bad usage or bad input: exit code 2, and nothing has been sent."""

    exit_code = 2
