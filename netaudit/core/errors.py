"""The exit codes (README, Exit codes; `netaudit --help` says them too), and the errors the CLI turns into
them with one-line messages instead of tracebacks."""

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INCOMPLETE, EXIT_INTERNAL, EXIT_OUTPUT = 0, 1, 2, 3, 4, 5


class UsageError(Exception):
    """Bad usage or bad input: exit code 2, and nothing has been sent."""

    exit_code = EXIT_USAGE


class OutputError(Exception):
    """The output could not be written after the work was done (disk full, device error): nothing is
    recorded, and the message says where the result was kept."""

    exit_code = EXIT_OUTPUT
