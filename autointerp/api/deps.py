"""Request-scoped access to the app's database and embedder, as annotated dependencies for route signatures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy.orm import Session

from autointerp.api.embedder import SentenceEmbedder

# Database row ids in URLs; the bound keeps PostgreSQL from rejecting an out-of-range integer with a 500.
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.db.session() as session:
        yield session


def get_embedder(request: Request) -> SentenceEmbedder:
    return request.app.state.embedder


SessionDep = Annotated[Session, Depends(get_session)]
EmbedderDep = Annotated[SentenceEmbedder, Depends(get_embedder)]
