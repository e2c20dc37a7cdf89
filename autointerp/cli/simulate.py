"""`autointerp simulate`."""

COMMANDS: list = []
