"""`autointerp serve`: the HTTP API and web viewer."""

from __future__ import annotations

import click

from autointerp.cli import summary
from autointerp.cli.errors import Command
from autointerp.cli.options import db_option


@click.command("serve", cls=Command, short_help=summary("serve"))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind. The default is reachable from this machine only; "
                   "0.0.0.0 exposes it to the network.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="TCP port.")
@db_option
def serve(host: str, port: int, db_url: str) -> None:
    """Serve the web viewer at / and the HTTP API at /api (OpenAPI docs at /docs).

    Read-only unless AUTOINTERP_API_TOKEN is set; then job submission (POST /api/jobs) requires the header
    'Authorization: Bearer <token>'.

    \b
    Examples:
      autointerp serve --db autointerp.db
      AUTOINTERP_API_TOKEN=$(openssl rand -hex 16) autointerp serve --port 8080
    """
    import uvicorn

    from autointerp.api import create_app

    app = create_app(db_url)
    mode = "job submission enabled (token required)" if app.state.api_token else "read-only"
    click.echo(f"autointerp: serving {app.state.db.url} at http://{host}:{port}/ ({mode})", err=True)
    uvicorn.run(app, host=host, port=port, log_level="info")


COMMANDS = [serve]
