"""`autointerp demo`."""

COMMANDS: list = []
