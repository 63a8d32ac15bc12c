"""Background metric buffering and run heartbeats.

``log_metric`` appends a tuple to an in-memory list and returns; a daemon
thread writes the list to the store in one transaction per run every
``flush_interval`` seconds, and heartbeats the runs this process owns.
:meth:`MetricBuffer.flush` writes everything buffered so far on the calling
thread and returns only once it is committed: that is the durability point.

Failure handling: a transient store error (database locked or down) keeps the
points queued and retries with backoff; a permanent one (the run was ended or
deleted elsewhere) drops that run's points and re-raises on the next
``flush()``, so nothing is lost silently.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict

from keel.exceptions import BackendUnavailableError, KeelError
from keel.store.base import MetricPoint, Store

__all__ = ["MetricBuffer"]

_MAX_BACKLOG = 1_000_000  # points; beyond this, log_metric writes synchronously


class MetricBuffer:
    """Buffers metric points per run and writes them in batches.

    Args:
        store: where points go.
        flush_interval: seconds between background writes.
        heartbeat_interval: seconds between heartbeats of registered runs.
    """

    def __init__(self, store: Store, flush_interval: float = 1.0, heartbeat_interval: float = 5.0):
        self.store = store
        self.flush_interval = flush_interval
        self.heartbeat_interval = heartbeat_interval
        self._pending: list[tuple[str, MetricPoint]] = []
        self._lock = threading.Lock()  # guards _pending
        self._write_lock = threading.Lock()  # one writer at a time, in order
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors: list[KeelError] = []
        self._heartbeat_runs: set[str] = set()
        self._last_heartbeat = 0.0

    # -- producer side ---------------------------------------------------------------------
    def add(self, run_id: str, point: MetricPoint) -> None:
        """Queue one point (returns immediately)."""
        with self._lock:
            self._pending.append((run_id, point))
            backlog = len(self._pending)
        if self._thread is None:
            self._start()
        if backlog >= _MAX_BACKLOG:  # the store cannot keep up: apply back-pressure
            self.flush()

    def extend(self, run_id: str, points: list[MetricPoint]) -> None:
        """Queue several points of one run."""
        with self._lock:
            self._pending.extend((run_id, p) for p in points)
            backlog = len(self._pending)
        if self._thread is None:
            self._start()
        if backlog >= _MAX_BACKLOG:
            self.flush()

    def watch(self, run_id: str) -> None:
        """Heartbeat this run until :meth:`unwatch`."""
        self._heartbeat_runs.add(run_id)
        if self._thread is None:
            self._start()

    def unwatch(self, run_id: str) -> None:
        """Stop heartbeating a run."""
        self._heartbeat_runs.discard(run_id)

    # -- durability ------------------------------------------------------------------------
    def flush(self, run_id: str | None = None) -> None:
        """Write every point queued so far; return once committed.

        Raises the first error recorded since the last flush (for example points
        dropped because their run was ended elsewhere), or the store's error if
        the write fails now; in the latter case the points stay queued.
        """
        del run_id  # all runs are flushed together: one ordered stream
        self._write(raise_errors=True)

    def close(self) -> None:
        """Flush and stop the background thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        self._thread = None
        with contextlib.suppress(KeelError):
            self._write(raise_errors=False)

    @property
    def pending(self) -> int:
        """Number of points not yet written."""
        return len(self._pending)

    # -- writer ----------------------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._loop, name="keel-metric-writer", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        backoff = self.flush_interval
        tick = min(self.flush_interval, self.heartbeat_interval)
        while not self._stop.is_set():
            self._wake.wait(backoff if backoff > tick else tick)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._write(raise_errors=False)
                self._heartbeat()
                backoff = self.flush_interval
            except BackendUnavailableError:
                backoff = min(backoff * 2, 30.0)
            except Exception:  # never let the writer thread die
                backoff = min(backoff * 2, 30.0)

    def _heartbeat(self) -> None:
        now = time.monotonic()
        if self._heartbeat_runs and now - self._last_heartbeat >= self.heartbeat_interval:
            self.store.heartbeat(sorted(self._heartbeat_runs))
            self._last_heartbeat = now

    def _write(self, *, raise_errors: bool) -> None:
        with self._write_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            by_run: dict[str, list[MetricPoint]] = defaultdict(list)
            for run_id, point in batch:
                by_run[run_id].append(point)
            remaining = list(by_run)
            try:
                for run_id in list(remaining):
                    try:
                        self.store.log_points(run_id, by_run[run_id])
                    except BackendUnavailableError:
                        raise
                    except KeelError as exc:  # permanent for this run: report, don't retry
                        self._errors.append(exc)
                    remaining.remove(run_id)
            except BaseException:
                # Put unwritten points back, ahead of anything queued meanwhile.
                with self._lock:
                    self._pending[:0] = [(r, p) for r in remaining for p in by_run[r]]
                raise
        if raise_errors and self._errors:
            errors, self._errors = self._errors, []
            raise errors[0]
