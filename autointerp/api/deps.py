"""Request-scoped access to the app's database and embedder."""

from __future__ import annotations

from typing import Iterator

from fastapi import Request
from sqlalchemy.orm import Session

from autointerp.api.embedder import SentenceEmbedder
from storage.db import Database


def get_db(request: Request) -> Database:
    return request.app.state.db


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.db.session() as session:
        yield session


def get_embedder(request: Request) -> SentenceEmbedder:
    return request.app.state.embedder
