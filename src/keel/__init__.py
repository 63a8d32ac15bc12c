"""keel: one coherent MLOps platform.

The tracking API is re-exported here::

    import keel

    with keel.start_run(experiment="churn") as run:
        keel.log_params({"model": "rf", "depth": 8})
        keel.log_metric("auc", 0.91, step=1)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keel import data as data
    from keel.config import Settings, load_settings
    from keel.entities import (
        ArtifactInfo,
        Experiment,
        Metric,
        ModelVersion,
        RegisteredModel,
        Run,
        RunStatus,
    )
    from keel.exceptions import (
        AlreadyExistsError,
        BackendUnavailableError,
        ConfigError,
        IntegrityError,
        InvalidSpecError,
        InvalidStateError,
        KeelError,
        NotFoundError,
        ParamConflictError,
        PermissionDeniedError,
    )
    from keel.registry._log import log_input, log_model
    from keel.tracking.autolog import autolog
    from keel.tracking.client import Client, RunList
    from keel.tracking.fluent import (
        ActiveRun,
        active_run,
        download_artifact,
        download_artifacts,
        end_run,
        flush,
        get_client,
        get_metric_history,
        get_run,
        log_artifact,
        log_artifacts,
        log_dict,
        log_figure,
        log_metric,
        log_metrics,
        log_param,
        log_params,
        log_table,
        log_text,
        search_runs,
        set_tag,
        set_tags,
        start_run,
    )
    from keel.tracking.seed import seed_everything

# Public names resolve lazily (PEP 562) so `import keel` and `keel --help` stay
# fast; the store and its SQLAlchemy import load on first use.
_LAZY = {
    "Settings": "keel.config",
    "load_settings": "keel.config",
    "ArtifactInfo": "keel.entities",
    "Experiment": "keel.entities",
    "Metric": "keel.entities",
    "Run": "keel.entities",
    "RunStatus": "keel.entities",
    "autolog": "keel.tracking.autolog",
    "Client": "keel.tracking.client",
    "RunList": "keel.tracking.client",
    "seed_everything": "keel.tracking.seed",
    "log_model": "keel.registry._log",
    "log_input": "keel.registry._log",
    "ModelVersion": "keel.entities",
    "RegisteredModel": "keel.entities",
    "PermissionDeniedError": "keel.exceptions",
}
_SUBPACKAGES = {"data", "monitoring", "serving"}
_ERRORS = {
    "AlreadyExistsError",
    "BackendUnavailableError",
    "ConfigError",
    "IntegrityError",
    "InvalidSpecError",
    "InvalidStateError",
    "KeelError",
    "NotFoundError",
    "ParamConflictError",
}


def lineage(obj: Any, direction: str = "up", depth: int = 10) -> Any:
    """Lineage of a run, model version or ``kind:id`` node (``.of_kind("dataset")``)."""
    from keel.registry import default

    return default().lineage(obj, direction, depth)


def __getattr__(name: str) -> Any:
    import importlib

    if name in _SUBPACKAGES:  # keel.data ...: imported on first attribute access
        return importlib.import_module(f"keel.{name}")
    if name in _ERRORS:
        module = "keel.exceptions"
    elif name in _LAZY:
        module = _LAZY[name]
    elif name in __all__:
        module = "keel.tracking.fluent"
    else:
        raise AttributeError(f"module 'keel' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__version__ = "0.1.0"

__all__ = [
    "ActiveRun",
    "AlreadyExistsError",
    "ArtifactInfo",
    "BackendUnavailableError",
    "Client",
    "ConfigError",
    "Experiment",
    "IntegrityError",
    "InvalidSpecError",
    "InvalidStateError",
    "KeelError",
    "Metric",
    "ModelVersion",
    "NotFoundError",
    "ParamConflictError",
    "PermissionDeniedError",
    "RegisteredModel",
    "Run",
    "RunList",
    "RunStatus",
    "Settings",
    "active_run",
    "autolog",
    "download_artifact",
    "download_artifacts",
    "end_run",
    "flush",
    "get_client",
    "get_metric_history",
    "get_run",
    "lineage",
    "load_settings",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_figure",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_param",
    "log_params",
    "log_table",
    "log_text",
    "search_runs",
    "seed_everything",
    "set_tag",
    "set_tags",
    "start_run",
]
