"""`python -m autointerp` runs the CLI."""

from autointerp.cli import main

main()
