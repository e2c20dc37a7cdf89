"""Why a database cannot be opened, in one line: the URL (password masked), what is wrong, what to do."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from activations.errors import UserError

_WHERE = "--db or $AUTOINTERP_DB"


class DatabaseUnavailable(UserError):
    """The database URL names nothing this process can open; the message says which and what to do."""


def masked(url: str) -> str:
    """The URL as it may be shown: any password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def unknown_url(url: str, exc: ArgumentError) -> DatabaseUnavailable:
    return DatabaseUnavailable(f"database URL {masked(url)} is not one autointerp can open ({exc}); give a SQLite "
                               f"file path, sqlite:///PATH or postgresql://USER@HOST:PORT/DB ({_WHERE})")


def cannot_connect(url: str, exc: DBAPIError) -> DatabaseUnavailable:
    reason, fix = (_sqlite_reason(url, exc) if url.startswith("sqlite") else _server_reason(exc))
    return DatabaseUnavailable(f"cannot open database {masked(url)}: {reason}; {fix}")


def _driver_message(exc: DBAPIError) -> str:
    # The driver's own words, without SQLAlchemy's wrapping: the first line (psycopg adds a hint on the next).
    return " ".join(str(exc.orig).strip().split("\n")[0].split())


def _sqlite_reason(url: str, exc: DBAPIError) -> tuple[str, str]:
    path = Path(make_url(url).database or "")
    if not path.parent.is_dir():
        return f"folder {path.parent} does not exist", f"create it, or point {_WHERE} at a file in an existing folder"
    if path.is_dir():
        return f"{path} is a folder", f"point {_WHERE} at a database file, e.g. {path / 'autointerp.db'}"
    return _driver_message(exc), f"check that {path} is a SQLite file you may write ({_WHERE})"


def _server_reason(exc: DBAPIError) -> tuple[str, str]:
    reason = _driver_message(exc)
    # psycopg: "connection failed: connection to server at "h", port p failed: FATAL: database "x" does not exist"
    reason = re.sub(r"^.*failed: (FATAL: )?", "", reason) or reason
    missing = re.search(r'database "([^"]+)" does not exist', reason)
    if missing:
        return reason, f"create it (createdb {missing.group(1)}) or name an existing database ({_WHERE})"
    if "refused" in reason.lower():
        return reason, f"start the server, or correct the host and port ({_WHERE})"
    return reason, f"check the server, the user and the database name ({_WHERE})"
