"""Drift and data-quality monitoring: references, checks, reports, delayed-label performance.

::

    from keel import monitoring

    ref = monitoring.reference("churn@3")            # or a DataFrame / Arrow / Parquet path
    ref.save("churn-ref.json")
    report = monitoring.check(ref, "window.parquet", prediction_column="score")
    report.drifted, report.share_drifted, report.columns["age"].statistic
    report.to_html("drift.html")                      # one self-contained file

See ``docs/monitoring.md`` for the tests, thresholds and their justification, and
``docs/agent.md`` for monitors of deployments, alerts, ``keel agent`` and retraining::

    monitoring.Monitors().create("churn-drift", deployment="churn", reference="churn@3",
                                 alert=monitoring.AlertSpec(targets=("https://hooks…",)))
"""

from __future__ import annotations

from keel.monitoring._agent import Agent
from keel.monitoring._drift import (
    DEFAULT_MIN_ROWS,
    DEFAULT_TESTS,
    DEFAULT_THRESHOLDS,
    TESTS,
    check,
)
from keel.monitoring._monitors import AlertSpec, Monitors, MonitorSpec, RetrainSpec
from keel.monitoring._performance import (
    classification_metrics,
    performance_windows,
    regression_metrics,
)
from keel.monitoring._reference import (
    MAX_CATEGORIES,
    NUMERIC_BINS,
    ColumnReference,
    Reference,
    reference,
)
from keel.monitoring._report import ColumnDrift, DriftReport, SchemaIssue

__all__ = [
    "DEFAULT_MIN_ROWS",
    "DEFAULT_TESTS",
    "DEFAULT_THRESHOLDS",
    "MAX_CATEGORIES",
    "NUMERIC_BINS",
    "TESTS",
    "Agent",
    "AlertSpec",
    "ColumnDrift",
    "ColumnReference",
    "DriftReport",
    "MonitorSpec",
    "Monitors",
    "Reference",
    "RetrainSpec",
    "SchemaIssue",
    "check",
    "classification_metrics",
    "performance_windows",
    "reference",
    "regression_metrics",
]
