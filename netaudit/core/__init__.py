"""The foundation every stage stands on: the data model, the family registry, limits, errors, terminal safety and reading the user's files."""
