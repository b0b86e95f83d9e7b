"""The built-in lab: real TF servers, decoys that must never be mistaken for them, and their lifecycle."""
