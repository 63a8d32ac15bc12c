"""The model registry: versions, aliases, stages, approvals, model cards, lineage, audit.

Use :class:`Registry` for explicit control, or the module-level shortcuts, which
act on the registry of the current configuration (``keel.get_client()``)::

    import keel.registry as reg

    reg.set_alias("churn", "champion", 3, reason="beats v2 by 2 AUC points")
    model = reg.load("models:/churn@champion")
"""

from __future__ import annotations

from typing import Any

from keel.registry._api import SPEC_FILE, Lineage, Registry, ResolvedModel, node_id
from keel.registry._log import LoggedModel, log_model

__all__ = [
    "SPEC_FILE",
    "Lineage",
    "LoggedModel",
    "Registry",
    "ResolvedModel",
    "default",
    "log_model",
    "node_id",
]


def default() -> Registry:
    """The registry of the current configuration."""
    from keel.tracking.fluent import get_client

    return Registry(get_client())


_SHORTCUTS = {
    name for name in dir(Registry) if not name.startswith("_") and callable(getattr(Registry, name))
}


def __getattr__(name: str) -> Any:
    """``keel.registry.<method>`` is ``default().<method>`` for every Registry method."""
    if name in _SHORTCUTS:
        return getattr(default(), name)
    raise AttributeError(f"module 'keel.registry' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SHORTCUTS})
