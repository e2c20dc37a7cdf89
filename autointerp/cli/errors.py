"""How the CLI reports an error: bad input (a UserError) is one line and exit 1; anything else is a bug and
keeps its traceback, so it gets reported rather than mistaken for the user's fault."""

from __future__ import annotations

from typing import Any

import click

from activations.errors import UserError
from llm_client import SpecError
from llm_client.local_models import ModelLoadError

# llm_client sits beside activations at the bottom and cannot import UserError: its two bad-input errors (an
# unusable LLM spec or base URL, a model that cannot be found or loaded) are taken as user errors here.
USER_ERRORS: tuple[type[Exception], ...] = (UserError, SpecError, ModelLoadError)


class Command(click.Command):
    """Every autointerp command: a user error becomes click's one-line `Error: ...` and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            raise click.ClickException(str(exc)) from None
