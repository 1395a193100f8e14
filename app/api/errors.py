"""Service errors and an unreachable database -> JSON errors with one clear `detail`."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from app.services.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    RateLimited,
    ServiceError,
    TooLarge,
    Unavailable,
)
from app.storage.artifacts import CorruptArtifact

STATUS = {NotFound: 404, Conflict: 409, InvalidInput: 422, TooLarge: 413, RateLimited: 429, Unavailable: 503}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(_request: Request, error: ServiceError) -> JSONResponse:
        headers = {"Retry-After": str(error.retry_after)} if isinstance(error, RateLimited) else None
        return JSONResponse({"detail": error.message}, status_code=STATUS.get(type(error), 400), headers=headers)

    @app.exception_handler(CorruptArtifact)
    async def corrupt(_request: Request, error: CorruptArtifact) -> JSONResponse:
        # The service's fault, not the caller's: said plainly, and the artifact is not used.
        return JSONResponse({"detail": f"corrupt artifact: {error}"}, status_code=500)

    @app.exception_handler(OperationalError)
    async def database_down(_request: Request, _error: OperationalError) -> JSONResponse:
        return JSONResponse(
            {"detail": "the database is unreachable; try again shortly"},
            status_code=503,
            headers={"Retry-After": "5"},
        )
