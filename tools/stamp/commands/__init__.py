"""One module per `stamp` subcommand: `stamp X` lives in `commands/X.py`."""
