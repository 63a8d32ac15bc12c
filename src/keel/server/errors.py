"""One error body for every failure: ``{"error": {"code", "message", "details"}}``.

Domain errors map to HTTP statuses in one table; nothing else leaks a stack trace.
"""

from __future__ import annotations

from typing import Any

from keel import exceptions as exc

__all__ = ["STATUS", "error_body", "status_for"]

#: Most specific first: the first matching class decides the status and code.
STATUS: list[tuple[type[exc.KeelError], int, str]] = [
    (exc.NotFoundError, 404, "not_found"),
    (exc.AlreadyExistsError, 409, "already_exists"),
    (exc.ParamConflictError, 409, "param_conflict"),
    (exc.InvalidSpecError, 400, "invalid_input"),
    (exc.InvalidStateError, 409, "invalid_state"),
    (exc.PermissionDeniedError, 403, "permission_denied"),
    (exc.AuthenticationError, 401, "unauthenticated"),
    (exc.IntegrityError, 422, "integrity_error"),
    (exc.BackendUnavailableError, 503, "backend_unavailable"),
    (exc.ConfigError, 500, "config_error"),
    (exc.KeelError, 500, "error"),
]


def status_for(error: exc.KeelError) -> tuple[int, str]:
    """HTTP status and error code for a domain error."""
    for cls, status, code in STATUS:
        if isinstance(error, cls):
            return status, code
    return 500, "error"  # pragma: no cover - KeelError is the last entry


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | bool) or value is None:
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    return str(value)


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON error body."""
    return {
        "error": {
            "code": code,
            "message": message,
            "details": {k: _jsonable(v) for k, v in (details or {}).items()},
        }
    }
