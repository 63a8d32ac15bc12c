"""MLflow's error body (``{"error_code", "message"}``) for everything under the MLflow routes.

keel's native routes answer ``{"error": {...}}``; MLflow clients read ``error_code``
to decide what happened (``RESOURCE_DOES_NOT_EXIST`` makes ``set_experiment``
create the experiment, ``RESOURCE_ALREADY_EXISTS`` makes ``register_model`` add a
version ...), so the MLflow routers use :class:`MlflowRoute`, which translates every
exception raised while serving a request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from keel import exceptions as exc

__all__ = ["MlflowError", "MlflowRoute", "error_response", "translate"]

_log = logging.getLogger("keel.server.mlflow")

#: MLflow's HTTP status for each error code it defines (mlflow.exceptions), except
#: INVALID_STATE: MLflow sends it with 500, which its client retries for minutes; a
#: state conflict is not transient, so keel answers 409.
STATUS = {
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "RESOURCE_ALREADY_EXISTS": 400,
    "INVALID_PARAMETER_VALUE": 400,
    "BAD_REQUEST": 400,
    "INVALID_STATE": 409,
    "PERMISSION_DENIED": 403,
    "DATA_LOSS": 500,
    "TEMPORARILY_UNAVAILABLE": 503,
    "INTERNAL_ERROR": 500,
}

#: keel's error classes, most specific first, and the MLflow code each becomes.
_CODES: list[tuple[type[exc.KeelError], str]] = [
    (exc.NotFoundError, "RESOURCE_DOES_NOT_EXIST"),
    (exc.AlreadyExistsError, "RESOURCE_ALREADY_EXISTS"),
    (exc.InvalidSpecError, "INVALID_PARAMETER_VALUE"),
    (exc.InvalidStateError, "INVALID_STATE"),
    (exc.PermissionDeniedError, "PERMISSION_DENIED"),
    (exc.IntegrityError, "DATA_LOSS"),
    (exc.BackendUnavailableError, "TEMPORARILY_UNAVAILABLE"),
    (exc.KeelError, "INTERNAL_ERROR"),
]


class MlflowError(Exception):
    """An error raised by the MLflow layer itself, with its MLflow error code."""

    def __init__(
        self, message: str, code: str = "INVALID_PARAMETER_VALUE", status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


def error_response(code: str, message: str, status: int | None = None) -> JSONResponse:
    """MLflow's error body, by default with the HTTP status MLflow uses for ``code``."""
    body = {"error_code": code, "message": message}
    return JSONResponse(body, status_code=status or STATUS[code])


def translate(error: Exception) -> JSONResponse:
    """The MLflow error response for any exception raised while serving a request."""
    if isinstance(error, MlflowError):
        return error_response(error.code, error.message, error.status)
    if isinstance(error, exc.KeelError):
        code = next(c for cls, c in _CODES if isinstance(error, cls))
        return error_response(code, error.message)
    if isinstance(error, RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in error.errors()
        )
        return error_response("INVALID_PARAMETER_VALUE", problems or "invalid request")
    if isinstance(error, StarletteHTTPException):  # e.g. 413 from the body-size limit
        code = "ENDPOINT_NOT_FOUND" if error.status_code == 404 else "BAD_REQUEST"
        return error_response(code, str(error.detail), error.status_code)
    _log.exception("unexpected error in an MLflow route", exc_info=error)
    return error_response("INTERNAL_ERROR", f"{type(error).__name__}: {error}")


class MlflowRoute(APIRoute):
    """A route whose failures answer with MLflow's error body instead of keel's."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as error:
                return translate(error)

        return route_handler
