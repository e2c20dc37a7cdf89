"""Every error is JSON `{"error": "<what is wrong and what to do>", ...}`; validation errors name the parameter."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from storage.reads.queries import QueryError


def _describe(error: dict) -> dict:
    loc = [str(part) for part in error.get("loc", ())]
    where = loc[0] if loc else "request"
    parameter = ".".join(loc[1:]) or where
    item = {"parameter": parameter, "in": where, "message": error.get("msg", "invalid value")}
    if "input" in error and isinstance(error["input"], (str, int, float, bool)):
        given = str(error["input"])
        item["given"] = given if len(given) <= 80 else given[:80] + "..."
    return item


async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
    items = [_describe(e) for e in exc.errors()]
    summary = "; ".join(f"{i['parameter']}: {i['message']}" for i in items)
    return JSONResponse({"error": f"invalid request: {summary}", "errors": items}, status_code=422)


async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


async def _query(_request: Request, exc: QueryError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=400)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(QueryError, _query)  # type: ignore[arg-type]
