"""The prediction log: written in batches off the request path, read back by guards and monitors.

:class:`PredictionLogger` queues rows in memory and a background thread writes
them every ``flush_interval`` seconds (or at ``max_rows``) to the configured sink:

- ``sql``: the metadata store's ``predictions`` table (the default);
- ``parquet``: one Parquet file per flush under ``prediction_log_uri``, partitioned
  ``deployment=NAME/date=YYYY-MM-DD/`` (a folder or ``s3://``);
- ``off``: nothing is kept.

Bound on loss: a worker killed without a chance to flush loses the rows queued
since its last flush, at most ``flush_interval`` seconds of traffic (default 1 s;
``KEEL_FLUSH_INTERVAL``). A clean shutdown flushes everything. A failed write is
retried on the next flush (the rows stay queued, up to ``max_pending`` rows, then
the oldest are dropped and counted in ``keel_serving_log_dropped_total``).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from keel.store._deploy import PREDICTION_COLUMNS

if TYPE_CHECKING:
    from keel.config import Settings
    from keel.store._deploy import SqlDeployments

__all__ = ["PredictionLogger", "read_predictions"]

_log = logging.getLogger("keel.serving")


class _ParquetSink:
    """Write batches as Parquet files under a folder or an fsspec URL."""

    def __init__(self, root: str, s3_endpoint_url: str | None) -> None:
        self.root = root.rstrip("/")
        self.s3_endpoint_url = s3_endpoint_url

    def _fs(self) -> tuple[Any, str]:
        import fsspec

        options: dict[str, Any] = {}
        if self.root.startswith("s3://") and self.s3_endpoint_url:
            options["client_kwargs"] = {"endpoint_url": self.s3_endpoint_url}
        fs, path = fsspec.core.url_to_fs(self.root, **options)
        return fs, path

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        fs, root = self._fs()
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in rows:
            day = dt.datetime.fromtimestamp(row["ts"] / 1000, dt.UTC).strftime("%Y-%m-%d")
            groups.setdefault((row["deployment"], day), []).append(row)
        for (deployment, day), part in groups.items():
            table = pa.Table.from_pylist(part, schema=_arrow_schema())
            folder = f"{root}/deployment={deployment}/date={day}"
            fs.makedirs(folder, exist_ok=True)
            name = f"part-{part[0]['ts']}-{uuid.uuid4().hex[:12]}.parquet"
            tmp = f"{folder}/.{name}.tmp"
            with fs.open(tmp, "wb") as fh:
                pq.write_table(table, fh, compression="zstd")
            fs.mv(tmp, f"{folder}/{name}")  # readers never see a half-written file

    def read(self, deployment: str, since: int, until: int | None) -> list[dict[str, Any]]:
        import pyarrow.parquet as pq

        fs, root = self._fs()
        folder = f"{root}/deployment={deployment}"
        if not fs.exists(folder):
            return []
        first_day = dt.datetime.fromtimestamp(since / 1000, dt.UTC).strftime("%Y-%m-%d")
        rows: list[dict[str, Any]] = []
        for day_dir in sorted(fs.ls(folder, detail=False)):
            day = str(day_dir).rsplit("date=", 1)[-1]
            if day < first_day:
                continue
            for path in sorted(fs.ls(day_dir, detail=False)):
                if not str(path).endswith(".parquet") or str(path).rsplit("/", 1)[-1][0] == ".":
                    continue
                with fs.open(path, "rb") as fh:
                    table = pq.read_table(fh)
                for row in table.to_pylist():
                    if row["ts"] >= since and (until is None or row["ts"] < until):
                        rows.append(row)
        rows.sort(key=lambda r: r["ts"])
        return rows


def _arrow_schema() -> Any:
    import pyarrow as pa

    types = {
        "ts": pa.int64(),
        "latency_ms": pa.float64(),
        "n_rows": pa.int64(),
        "disagreement": pa.float64(),
    }
    return pa.schema([(c, types.get(c, pa.string())) for c in PREDICTION_COLUMNS])


class PredictionLogger:
    """Batch prediction rows in memory and write them from a background thread."""

    def __init__(
        self,
        write: Callable[[Sequence[dict[str, Any]]], None] | None,
        *,
        flush_interval: float = 1.0,
        max_rows: int = 512,
        max_pending: int = 200_000,
        on_dropped: Callable[[int], None] | None = None,
    ) -> None:
        self._write = write
        self.flush_interval = flush_interval
        self.max_rows = max_rows
        self.max_pending = max_pending
        self._on_dropped = on_dropped
        self._rows: deque[dict[str, Any]] = deque()
        self._cond = threading.Condition()
        self._flush_lock = threading.Lock()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.written = 0
        self.failures = 0

    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        deployments: SqlDeployments,
        on_dropped: Callable[[int], None] | None = None,
    ) -> PredictionLogger:
        """The logger ``settings.prediction_log`` asks for."""
        write: Callable[[Sequence[dict[str, Any]]], None] | None
        if settings.prediction_log == "off":
            write = None
        elif settings.prediction_log == "parquet":
            root = settings.prediction_log_uri or str(settings.home / "predictions")
            write = _ParquetSink(root, settings.s3_endpoint_url).write
        else:
            write = deployments.log_predictions
        return cls(write, flush_interval=settings.flush_interval, on_dropped=on_dropped)

    @property
    def enabled(self) -> bool:
        """False when logging is off."""
        return self._write is not None

    def start(self) -> None:
        """Start the background writer (idempotent)."""
        if self._write is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="keel-prediction-log", daemon=True)
        self._thread.start()

    def log(self, row: dict[str, Any]) -> None:
        """Queue one row (cheap: an append; the writer is woken only when a batch is full)."""
        if self._write is None:
            return
        rows = self._rows
        rows.append(row)
        if len(rows) > self.max_pending:
            dropped = 0
            while len(rows) > self.max_pending:
                rows.popleft()
                dropped += 1
            if self._on_dropped is not None:
                self._on_dropped(dropped)
        if len(rows) >= self.max_rows:
            with self._cond:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._stop:
                    self._cond.wait(self.flush_interval)
                stopping = self._stop
            self.flush()
            if stopping:
                return

    def flush(self) -> int:
        """Write everything queued now; returns rows written (0 if the write failed)."""
        if self._write is None:
            return 0
        with self._flush_lock:
            batch: list[dict[str, Any]] = []
            rows = self._rows
            while rows:
                batch.append(rows.popleft())
            if not batch:
                return 0
            try:
                self._write(batch)
            except Exception:
                self.failures += 1
                _log.exception("writing %d prediction rows failed; retrying later", len(batch))
                rows.extendleft(reversed(batch))  # keep them, in order, for the next flush
                return 0
            self.written += len(batch)
            return len(batch)

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued and stop the writer."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        deadline = time.monotonic() + timeout
        while self._rows and time.monotonic() < deadline:
            if not self.flush():
                time.sleep(0.1)


def read_predictions(
    settings: Settings,
    deployments: SqlDeployments,
    deployment: str,
    *,
    since: int = 0,
    until: int | None = None,
    roles: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Prediction rows of a deployment in ``[since, until)`` from the configured sink."""
    if settings.prediction_log == "parquet":
        root = settings.prediction_log_uri or str(settings.home / "predictions")
        rows = _ParquetSink(root, settings.s3_endpoint_url).read(deployment, since, until)
        if roles is not None:
            rows = [r for r in rows if r["role"] in roles]
        return rows
    return deployments.predictions(deployment, since=since, until=until, roles=roles)
