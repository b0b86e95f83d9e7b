"""The command line: the grammar (parser.py, one function per subcommand), the commands (main.py) and the
demo; it calls the library."""
