"""`autointerp query`."""

COMMANDS: list = []
