"""The `autointerp` command line: one click group; each command lives in its own module."""

from __future__ import annotations

import click

from autointerp.cli import collect, demo, embed, explain, export, importing, query, runs, serve, simulate
from autointerp.settings import get_settings
from llm_client.local_models import use_cache_dir


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def main() -> None:
    """autointerp: explain, simulate and score every feature of a language model, and query the results.

    \b
    Typical session:
      autointerp collect --model gemma-3-270m --layers 6 --tokens 100000
      autointerp explain --model gemma-3-270m --layer 6 --features 0-99 \\
          --explainer local:gemma-3-270m --simulator embedding
      autointerp query --layer 6 --min-score 0.5
      autointerp serve
    """
    # Local models convert once into the cache dir the settings name; every command may load one.
    use_cache_dir(get_settings().cache_dir)


for module in (collect, explain, simulate, importing, query, export, runs, serve, demo, embed):
    for command in module.COMMANDS:
        main.add_command(command)
