"""The `autointerp` command line: one click group; each command lives in its own module, imported only when
that command runs or shows its help, so start-up pays for no library the command does not use. Command modules
import heavy libraries (torch, transformers, ray, faiss, fastapi, scipy, pyarrow) inside their functions."""

from __future__ import annotations

import importlib

import click

# command name -> (the module of autointerp.cli that defines it in its COMMANDS list, the line `--help` lists it
# with). The lines live here, not only in the modules, so listing the commands imports none of them.
COMMANDS: dict[str, tuple[str, str]] = {
    "collect": ("collect", "Collect activation records of a layer's neurons or an SAE."),
    "compare": ("explain", "Compare two explainers, or score methods, feature by feature."),
    "demo": ("demo", "Run the whole loop offline on the embedded defaults."),
    "embed": ("embed", "Precompute explanation embeddings for semantic search."),
    "explain": ("explain", "Explain, simulate and score a layer's features, resumably."),
    "export": ("export", "Write features, records, explanations and scores to a file."),
    "import": ("importing", "Import OpenAI or Neuronpedia records, explanations and scores, or a delphi cache."),
    "query": ("query", "List features, best-explained first, with filters."),
    "rescore": ("explain", "Score existing explanations with another simulator or scorer."),
    "runs": ("runs", "List past runs: status, counts, requests, tokens and cost."),
    "serve": ("serve", "Serve the web viewer and the HTTP API."),
    "simulate": ("simulate", "Simulate explanations on a records file and print JSON."),
    "steer": ("steer", "Steer features to a target KL and store steered and unsteered continuations."),
}


def summary(name: str) -> str:
    """The one line a command is listed with (its click short_help)."""
    return COMMANDS[name][1]


class LazyGroup(click.Group):
    """A group whose commands are imported by name when one is run or asked for its help."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(f"autointerp.cli.{COMMANDS[cmd_name][0]}")
        return next(command for command in module.COMMANDS if command.name == cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, summary(name)) for name in self.list_commands(ctx)])


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
