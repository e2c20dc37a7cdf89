"""`autointerp importing`."""

COMMANDS: list = []
