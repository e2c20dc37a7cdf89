"""The HTTP API and web viewer of `autointerp serve`: `create_app(db_url)` builds the FastAPI application.

`create_app` is imported on first use, so a command that needs only a light submodule (the embedder) does not
start FastAPI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autointerp.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from autointerp.api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
