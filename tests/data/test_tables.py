"""Table versions: Parquet, schema and profile blobs read back verified; validate/infer-schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from typer.testing import CliRunner

import keel
from keel.cli import main as cli
from keel.data._profile import TableProfile
from keel.exceptions import IntegrityError, InvalidSpecError
from keel.objects import LocalObjectStore
from keel.tracking import fluent
from keel.tracking.client import Client

runner = CliRunner()


@pytest.fixture
def client(store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    monkeypatch.setenv("KEEL_STORE_URI", store_url)
    monkeypatch.setattr(cli, "console", Console(width=200, color_system=None))
    monkeypatch.setattr(cli, "err_console", Console(width=200, color_system=None, stderr=True))
    fluent._reset()
    yield fluent.get_client()


def _frame(n: int = 100, shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [20 + (i % 50) + shift for i in range(n)],
            "plan": ["basic" if i % 3 else "pro" for i in range(n)],
            "churned": [i % 7 == 0 for i in range(n)],
        }
    )


def test_log_table_round_trip_with_profile_and_schema(client: Client, tmp_path: Path) -> None:
    df = _frame()
    v1 = keel.data.log_table(df, name="churn", message="January")
    assert (v1.kind, v1.version, v1.file_count) == ("table", 1, 1)
    assert v1.extra["rows"] == 100 and v1.extra["columns"] == ["age", "plan", "churned"]
    table = keel.data.get_table("churn@1")
    assert isinstance(table, pa.Table)
    assert table.to_pandas().equals(df)

    profile = keel.data.get_profile("churn")
    assert isinstance(profile, TableProfile)
    assert profile.rows == 100 and profile.column("age").count == 100
    assert set(profile.names) == {"age", "plan", "churned"}
    schema = keel.data.get_schema("churn@1")
    assert "age" in schema.to_yaml()

    assert keel.data.log_table(df, name="churn").version == 1  # identical: no new version
    path = tmp_path / "feb.parquet"
    pq.write_table(pa.Table.from_pandas(_frame(shift=1.0), preserve_index=False), path)
    v2 = keel.data.log_table(path, name="churn")  # a Parquet path works too
    assert v2.version == 2
    assert keel.data.diff("churn@1", "churn@2").modified == ["<table>"]
    assert keel.data.get_table("churn").num_rows == 100

    with pytest.raises(InvalidSpecError, match="is a table"):
        keel.data.get("churn@1")
    files = tmp_path / "files"
    files.mkdir()
    (files / "x.txt").write_text("x")
    keel.data.add(files)
    with pytest.raises(InvalidSpecError, match="not a table"):
        keel.data.get_table("files")


def test_table_blobs_are_verified_and_kept_by_gc(client: Client) -> None:
    v = keel.data.log_table(_frame(), name="churn")
    objects = client.objects
    assert isinstance(objects, LocalObjectStore)
    assert keel.data.gc(grace_seconds=0).removed == []
    for digest in (v.manifest_digest, v.extra["profile_digest"], v.extra["schema_digest"]):
        assert objects.exists(digest)
    blob = objects.blob_path(v.manifest_digest)
    blob.chmod(0o644)
    raw = bytearray(blob.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    blob.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="corrupted"):
        keel.data.get_table("churn")


def test_table_lineage_inside_a_run(client: Client) -> None:
    with keel.start_run(experiment="tables") as run:
        keel.data.log_table(_frame(), name="churn")
        keel.data.get_table("churn@1")
    graph = keel.lineage(f"run:{run.run_id}", direction="up")
    assert "dataset:churn@1" in graph.of_kind("dataset")
    down = keel.lineage(f"run:{run.run_id}", direction="down")
    assert "dataset:churn@1" in down.of_kind("dataset")


def test_cli_infer_schema_and_validate(client: Client, tmp_path: Path) -> None:
    keel.data.log_table(_frame(), name="churn")
    schema = tmp_path / "schema.yaml"
    result = runner.invoke(cli.app, ["data", "infer-schema", "churn@1", "-o", str(schema)])
    assert result.exit_code == 0, result.stderr
    assert "age" in schema.read_text()

    ok = runner.invoke(cli.app, ["data", "validate", "churn@1", "--schema", str(schema)])
    assert ok.exit_code == 0, ok.stderr

    bad = _frame()
    bad.loc[0, "age"] = 10_000.0
    bad.loc[1, "plan"] = None
    keel.data.log_table(bad, name="churn")
    failed = runner.invoke(cli.app, ["data", "validate", "churn@2", "--schema", str(schema)])
    assert failed.exit_code == 1
    assert "age" in failed.stdout
    as_json = runner.invoke(
        cli.app, ["data", "validate", "churn@2", "--schema", str(schema), "--json"]
    )
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and {v["column"] for v in report["violations"]} >= {"age"}

    missing = runner.invoke(cli.app, ["data", "validate", "churn@2", "--schema", "nope.yaml"])
    assert missing.exit_code == 2 and "Cannot read schema" in missing.stderr
    printed = runner.invoke(cli.app, ["data", "infer-schema", "churn@1"])
    assert printed.exit_code == 0 and "age" in printed.stdout


def test_parquet_path_is_stored_byte_for_byte_and_streamed(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "big.parquet"
    table = pa.Table.from_pandas(_frame(n=5_000), preserve_index=False)
    pq.write_table(table, path, row_group_size=500)  # ten row groups: profiled by streaming
    v = keel.data.log_table(path, name="events")
    cached = keel.data.table_path("events")
    assert cached.read_bytes() == path.read_bytes()  # not rewritten
    assert v.extra["rows"] == 5_000 and v.extra["columns"] == ["age", "plan", "churned"]
    assert keel.data.get_profile("events").column("age").count == 5_000

    cached.chmod(0o644)
    cached.write_bytes(b"PAR1 tampered")  # a modified cache is replaced, never read
    assert keel.data.table_path("events").read_bytes() == path.read_bytes()
    assert keel.data.get_table("events").num_rows == 5_000


def test_corrupted_parquet_path_is_refused_and_nothing_is_recorded(
    client: Client, tmp_path: Path
) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not a parquet file")
    with pytest.raises(InvalidSpecError, match=r"broken\.parquet"):
        keel.data.log_table(path, name="broken")
    assert [d.name for d in keel.data.list_datasets()] == []
