"""Checks applied to every name, key, value and path before anything is written."""

from __future__ import annotations

import math
import posixpath
import re
from typing import Any
from urllib.parse import unquote

from keel.exceptions import InvalidSpecError

MAX_NAME = 250
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_DESCRIPTION = 50_000
MAX_ARTIFACT_PATH = 1024

_KEY_RE = re.compile(r"^[A-Za-z0-9_\-. /:]+$")
_RUN_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def check_name(kind: str, name: object) -> str:
    """Validate an experiment or run name: non-empty, printable, at most 250 chars."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidSpecError(f"{kind} name must be a non-empty string, got {name!r}.")
    if len(name) > MAX_NAME:
        raise InvalidSpecError(
            f"{kind} name is {len(name)} characters long; the limit is {MAX_NAME}.", name=name[:40]
        )
    if any(not ch.isprintable() for ch in name):
        raise InvalidSpecError(f"{kind} name {name!r} contains non-printable characters.")
    return name


def check_key(kind: str, key: object) -> str:
    """Validate a param, metric or tag key (MLflow-compatible character set)."""
    if not isinstance(key, str) or not key:
        raise InvalidSpecError(f"{kind} key must be a non-empty string, got {key!r}.")
    if len(key) > MAX_KEY:
        raise InvalidSpecError(
            f"{kind} key '{key[:40]}...' is {len(key)} characters long; the limit is {MAX_KEY}.",
            key=key,
        )
    if not _KEY_RE.match(key):
        bad = sorted({ch for ch in key if not _KEY_RE.match(ch)})
        raise InvalidSpecError(
            f"{kind} key {key!r} contains {''.join(bad)!r}; keys may contain only letters, "
            "digits, '_', '-', '.', ' ', '/' and ':'.",
            key=key,
        )
    if key.startswith("/") or ".." in key.split("/"):
        raise InvalidSpecError(
            f"{kind} key {key!r} may not start with '/' or contain a '..' segment.", key=key
        )
    return key


def check_value(kind: str, key: str, value: object, limit: int) -> str:
    """Convert a param or tag value to ``str`` and enforce its length limit."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        raise InvalidSpecError(
            f"{kind} '{key}' has a value of {len(text)} characters; the limit is {limit}. "
            "Log long values as an artifact (keel.log_text) instead.",
            key=key,
        )
    return text


def check_metric_value(key: str, value: object) -> float:
    """Return the metric value as a float; NaN and +/-inf are allowed."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            import numbers

            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                return float(value)
        except TypeError:
            pass
        raise InvalidSpecError(
            f"Metric '{key}' must be a number, got {type(value).__name__} {value!r}.", key=key
        )
    return float(value)


def check_step(key: str, step: object) -> int:
    """Validate a metric step: an integer that fits in 64 bits."""
    if isinstance(step, bool) or not isinstance(step, int):
        try:
            import numbers

            if isinstance(step, numbers.Integral):
                step = int(step)
            else:
                raise TypeError
        except TypeError:
            raise InvalidSpecError(
                f"Metric '{key}': step must be an integer, got {step!r}.", key=key
            ) from None
    assert isinstance(step, int)
    if not -(2**63) <= step < 2**63:
        raise InvalidSpecError(f"Metric '{key}': step {step} does not fit in 64 bits.", key=key)
    return step


def check_run_id(run_id: object) -> str:
    """Validate the shape of a run id (32 lowercase hex digits)."""
    if not isinstance(run_id, str) or not _RUN_ID_RE.match(run_id):
        raise InvalidSpecError(
            f"{run_id!r} is not a run id: run ids are 32 hexadecimal characters "
            "(see `keel runs list`).",
            run_id=str(run_id),
        )
    return run_id


def check_artifact_path(path: object, *, allow_empty: bool = False) -> str:
    """Normalise a relative artifact path; reject absolute paths and ``..``."""
    if not isinstance(path, str):
        raise InvalidSpecError(f"Artifact path must be a string, got {path!r}.")
    if path in ("", ".") and allow_empty:
        return ""
    raw = path.replace("\\", "/")
    if not raw or raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
        raise InvalidSpecError(
            f"Artifact path {path!r} must be a non-empty relative path such as 'plots/roc.png'.",
            path=path,
        )
    # percent-encoded traversal ('%2e%2e/x', 'a/%2F..%2Fb') is refused too: such a path
    # would escape once a URL or a lenient consumer decodes it
    decoded = unquote(raw).replace("\\", "/")
    parts = raw.split("/")
    if ".." in parts or ".." in decoded.split("/") or decoded.startswith("/"):
        raise InvalidSpecError(
            f"Artifact path {path!r} contains '..'; artifact paths stay inside the run.",
            path=path,
        )
    if any(ord(ch) < 32 for ch in raw):
        raise InvalidSpecError(f"Artifact path {path!r} contains control characters.", path=path)
    norm = posixpath.normpath(raw)
    if len(norm) > MAX_ARTIFACT_PATH:
        raise InvalidSpecError(
            f"Artifact path is {len(norm)} characters long; the limit is {MAX_ARTIFACT_PATH}.",
            path=path[:60],
        )
    return norm


def is_nan(value: float) -> bool:
    """True for a float NaN."""
    return isinstance(value, float) and math.isnan(value)


def jsonable(value: Any) -> Any:
    """Best-effort conversion of numpy scalars and the like to plain Python."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value
