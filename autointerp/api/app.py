"""The application factory: API routers, the web viewer's static pages, offline OpenAPI docs, safety headers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from autointerp.api import features, jobs, layers, runs
from autointerp.api.embedder import SentenceEmbedder
from autointerp.api.errors import install_error_handlers
from autointerp.api.security import SecurityHeaders
from autointerp.settings import get_settings
from llm_client.local_models import use_cache_dir
from storage.core.db import Database
from storage.search.embedding_index import index_root

WEB = Path(__file__).resolve().parent.parent / "web"


def _swagger_assets() -> Path:
    # Only the Swagger UI 5 files that fastapi-offline ships; its page template uses an inline script.
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def create_app(db_url: str | None = None, *, embedder: SentenceEmbedder | None = None) -> FastAPI:
    """The service on the database at `db_url` (default: the settings' database, $AUTOINTERP_DB or
    ./autointerp.db). The environment is read once, here: write endpoints are enabled only when
    $AUTOINTERP_API_TOKEN is set, and jobs call the endpoint in $OPENAI_BASE_URL."""
    settings = get_settings()
    use_cache_dir(settings.cache_dir)  # jobs may load local models
    app = FastAPI(
        title="autointerp",
        summary="Features of language models, their explanations, simulations and scores.",
        docs_url=None,  # served below from local files: the default page loads its scripts from a CDN
        redoc_url=None,
    )
    app.state.db = Database(db_url or settings.database_url)
    app.state.embedder = embedder or SentenceEmbedder(local_files_only=settings.offline)
    app.state.index_root = index_root(app.state.db.url, settings.cache_dir)  # semantic search's ANN indexes
    app.state.api_token = settings.api_token
    app.state.jobs = jobs.JobRunner(app.state.db, base_url=settings.openai_base_url)

    app.add_middleware(SecurityHeaders)
    install_error_handlers(app)
    app.include_router(features.router)
    app.include_router(layers.router)
    app.include_router(jobs.router)
    app.include_router(runs.router)

    app.mount("/static", StaticFiles(directory=WEB), name="static")
    app.mount("/_swagger", StaticFiles(directory=_swagger_assets()), name="swagger")
    pages = {"/": "index.html", "/feature": "feature.html", "/layer": "layer.html", "/docs": "docs.html"}
    for route, filename in pages.items():
        app.add_api_route(route, _page(WEB / filename), include_in_schema=False, methods=["GET"])
    return app


def _page(path: Path) -> Callable[[], FileResponse]:
    def serve() -> FileResponse:
        return FileResponse(path, media_type="text/html; charset=utf-8")

    return serve
