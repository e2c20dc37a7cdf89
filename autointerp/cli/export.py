"""`autointerp export`."""

COMMANDS: list = []
