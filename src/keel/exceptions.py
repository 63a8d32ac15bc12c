"""Errors raised by keel.

Every error derives from :class:`KeelError`; subclasses are grouped by what the
caller will do about them, and also subclass the stdlib type a caller would
naturally catch::

    KeelError
    ├── NotFoundError (KeyError)            unknown run, experiment, artifact ...
    ├── AlreadyExistsError                  a name that must be unique is taken
    ├── InvalidSpecError (ValueError)       bad names, keys, values, paths, filters
    │   ├── FilterSyntaxError               search filter that does not parse
    │   └── ParamConflictError              re-logging a param with another value
    ├── InvalidStateError                   e.g. logging to a finished run
    ├── PermissionDeniedError (PermissionError)  missing role, self-approval, protection
    ├── AuthenticationError                 missing, unknown, expired or revoked token
    ├── IntegrityError                      stored bytes do not match their hash
    ├── ConfigError                         unreadable keel.toml, bad URI ...
    │   └── NoSuchBackendError              unknown URI scheme
    └── BackendUnavailableError             transient: database / object store down

Messages say what failed, with identifiers, and what to do about it. Every
error keeps its identifiers as attributes and pickles (so it crosses process
and Ray boundaries).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

__all__ = [
    "AlreadyExistsError",
    "AuthenticationError",
    "BackendUnavailableError",
    "ConfigError",
    "IntegrityError",
    "InvalidSpecError",
    "InvalidStateError",
    "KeelError",
    "NoSuchBackendError",
    "NotFoundError",
    "ParamConflictError",
    "PermissionDeniedError",
    "did_you_mean",
]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


class KeelError(Exception):
    """Base class of every error keel raises on purpose."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        for key, value in details.items():
            setattr(self, key, value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.details))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[KeelError], message: str, details: dict[str, Any]) -> KeelError:
    err = cls.__new__(cls)
    KeelError.__init__(err, message, **details)
    return err


class NotFoundError(KeelError, KeyError):
    """An object the caller named does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class AlreadyExistsError(KeelError):
    """An object with that unique name already exists."""


class InvalidSpecError(KeelError, ValueError):
    """The caller passed a value keel cannot accept."""


class ParamConflictError(InvalidSpecError):
    """A param was logged again with a different value (params are immutable)."""


class InvalidStateError(KeelError):
    """The operation is not allowed in the object's current state."""


class PermissionDeniedError(KeelError, PermissionError):
    """The actor lacks the role (or approvals) the operation needs."""


class AuthenticationError(KeelError):
    """The request carries no valid credentials (unknown, expired or revoked token)."""


class IntegrityError(KeelError):
    """Stored bytes do not match the hash they are stored under."""


class ConfigError(KeelError):
    """The configuration is unreadable or inconsistent."""


class NoSuchBackendError(ConfigError):
    """A URI names a scheme keel has no backend for."""


class BackendUnavailableError(KeelError):
    """A backend (database, object store) cannot be reached; retrying may help."""
