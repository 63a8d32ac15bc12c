"""Importers: bring experiments, runs and models from other tools into keel.

:func:`import_mlflow` copies an MLflow tracking store (a SQLite database, another
SQLAlchemy URL, or a tracking server) into the configured keel stores; the CLI
is ``keel import mlflow --from ...`` (see docs/import.md).
"""

from __future__ import annotations

from keel.importers.mlflow import ImportReport, Tally, import_mlflow, open_source

__all__ = ["ImportReport", "Tally", "import_mlflow", "open_source"]
