"""Errors and warnings of :mod:`keel.models`, and the lazy importer of optional libraries."""

from __future__ import annotations

import importlib
from typing import Any

from keel.exceptions import IntegrityError, InvalidSpecError, KeelError

__all__ = [
    "MissingDependencyError",
    "SignatureError",
    "SignatureVerificationError",
    "UnsafeModelWarning",
    "UntrustedModelError",
    "require",
]


class UntrustedModelError(KeelError):
    """A model would run code keel cannot vouch for (pickle, unknown skops types)."""


class SignatureError(InvalidSpecError):
    """Input data does not match the model's signature (names each offending column)."""


class SignatureVerificationError(IntegrityError):
    """No trusted public key verifies a digest's signature."""


class MissingDependencyError(KeelError, ImportError):
    """A library needed to save or load a model flavor is not installed."""


class UnsafeModelWarning(UserWarning):
    """A pickle-based model was loaded because ``allow_unsafe=True`` was passed."""


# import name -> (distribution, keel extra that installs it)
_DISTRIBUTIONS: dict[str, tuple[str, str]] = {
    "skops": ("skops", "models"),
    "sklearn": ("scikit-learn", "sklearn"),
    "safetensors": ("safetensors", "models"),
    "cloudpickle": ("cloudpickle", "models"),
    "cryptography": ("cryptography", "models"),
    "xgboost": ("xgboost", "ml"),
    "lightgbm": ("lightgbm", "ml"),
    "onnx": ("onnx", "ml"),
    "onnxruntime": ("onnxruntime", "ml"),
    "skl2onnx": ("skl2onnx", "ml"),
    "torch": ("torch", "test"),
    "pyarrow": ("pyarrow", "tables"),
    "pandas": ("pandas", "tables"),
}


def require(module: str, purpose: str = "") -> Any:
    """Import an optional library by name, or raise :class:`MissingDependencyError`.

    Heavy libraries are imported here, on first use, so ``import keel.models``
    stays light; they are typed ``Any`` on purpose.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".", 1)[0]
        dist, extra = _DISTRIBUTIONS.get(top, (top, ""))
        hint = f"pip install {dist}" if extra in ("", "test") else f"pip install 'keel[{extra}]'"
        what = f" {purpose}" if purpose else ""
        raise MissingDependencyError(
            f"{dist} is needed{what} but is not installed: {hint}.",
            module=module,
            distribution=dist,
        ) from exc
