"""Table versions: one Parquet blob plus its inferred schema and statistical profile.

A table version's ``manifest_digest`` is the Parquet blob; ``extra`` names the
profile (JSON) and schema (YAML) blobs, so garbage collection and push/pull see
them like any other referenced blob.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.data._api import _client, _sql, parse_ref
from keel.exceptions import InvalidSpecError

if TYPE_CHECKING:
    import pyarrow as pa

    from keel.data._profile import TableProfile
    from keel.data._validate import Schema
    from keel.store._data import DatasetVersion
    from keel.tracking.client import Client

__all__ = ["get_profile", "get_schema", "get_table", "log_table", "table_path"]


def log_table(
    data: Any,
    name: str,
    message: str | None = None,
    *,
    show_progress: bool = False,
    client: Client | None = None,
) -> DatasetVersion:
    """Version a table (pandas, polars, Arrow or a Parquet path) as dataset ``name``.

    Stores the table as Parquet, with its inferred schema and a statistical
    profile. A Parquet file is stored byte for byte and profiled by streaming its
    row groups, so tables larger than memory can be logged. Identical content to
    the latest version returns that version. Inside an active run the version
    records the run (lineage, relation ``output``).
    """
    import pyarrow.parquet as pq

    from keel.data._frames import _is_path, num_rows, read_schema, to_arrow
    from keel.data._profile import profile_table
    from keel.data._validate import infer_schema
    from keel.store._data import check_dataset_name
    from keel.tracking import fluent

    check_dataset_name(name)
    c = _client(client)
    sql = _sql(c)
    objects = c.objects
    if _is_path(data):  # stored as is: read_schema/num_rows reject a corrupted file first
        path = Path(data)
        columns, rows = read_schema(path).names, num_rows(path)
        profile = profile_table(path, show_progress=show_progress)
        parquet = objects.put_file(path)
    else:
        table = to_arrow(data)
        columns, rows = table.column_names, table.num_rows
        profile = profile_table(table, show_progress=show_progress)
        with tempfile.TemporaryDirectory(prefix="keel-table-") as tmp:
            out = Path(tmp) / "table.parquet"
            # deterministic bytes for equal tables: no creation time, fixed writer options
            pq.write_table(table, out, compression="zstd", store_schema=True)
            parquet = objects.put_file(out)
    schema = infer_schema(profile)
    profile_ref = objects.put_bytes(
        json.dumps(profile.to_dict(), sort_keys=True, separators=(",", ":")).encode()
    )
    schema_ref = objects.put_bytes(schema.to_yaml().encode())
    run = fluent.active_run()
    version = sql.create_version(
        name,
        kind="table",
        manifest_digest=parquet.digest,
        file_count=1,
        total_bytes=parquet.size,
        actor=c.settings.user,
        run_id=run.run_id if run else None,
        message=message,
        extra={
            "profile_digest": profile_ref.digest,
            "schema_digest": schema_ref.digest,
            "rows": rows,
            "columns": list(columns),
        },
    )
    if run is not None and not version.created:
        sql.add_edge(f"run:{run.run_id}", version.node, "output")
    return version


def _table_version(ref: str, client: Client | None) -> tuple[Client, DatasetVersion]:
    c = _client(client)
    dv = _sql(c).get_version(*parse_ref(ref))
    if dv.kind != "table":
        raise InvalidSpecError(
            f"{dv.uri} is a files version, not a table; materialise it with "
            f"keel.data.get('{dv.uri}').",
            ref=ref,
        )
    return c, dv


def table_path(ref: str, *, client: Client | None = None) -> Path:
    """A verified local Parquet file of a table version (cached by content hash).

    The cached file is re-hashed on every call, so a modified cache is replaced,
    never read. Inside an active run, records the lineage edge ``dataset -> run``.
    """
    from keel.objects.base import hash_file
    from keel.tracking import fluent

    c, dv = _table_version(ref, client)
    final = c.settings.home / "data-cache" / f"{dv.manifest_digest}.parquet"
    if not (final.is_file() and hash_file(final) == dv.manifest_digest):
        c.objects.get_file(dv.manifest_digest, final)  # atomic, verified
    run = fluent.active_run()
    if run is not None:
        _sql(c).add_edge(dv.node, f"run:{run.run_id}", "input")
    return final


def get_table(ref: str, *, client: Client | None = None) -> pa.Table:
    """Read a table version (``name``, ``name@latest``, ``name@2``) as a pyarrow Table.

    The Parquet bytes are verified against their hash before they are parsed.
    Inside an active run, records the lineage edge ``dataset -> run`` (``input``).
    """
    import pyarrow.parquet as pq

    return pq.read_table(table_path(ref, client=client), memory_map=True)


def get_profile(ref: str, *, client: Client | None = None) -> TableProfile:
    """The statistical profile stored with a table version."""
    from keel.data._profile import TableProfile

    c, dv = _table_version(ref, client)
    return TableProfile.from_dict(json.loads(c.objects.get_bytes(dv.extra["profile_digest"])))


def get_schema(ref: str, *, client: Client | None = None) -> Schema:
    """The schema inferred when a table version was logged."""
    from keel.data._validate import Schema

    c, dv = _table_version(ref, client)
    return Schema.from_yaml(c.objects.get_bytes(dv.extra["schema_digest"]).decode())
