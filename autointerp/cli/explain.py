"""`autointerp explain`."""

COMMANDS: list = []
