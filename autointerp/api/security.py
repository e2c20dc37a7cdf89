"""Safety by default: security headers on every response, and the bearer-token gate of write endpoints."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request
from pydantic import SecretStr
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

TOKEN_ENV = "AUTOINTERP_API_TOKEN"

# No inline scripts or styles, nothing from other origins: token text from corpora can never run.
STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
# Swagger UI sets inline styles on its own elements; its scripts still come only from this server.
DOCS_CSP = STRICT_CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
DOCS_PATHS = ("/docs", "/_swagger/")


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        docs = request.url.path == "/docs" or request.url.path.startswith(DOCS_PATHS[1])
        response.headers["Content-Security-Policy"] = DOCS_CSP if docs else STRICT_CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response


def require_write_token(request: Request) -> None:
    """Dependency of write endpoints: 403 when the server is read-only, 401 without the right bearer token."""
    token: SecretStr | None = request.app.state.api_token
    if token is None:
        raise HTTPException(
            403,
            f"this server is read-only: write endpoints are enabled only when {TOKEN_ENV} is set in the "
            f"environment of `autointerp serve`; then send 'Authorization: Bearer <token>'",
        )
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # Constant-time comparison: response timing must not reveal how much of a guess was right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode()):
        raise HTTPException(
            401, "missing or wrong API token: send 'Authorization: Bearer <token>' with the value of "
            f"{TOKEN_ENV}", headers={"WWW-Authenticate": "Bearer"},
        )
