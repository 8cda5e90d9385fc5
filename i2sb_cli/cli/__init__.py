"""The command line: `app` builds the Typer app from one small module per command; option types
shared between commands live in `common`. Only strings to objects and results to text."""
