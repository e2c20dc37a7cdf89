"""`autointerp serve`."""

COMMANDS: list = []
