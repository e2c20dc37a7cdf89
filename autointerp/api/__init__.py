"""The HTTP API and web viewer of `autointerp serve`: `create_app(db_url)` builds the FastAPI application."""

from autointerp.api.app import create_app

__all__ = ["create_app"]
