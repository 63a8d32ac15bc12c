"""Dataset versions (files, folders, tables), table profiles and data validation.

::

    import keel

    v = keel.data.add("data/", message="January export")  # -> DatasetVersion data@1
    keel.data.status()                                      # what changed since
    path = keel.data.get("data@1")                          # verified local copy
    keel.data.log_table(df, name="churn")                   # Parquet + schema + profile
    table = keel.data.get_table("churn@latest")

Names resolve lazily so ``keel data status`` imports only what it needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keel.data._api import (
        GcReport,
        StatusReport,
        TransferReport,
        add,
        checkout,
        diff,
        gc,
        get,
        get_version,
        list_datasets,
        pull,
        push,
        read_pointer,
        status,
        versions,
    )
    from keel.data._profile import ColumnProfile, TableProfile, profile_table
    from keel.data._tables import get_profile, get_schema, get_table, log_table, table_path
    from keel.data._tree import TreeChanges
    from keel.data._validate import (
        ColumnSchema,
        DataValidationError,
        Schema,
        ValidationReport,
        Violation,
        infer_schema,
        require_valid,
        validate,
        validated_inputs,
    )
    from keel.store._data import DatasetInfo, DatasetVersion

_LAZY = {
    "DatasetInfo": "keel.store._data",
    "DatasetVersion": "keel.store._data",
    "TreeChanges": "keel.data._tree",
    "get_profile": "keel.data._tables",
    "get_schema": "keel.data._tables",
    "get_table": "keel.data._tables",
    "log_table": "keel.data._tables",
    "table_path": "keel.data._tables",
    "ColumnProfile": "keel.data._profile",
    "TableProfile": "keel.data._profile",
    "profile_table": "keel.data._profile",
    "ColumnSchema": "keel.data._validate",
    "DataValidationError": "keel.data._validate",
    "Schema": "keel.data._validate",
    "ValidationReport": "keel.data._validate",
    "Violation": "keel.data._validate",
    "infer_schema": "keel.data._validate",
    "require_valid": "keel.data._validate",
    "validate": "keel.data._validate",
    "validated_inputs": "keel.data._validate",
}

__all__ = [
    "ColumnProfile",
    "ColumnSchema",
    "DataValidationError",
    "DatasetInfo",
    "DatasetVersion",
    "GcReport",
    "Schema",
    "StatusReport",
    "TableProfile",
    "TransferReport",
    "TreeChanges",
    "ValidationReport",
    "Violation",
    "add",
    "checkout",
    "diff",
    "gc",
    "get",
    "get_profile",
    "get_schema",
    "get_table",
    "get_version",
    "infer_schema",
    "list_datasets",
    "log_table",
    "profile_table",
    "pull",
    "push",
    "read_pointer",
    "require_valid",
    "status",
    "table_path",
    "validate",
    "validated_inputs",
    "versions",
]


def __getattr__(name: str) -> Any:
    import importlib

    if name not in __all__:
        raise AttributeError(f"module 'keel.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY.get(name, "keel.data._api")), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
