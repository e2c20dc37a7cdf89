"""The --db option every command shares."""

from __future__ import annotations

import click


def _db_url(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str:
    from autointerp.settings import get_settings

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
