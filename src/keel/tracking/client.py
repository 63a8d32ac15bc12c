"""The explicit tracking client: every call names its run.

:class:`Client` joins the metadata store and the object store. The fluent API
(``keel.start_run`` ...) is a thin layer over one :class:`Client` per
configuration.
"""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from keel import _validation as v
from keel.config import Settings, load_settings
from keel.entities import ArtifactInfo, Experiment, Metric, Run, RunStatus
from keel.exceptions import InvalidSpecError, KeelError, NotFoundError
from keel.objects import ObjectStore, open_object_store
from keel.store import SqlStore, Store
from keel.tracking._buffer import MetricBuffer

__all__ = ["Client", "OutputFormat"]

OutputFormat = Literal["list", "pandas", "polars"]


class Client:
    """Tracking client over a metadata store and an object store.

    Args:
        settings: resolved configuration; defaults to :func:`keel.config.load_settings`.
        store: inject a metadata store (overrides ``settings.store_uri``).
        objects: inject an object store (overrides ``settings.artifact_uri``).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        store: Store | None = None,
        objects: ObjectStore | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self._store = store
        self._objects = objects
        self._buffer: MetricBuffer | None = None
        self._lock = threading.Lock()
        self._exp_ids: dict[str, str] = {}

    # -- backends ----------------------------------------------------------------------------
    @property
    def store(self) -> Store:
        """The metadata store (opened on first use): a keel server's with ``tracking_uri``."""
        if self._store is None:
            if self.settings.tracking_uri:
                from keel.store.rest import RestStore

                self._store = RestStore(
                    self.settings.tracking_uri, token=self.settings.tracking_token
                )
            else:
                self._store = SqlStore(
                    self.settings.store_uri, artifact_location=self.settings.artifact_uri
                )
        return self._store

    @property
    def objects(self) -> ObjectStore:
        """The object store (opened on first use): a keel server's with ``tracking_uri``."""
        if self._objects is None:
            if self.settings.tracking_uri:
                from keel.objects.http import HttpObjectStore

                self._objects = HttpObjectStore(
                    self.settings.tracking_uri, token=self.settings.tracking_token
                )
            else:
                self._objects = open_object_store(
                    self.settings.artifact_uri, s3_endpoint_url=self.settings.s3_endpoint_url
                )
        return self._objects

    @property
    def buffer(self) -> MetricBuffer:
        """The background metric writer of this client."""
        if self._buffer is None:
            with self._lock:
                if self._buffer is None:
                    self._buffer = MetricBuffer(
                        self.store, self.settings.flush_interval, self.settings.heartbeat_interval
                    )
        return self._buffer

    def close(self) -> None:
        """Flush buffered metrics and release connections."""
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None
        if self._store is not None:
            self._store.close()
        close_objects = getattr(self._objects, "close", None)
        if close_objects is not None:  # remote object stores hold a connection pool
            close_objects()

    def flush(self) -> None:
        """Block until every buffered metric is durably stored."""
        if self._buffer is not None:
            self._buffer.flush()

    # -- experiments ------------------------------------------------------------------------
    def create_experiment(self, name: str, **kwargs: Any) -> Experiment:
        """Create an experiment (see :meth:`Store.create_experiment`)."""
        return self.store.create_experiment(name, **kwargs)

    def get_experiment(self, name_or_id: str) -> Experiment:
        """Experiment by name, or by id when given an integer-like string."""
        if isinstance(name_or_id, int) or (isinstance(name_or_id, str) and name_or_id.isdigit()):
            try:
                return self.store.get_experiment(str(name_or_id))
            except NotFoundError:
                pass
        return self.store.get_experiment_by_name(str(name_or_id))

    def delete_experiment(self, name_or_id: str) -> None:
        """Soft-delete an experiment (its runs stay, restorable)."""
        self.store.set_experiment_lifecycle(
            self.get_experiment(name_or_id).experiment_id, "deleted"
        )

    def restore_experiment(self, name_or_id: str) -> None:
        """Restore a soft-deleted experiment."""
        self.store.set_experiment_lifecycle(self.get_experiment(name_or_id).experiment_id, "active")

    def list_experiments(self, view: str = "active") -> list[Experiment]:
        """All experiments in the given view."""
        return self.store.list_experiments(view)

    def _experiment_ids(self, experiments: Sequence[str] | str | None) -> list[str]:
        if experiments is None:
            return []
        if isinstance(experiments, str):
            experiments = [experiments]
        ids = []
        for name in experiments:
            # names are unique forever (a deleted experiment keeps its name), so cache them
            exp_id = self._exp_ids.get(name)
            if exp_id is None:
                exp_id = self._exp_ids[name] = self.get_experiment(name).experiment_id
            ids.append(exp_id)
        return ids

    # -- runs ---------------------------------------------------------------------------------
    def create_run(
        self,
        experiment: str,
        *,
        name: str | None = None,
        parent_run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        description: str | None = None,
        environment_digest: str | None = None,
        heartbeat: bool = False,
    ) -> Run:
        """Start a run in ``experiment`` (name or id; created if it does not exist)."""
        try:
            exp = self.get_experiment(experiment)
        except NotFoundError:
            exp = self.store.get_or_create_experiment(experiment)
        return self.store.create_run(
            exp.experiment_id,
            name=name,
            parent_run_id=parent_run_id,
            tags=tags,
            description=description,
            user=self.settings.user,
            environment_digest=environment_digest,
            heartbeat=heartbeat,
        )

    def get_run(self, run_id: str) -> Run:
        """A run with params, latest metrics and tags."""
        return self.store.get_run(run_id)

    def end_run(
        self, run_id: str, status: RunStatus | str = RunStatus.FINISHED, failure: str | None = None
    ) -> None:
        """Flush the run's metrics and give it a terminal status.

        The run is ended even when the flush reports an error; the error is
        raised afterwards.
        """
        error: KeelError | None = None
        if self._buffer is not None:
            self._buffer.unwatch(run_id)
            try:
                self._buffer.flush()
            except KeelError as exc:
                error = exc
        self.store.end_run(run_id, status, failure=failure)
        if error is not None:
            raise error

    def delete_run(self, run_id: str) -> None:
        """Soft-delete a run (restorable)."""
        self.store.set_run_lifecycle(run_id, "deleted")

    def restore_run(self, run_id: str) -> None:
        """Restore a soft-deleted run."""
        self.store.set_run_lifecycle(run_id, "active")

    # -- logging --------------------------------------------------------------------------------
    def log_params(self, run_id: str, params: Mapping[str, object]) -> None:
        """Log params (immutable: a different value for a logged key is an error)."""
        self.store.log_batch(run_id, params=params)

    def log_param(self, run_id: str, key: str, value: object) -> None:
        """Log one param."""
        self.log_params(run_id, {key: value})

    def set_tags(self, run_id: str, tags: Mapping[str, object]) -> None:
        """Set (or overwrite) tags."""
        self.store.log_batch(run_id, tags=tags)

    def set_tag(self, run_id: str, key: str, value: object) -> None:
        """Set one tag."""
        self.set_tags(run_id, {key: value})

    def delete_tag(self, run_id: str, key: str) -> None:
        """Remove a tag."""
        self.store.delete_tag(run_id, key)

    def log_metric(
        self, run_id: str, key: str, value: float, step: int = 0, timestamp: int | None = None
    ) -> None:
        """Log one metric point synchronously (the fluent API buffers instead)."""
        self.store.log_batch(run_id, metrics=[Metric(key, value, step, timestamp)])

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Mapping[str, object] | None = None,
        tags: Mapping[str, object] | None = None,
    ) -> None:
        """Log metrics, params and tags in one transaction."""
        self.store.log_batch(run_id, metrics=metrics, params=params, tags=tags)

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Every point of a metric, by step then time."""
        return self.store.get_metric_history(run_id, key)

    # -- artifacts ------------------------------------------------------------------------------
    def log_artifact(
        self, run_id: str, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> ArtifactInfo:
        """Store a file under ``<artifact_path>/<file name>`` of the run."""
        src = Path(local_path)
        if not src.is_file():
            raise InvalidSpecError(
                f"Cannot log artifact {src}: no such file"
                + (" (it is a directory: use log_artifacts)" if src.is_dir() else "")
                + ".",
                path=str(src),
            )
        dest = _join(artifact_path, src.name)
        self._check_running(run_id)
        ref = self.objects.put_file(src)
        info = ArtifactInfo(dest, ref.digest, ref.size)
        self.store.record_artifacts(run_id, [info])
        return info

    def log_artifacts(
        self, run_id: str, local_dir: str | os.PathLike[str], artifact_path: str | None = None
    ) -> list[ArtifactInfo]:
        """Store every file under a directory, keeping its layout (parallel uploads)."""
        root = Path(local_dir)
        if not root.is_dir():
            raise InvalidSpecError(
                f"Cannot log artifacts from {root}: not a directory.", path=str(root)
            )
        files = sorted(p for p in root.rglob("*") if p.is_file())
        dests = [_join(artifact_path, p.relative_to(root).as_posix()) for p in files]
        self._check_running(run_id)
        refs = self.objects.put_files(files)
        infos = [ArtifactInfo(d, r.digest, r.size) for d, r in zip(dests, refs, strict=True)]
        self.store.record_artifacts(run_id, infos)
        return infos

    def log_bytes(self, run_id: str, data: bytes, artifact_file: str) -> ArtifactInfo:
        """Store bytes as an artifact file."""
        path = v.check_artifact_path(artifact_file)
        self._check_running(run_id)
        ref = self.objects.put_bytes(data)
        info = ArtifactInfo(path, ref.digest, ref.size)
        self.store.record_artifacts(run_id, [info])
        return info

    def log_text(self, run_id: str, text: str, artifact_file: str) -> ArtifactInfo:
        """Store text (UTF-8) as an artifact file."""
        return self.log_bytes(run_id, text.encode(), artifact_file)

    def log_dict(self, run_id: str, data: Mapping[str, Any], artifact_file: str) -> ArtifactInfo:
        """Store a dict as JSON (or YAML for .yaml/.yml files, if PyYAML is installed)."""
        if artifact_file.endswith((".yaml", ".yml")):
            try:
                import yaml
            except ImportError as exc:
                raise InvalidSpecError("Logging YAML needs PyYAML: pip install pyyaml.") from exc
            text = yaml.safe_dump(dict(data), sort_keys=False)
        else:
            text = json.dumps(data, indent=2, default=str)
        return self.log_text(run_id, text, artifact_file)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> ArtifactInfo:
        """Store a matplotlib figure; the format follows the file extension (png, svg, pdf)."""
        if not hasattr(figure, "savefig"):
            raise InvalidSpecError(
                f"log_figure expects a matplotlib Figure, got {type(figure).__name__}."
            )
        fmt = Path(artifact_file).suffix.lstrip(".") or "png"
        buf = io.BytesIO()
        figure.savefig(buf, format=fmt)
        return self.log_bytes(run_id, buf.getvalue(), artifact_file)

    def log_table(self, run_id: str, data: Any, artifact_file: str) -> ArtifactInfo:
        """Store a pandas/polars DataFrame or Arrow table as Parquet."""
        if not artifact_file.endswith(".parquet"):
            raise InvalidSpecError(
                f"log_table writes Parquet: name the file '*.parquet', got {artifact_file!r}."
            )
        import pyarrow.parquet as pq

        from keel._tables import to_arrow

        buf = io.BytesIO()
        pq.write_table(to_arrow(data), buf)
        return self.log_bytes(run_id, buf.getvalue(), artifact_file)

    def list_artifacts(self, run_id: str, path: str = "") -> list[ArtifactInfo]:
        """Files logged to a run under ``path``."""
        return self.store.list_artifacts(run_id, path)

    def download_artifacts(
        self, run_id: str, path: str = "", dst_path: str | os.PathLike[str] | None = None
    ) -> Path:
        """Download a file or folder of a run, verified; returns the local path."""
        infos = self.store.list_artifacts(run_id, path)
        if not infos:
            listing = [a.path for a in self.store.list_artifacts(run_id)]
            from keel.exceptions import did_you_mean

            raise NotFoundError(
                f"Run '{run_id}' has no artifact '{path}'.{did_you_mean(path, listing)} "
                f"See `keel artifacts ls {run_id}`.",
                run_id=run_id,
                path=path,
            )
        dst = Path(dst_path) if dst_path is not None else Path.cwd()
        norm = v.check_artifact_path(path, allow_empty=True)
        if len(infos) == 1 and infos[0].path == norm:
            target = dst / Path(norm).name if dst.is_dir() or dst_path is None else dst
            self.objects.get_file(infos[0].digest, target)
            return target
        base = Path(norm).parent.as_posix() if norm else ""
        pairs = []
        for info in infos:
            rel = info.path[len(base) :].lstrip("/") if base not in ("", ".") else info.path
            pairs.append((info.digest, dst / rel))
        self.objects.get_files(pairs)
        return dst / norm if norm else dst

    def read_artifact(self, run_id: str, path: str) -> bytes:
        """Bytes of one artifact file, verified."""
        norm = v.check_artifact_path(path)
        for info in self.store.list_artifacts(run_id, norm):
            if info.path == norm:
                return self.objects.get_bytes(info.digest)
        raise NotFoundError(
            f"Run '{run_id}' has no artifact file '{path}'.", run_id=run_id, path=path
        )

    def _check_running(self, run_id: str) -> None:
        status = self.store.run_status(run_id)
        if status != RunStatus.RUNNING:
            from keel.exceptions import InvalidStateError

            raise InvalidStateError(
                f"Run '{run_id}' is {status}: artifacts can only be logged while it is "
                "RUNNING. Start a new run instead.",
                run_id=run_id,
                status=str(status),
            )

    # -- search ---------------------------------------------------------------------------------
    def search_runs(
        self,
        experiments: Sequence[str] | str | None = None,
        filter: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        page_token: str | None = None,
        view: str = "active",
        output: OutputFormat = "list",
    ) -> Any:
        """Search runs (grammar: docs/search.md).

        Args:
            experiments: names or ids; ``None`` searches every experiment.
            filter: e.g. ``"metrics.auc > 0.9 and params.model in ('rf', 'gb')"``.
            order_by: e.g. ``["metrics.auc DESC", "start_time"]``.
            max_results: page size.
            page_token: token from a previous page (``runs.next_page_token``).
            view: ``active``, ``deleted`` or ``all``.
            output: ``list`` (a :class:`RunList` of :class:`Run`), ``pandas`` or ``polars``.
        """
        runs, token = self.store.search_runs(
            self._experiment_ids(experiments),
            filter=filter,
            order_by=order_by,
            max_results=max_results,
            page_token=page_token,
            view=view,
        )
        if output == "list":
            return RunList(runs, token)
        from keel._tables import runs_to_frame

        return runs_to_frame(runs, output)

    def compare_runs(self, run_ids: Sequence[str]) -> dict[str, Any]:
        """Params and metrics side by side, with the keys whose values differ."""
        runs = [self.get_run(r) for r in run_ids]
        params = sorted({k for r in runs for k in r.params})
        metrics = sorted({k for r in runs for k in r.metrics})
        return {
            "runs": [r.run_id for r in runs],
            "names": [r.name for r in runs],
            "params": {k: [r.params.get(k) for r in runs] for k in params},
            "metrics": {k: [r.metrics.get(k) for r in runs] for k in metrics},
            "differing_params": [k for k in params if len({r.params.get(k) for r in runs}) > 1],
        }


class RunList(list[Run]):
    """A page of runs; ``next_page_token`` fetches the next page (None at the end)."""

    def __init__(self, runs: Sequence[Run], next_page_token: str | None) -> None:
        super().__init__(runs)
        self.next_page_token = next_page_token


def _join(prefix: str | None, name: str) -> str:
    return v.check_artifact_path(f"{prefix.rstrip('/')}/{name}" if prefix else name)
