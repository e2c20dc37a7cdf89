"""`autointerp collect`."""

COMMANDS: list = []
