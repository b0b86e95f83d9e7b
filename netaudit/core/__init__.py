"""The foundation every stage stands on: the data model and its tables, the family registry (declarations
only: core loads no code above it), the caps on what a server sends and the endpoint shrinker, exit codes
and errors, terminal safety and reading the user's files."""
