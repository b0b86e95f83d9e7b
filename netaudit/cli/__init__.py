"""The command line: parsing and the commands; it calls the library."""
