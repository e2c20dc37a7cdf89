"""The `autointerp` command line: one click group; each command lives in its own module, imported only when
that command (or the command list of `--help`) is asked for, so start-up pays for no library a command does
not use. Command modules import heavy libraries (torch, transformers, ray, faiss, fastapi) inside functions."""

from __future__ import annotations

import importlib

import click

# command name -> the module of autointerp.cli that defines it (in its COMMANDS list)
COMMAND_MODULES = {
    "collect": "collect", "compare": "explain", "demo": "demo", "embed": "embed", "explain": "explain",
    "export": "export", "import": "importing", "query": "query", "rescore": "explain", "runs": "runs",
    "serve": "serve", "simulate": "simulate",
}


class LazyGroup(click.Group):
    """A group whose commands are imported by name when first looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMAND_MODULES.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"autointerp.cli.{module_name}")
        return next(command for command in module.COMMANDS if command.name == cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
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
    from autointerp.settings import get_settings
    from llm_client.local_models import use_cache_dir

    # Local models convert once into the cache dir the settings name; every command may load one.
    use_cache_dir(get_settings().cache_dir)
