"""Errors the CLI turns into exit codes and one-line messages instead of tracebacks."""


class UsageError(Exception):
    """Bad usage or bad input: exit code 2, and nothing has been sent."""

    exit_code = 2


class OutputError(Exception):
    """The output could not be written after the work was done (disk full, device error): nothing is
    recorded, and the message says where the result was kept."""

    exit_code = 5
