"""Artifact previews: text, JSON, YAML, CSV, images and Parquet tables, shown inline."""

from __future__ import annotations

import csv
import io
import json
import mimetypes
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

__all__ = ["IMAGE_TYPES", "Preview", "kind_of", "preview"]

#: Image types shown inline with <img> (SVG in <img> runs no scripts).
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".svg": "image/svg+xml",
}
TEXT_SUFFIXES = {
    ".txt", ".log", ".md", ".rst", ".py", ".sh", ".toml", ".cfg", ".ini", ".yaml", ".yml",
    ".xml", ".html", ".htm", ".diff", ".patch", ".sql", ".r", ".js", ".ts", ".env", ".conf",
    ".requirements", ".lock", ".mlmodel", ".properties",
}  # fmt: skip
JSON_SUFFIXES = {".json", ".jsonl", ".ndjson", ".ipynb"}
TABLE_SUFFIXES = {".csv", ".tsv"}
#: Largest file read for a preview; bigger ones are offered for download only.
MAX_PREVIEW_BYTES = 32 * 1024 * 1024
#: Characters of text shown.
MAX_TEXT = 200_000
#: Rows of a table shown.
MAX_ROWS = 50


@dataclass
class Preview:
    """What the preview pane shows for one file."""

    kind: str  # text | json | table | image | none | error
    text: str = ""
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    total_rows: int | None = None
    note: str = ""


def kind_of(path: str) -> str:
    """The preview kind a file name suggests: image, json, table, parquet, text or binary."""
    suffix = PurePosixPath(path).suffix.lower()
    name = PurePosixPath(path).name.lower()
    if suffix in IMAGE_TYPES:
        return "image"
    if suffix in JSON_SUFFIXES:
        return "json"
    if suffix in TABLE_SUFFIXES:
        return "table"
    if suffix == ".parquet":
        return "parquet"
    if suffix in TEXT_SUFFIXES or name in {"mlmodel", "dockerfile", "makefile", "license"}:
        return "text"
    guess, _ = mimetypes.guess_type(name)
    if guess and guess.startswith("text/"):
        return "text"
    return "binary"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return text if len(text) <= 200 else text[:199] + "…"


def _decode(data: bytes) -> str | None:
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _text(text: str) -> Preview:
    if len(text) > MAX_TEXT:
        return Preview("text", text[:MAX_TEXT], note=f"First {MAX_TEXT:,} characters.")
    return Preview("text", text)


def _parquet(data: bytes) -> Preview:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return Preview("none", note="Parquet previews need pyarrow: pip install 'keel[tables]'.")
    reader = pq.ParquetFile(pa.BufferReader(data))
    total = int(reader.metadata.num_rows)
    columns = [str(n) for n in reader.schema_arrow.names]
    rows: list[list[str]] = []
    for batch in reader.iter_batches(batch_size=MAX_ROWS):
        for record in batch.to_pylist():
            rows.append([_cell(record.get(c)) for c in columns])
        break
    types = ", ".join(f"{f.name}: {f.type}" for f in reader.schema_arrow)
    return Preview(
        "table",
        columns=columns,
        rows=rows[:MAX_ROWS],
        total_rows=total,
        note=f"{total:,} rows, {len(columns)} columns ({types[:500]}).",
    )


def _csv(text: str, tab: bool) -> Preview:
    reader = csv.reader(io.StringIO(text), delimiter="\t" if tab else ",")
    rows = []
    for i, row in enumerate(reader):
        if i > MAX_ROWS:
            break
        rows.append([_cell(c) for c in row])
    if not rows:
        return Preview("text", "")
    return Preview(
        "table",
        columns=rows[0],
        rows=rows[1 : MAX_ROWS + 1],
        note=f"First {MAX_ROWS} rows." if len(rows) > MAX_ROWS else "",
    )


def preview(path: str, size: int, read: Any) -> Preview:
    """The preview of ``path``; ``read()`` returns its (verified) bytes."""
    kind = kind_of(path)
    if kind == "image":
        return Preview("image")
    if size > MAX_PREVIEW_BYTES:
        return Preview("none", note="Too large to preview: download it instead.")
    if kind == "binary" and size > 1024 * 1024:
        return Preview("none", note="No preview for this file type.")
    data: bytes = read()
    try:
        if kind == "parquet":
            return _parquet(data)
    except Exception as exc:  # a corrupt or unsupported file: say so, do not fail the page
        return Preview("error", note=f"Cannot read this Parquet file: {exc}")
    text = _decode(data)
    if text is None:
        return Preview("none", note="Binary file: no preview.")
    if kind == "json":
        try:
            if path.endswith((".jsonl", ".ndjson")):
                return _text(text)
            return _text(json.dumps(json.loads(text), indent=2, ensure_ascii=False))
        except ValueError:
            return _text(text)
    if kind == "table":
        return _csv(text, tab=path.lower().endswith(".tsv"))
    return _text(text)
