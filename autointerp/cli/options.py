"""Options and error handling shared by every command."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from autointerp.settings import get_settings


def _db_url(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str:
    # Every command gets a URL: --db, else the settings' database (AUTOINTERP_DB or ./autointerp.db).
    return value or get_settings().database_url


db_option = click.option(
    "--db",
    "db_url",
    default=None,
    metavar="URL",
    callback=_db_url,
    help="Database URL or SQLite file path (default: $AUTOINTERP_DB or ./autointerp.db).",
)


def user_errors(*error_types: type[BaseException]) -> Callable:
    """Turn the given exceptions into a clean one-line error and exit code 2, no traceback."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except error_types as exc:
                raise click.ClickException(str(exc)) from None

        return inner

    return wrap
