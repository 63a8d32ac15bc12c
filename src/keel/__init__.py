"""keel: one coherent MLOps platform.

The tracking API is re-exported here::

    import keel

    with keel.start_run(experiment="churn") as run:
        keel.log_params({"model": "rf", "depth": 8})
        keel.log_metric("auc", 0.91, step=1)
"""

from __future__ import annotations

from keel.config import Settings, load_settings
from keel.entities import ArtifactInfo, Experiment, Metric, Run, RunStatus
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
)
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
    "NotFoundError",
    "ParamConflictError",
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
    "load_settings",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_figure",
    "log_metric",
    "log_metrics",
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
