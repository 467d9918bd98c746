"""The command line: the Typer app (parse, build services, call one function) and its rendering."""
