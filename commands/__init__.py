"""One module per command group of the `mvfx` command line (cli.py is the entry point)."""
