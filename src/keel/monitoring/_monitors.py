"""Monitors: a deployment (or a dataset) + a reference + a schedule + tests + actions.

:meth:`Monitors.evaluate` runs one check: it reads the deployment's prediction log
over the window (inputs, predictions, latency, status) and the feedback joined by
request id, compares the inputs and predictions with the stored reference (never
re-reading the reference data), computes performance and operational health, stores
the JSON and HTML reports as blobs, raises alerts (deduplicated, with a cooldown)
and, when configured, fires the retraining trigger (:mod:`keel.monitoring._retrain`).
``keel agent`` calls it for every due monitor.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keel.exceptions import InvalidSpecError, InvalidStateError, NotFoundError
from keel.store.base import now_ms

if TYPE_CHECKING:
    import pandas as pd

    from keel.store._monitor import MonitorRecord, MonitorRunRecord, SqlMonitors
    from keel.tracking.client import Client

__all__ = ["AlertSpec", "MonitorSpec", "Monitors", "RetrainSpec"]

_log = logging.getLogger("keel.monitoring")
SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class AlertSpec:
    """Where alerts go and how often.

    Attributes:
        targets: ``log``, webhook URLs (Slack-compatible JSON) and ``mailto:ADDR?smtp=HOST:PORT``.
        cooldown_seconds: an alert with the same monitor, kind and target is not raised
            again within this time (deduplication).
        severity: of drift alerts; performance breaches are ``critical``.
    """

    targets: tuple[str, ...] = ("log",)
    cooldown_seconds: float = 3600.0
    severity: str = "warning"

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))
        if self.severity not in SEVERITIES:
            raise InvalidSpecError(f"severity must be one of {SEVERITIES}, got {self.severity!r}.")
        for target in self.targets:
            if not (target == "log" or target.startswith(("http://", "https://", "mailto:"))):
                raise InvalidSpecError(
                    f"Alert target {target!r} is not 'log', an http(s):// webhook or mailto:."
                )


@dataclass(frozen=True)
class RetrainSpec:
    """The retraining trigger and its evaluation gate.

    Attributes:
        entry_point: ``module:function`` called with a :class:`RetrainContext`; it trains on
            fresh data and returns the fitted model (any keel flavor).
        model: the registered model name the candidate is registered under.
        gate_dataset: held-out table (``NAME@V`` or ``NAME`` for the latest) both models
            are scored on.
        label: its label column.
        metric: ``accuracy``, ``f1``, ``roc_auc`` (higher is better) or ``mae``, ``rmse``.
        margin: how much the candidate must beat the champion by.
        slices: columns whose every value must not regress by more than ``slice_tolerance``.
        canary_steps, canary_step_seconds, guards: how a passing candidate is rolled out.
        cooldown_seconds: least time between two retrainings of this monitor.
    """

    entry_point: str
    model: str
    gate_dataset: str
    label: str
    metric: str = "roc_auc"
    margin: float = 0.0
    slices: tuple[str, ...] = ()
    slice_tolerance: float = 0.02
    canary_steps: tuple[float, ...] = (0.1, 0.5, 1.0)
    canary_step_seconds: float = 60.0
    guards: dict[str, Any] = field(default_factory=dict)
    cooldown_seconds: float = 3600.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "slices", tuple(self.slices))
        object.__setattr__(self, "canary_steps", tuple(float(s) for s in self.canary_steps))
        if ":" not in self.entry_point:
            raise InvalidSpecError(
                f"entry_point must be 'module:function', got {self.entry_point!r}."
            )
        if self.metric not in ("accuracy", "f1", "roc_auc", "mae", "rmse"):
            raise InvalidSpecError(
                f"metric must be accuracy, f1, roc_auc, mae or rmse, got {self.metric!r}."
            )


@dataclass(frozen=True)
class MonitorSpec:
    """What a monitor watches and does (stored as JSON).

    Attributes:
        reference_digest: the stored reference profile (a blob).
        deployment: the deployment whose prediction log is checked, or
        dataset: a dataset whose every new version is checked (exactly one of the two).
        every_seconds: how often the agent runs it.
        window_seconds: how much of the prediction log each run reads.
        min_rows: fewer rows in the window is "insufficient data" (never an alarm).
        tests, thresholds: per-column overrides passed to :func:`keel.monitoring.check`.
        columns: the columns to compare (default: the reference's).
        performance_metric, performance_min: alert when the metric over labelled
            predictions in the window falls below this.
        alert: where alerts go; retrain: the trigger (None: alert only).
    """

    reference_digest: str
    deployment: str | None = None
    dataset: str | None = None
    every_seconds: float = 3600.0
    window_seconds: float = 3600.0
    min_rows: int = 200
    tests: dict[str, str] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    columns: tuple[str, ...] | None = None
    prediction_column: str | None = "prediction"
    performance_metric: str | None = None
    performance_min: float | None = None
    alert: AlertSpec = field(default_factory=AlertSpec)
    retrain: RetrainSpec | None = None

    def __post_init__(self) -> None:
        if (self.deployment is None) == (self.dataset is None):
            raise InvalidSpecError("A monitor watches either a deployment or a dataset.")
        if self.dataset is not None and self.retrain is not None:
            raise InvalidSpecError(
                "Retraining needs a deployment to roll the new model out to; a dataset "
                "monitor can only alert."
            )
        if self.every_seconds <= 0 or self.window_seconds <= 0:
            raise InvalidSpecError("every_seconds and window_seconds must be > 0.")
        if self.min_rows < 1:
            raise InvalidSpecError("min_rows must be >= 1.")
        if (self.performance_metric is None) != (self.performance_min is None):
            raise InvalidSpecError("Set both performance_metric and performance_min, or neither.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MonitorSpec:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        values["alert"] = AlertSpec(**values.get("alert", {}))
        if values.get("retrain"):
            values["retrain"] = RetrainSpec(**values["retrain"])
        if values.get("columns") is not None:
            values["columns"] = tuple(values["columns"])
        return cls(**values)


# -- the prediction log as a table --------------------------------------------------------------
def window_frame(rows: Sequence[Mapping[str, Any]], prediction_column: str | None) -> pd.DataFrame:
    """The logged inputs of ``rows`` as one DataFrame (+ the prediction, request id, time)."""
    import pandas as pd

    frames: dict[tuple[str, ...], dict[str, list[Any]]] = {}
    for row in rows:
        if row.get("status") == "error" or not row.get("inputs"):
            continue
        inputs = json.loads(row["inputs"])
        outputs = json.loads(row["outputs"]) if row.get("outputs") else None
        if "rows" in inputs:
            fields = tuple(inputs["fields"])
            values = inputs["rows"]
            n = len(values)
            cols = list(zip(*values, strict=True)) if values else [() for _ in fields]
        else:
            fields = tuple(inputs["columns"])
            cols = [inputs["columns"][f] for f in fields]
            n = len(cols[0]) if cols else 0
        bucket = frames.setdefault(
            fields, {f: [] for f in (*fields, "__request_id", "__ts", "__prediction")}
        )
        for f, col in zip(fields, cols, strict=True):
            bucket[f].extend(col)
        bucket["__request_id"].extend([row["request_id"]] * n)
        bucket["__ts"].extend([row["ts"]] * n)
        preds: list[Any] = [None] * n
        if (
            isinstance(outputs, list)
            and len(outputs) == n
            and not any(isinstance(o, list | dict) for o in outputs)
        ):
            preds = outputs
        bucket["__prediction"].extend(preds)
    if not frames:
        return pd.DataFrame()
    df = pd.concat([pd.DataFrame(b) for b in frames.values()], ignore_index=True)
    if prediction_column and df["__prediction"].notna().any():
        df[prediction_column] = df["__prediction"]
    return df.drop(columns="__prediction")


def _health(rows: Sequence[Mapping[str, Any]], window_seconds: float) -> dict[str, Any]:
    served = [r for r in rows if r.get("role") != "shadow"]
    lat = sorted(float(r["latency_ms"]) for r in served if r.get("status") == "ok")
    failed = sum(1 for r in served if r.get("status") in ("error", "fallback"))

    def q(p: float) -> float | None:
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None

    return {
        "requests": len(served),
        "throughput_rps": len(served) / window_seconds,
        "error_rate": failed / len(served) if served else 0.0,
        "p50_ms": q(0.5),
        "p99_ms": q(0.99),
    }


class Monitors:
    """Monitor operations on one client's stores."""

    def __init__(self, client: Client | None = None) -> None:
        if client is None:
            from keel.tracking.fluent import get_client

            client = get_client()
        self.client = client

    @property
    def _store(self) -> SqlMonitors:
        monitors = getattr(self.client.store, "monitors", None)
        if monitors is None:
            raise InvalidStateError(
                "Monitors need direct access to the metadata store (SQLite or PostgreSQL): "
                "unset KEEL_TRACKING_URI and set KEEL_STORE_URI."
            )
        return monitors  # type: ignore[no-any-return]

    @property
    def actor(self) -> str:
        """Who is acting."""
        return self.client.settings.user

    # -- creating --------------------------------------------------------------------------------
    def _reference_frame(self, source: Any) -> Any:
        """A DataFrame from data, ``NAME@V``/``dataset:NAME@V`` or ``run:ID``."""
        if isinstance(source, str):
            uri = source
            if uri.startswith("run:"):
                from keel.registry import Registry

                lineage = Registry(self.client).lineage(uri, "up", 2)
                datasets = lineage.of_kind("dataset")
                if not datasets:
                    raise NotFoundError(
                        f"{uri} read no dataset version, so it has no training data to use as "
                        "the reference. Pass the data or a dataset version (NAME@V) instead."
                    )
                uri = datasets[0]
            uri = uri.removeprefix("dataset:")
            if "@" in uri or not uri.endswith((".parquet", ".pq")):
                import keel.data

                return keel.data.get_table(uri).to_pandas()
            import pyarrow.parquet as pq

            return pq.read_table(uri).to_pandas()
        if hasattr(source, "to_pandas") and not hasattr(source, "iloc"):
            return source.to_pandas()
        return source

    def create(
        self,
        name: str,
        *,
        deployment: str | None = None,
        dataset: str | None = None,
        reference: Any,
        columns: Sequence[str] | None = None,
        every_seconds: float = 3600.0,
        window_seconds: float = 3600.0,
        min_rows: int = 200,
        tests: Mapping[str, str] | None = None,
        thresholds: Mapping[str, Any] | None = None,
        prediction_drift: bool = True,
        performance_metric: str | None = None,
        performance_min: float | None = None,
        alert: AlertSpec | Mapping[str, Any] | None = None,
        retrain: RetrainSpec | Mapping[str, Any] | None = None,
        reason: str | None = None,
        replace: bool = False,
    ) -> MonitorRecord:
        """Create a monitor of ``deployment`` (or of ``dataset``'s new versions); the
        reference is profiled now and stored.

        ``reference``: a DataFrame/Arrow table/Parquet path, ``NAME@V`` (a dataset version)
        or ``run:ID`` (the dataset version the run trained on). Columns default to the
        deployment's model inputs found in the reference; with ``prediction_drift`` the
        deployed model's predictions on the reference are profiled too. ``replace``
        overwrites an existing monitor of that name (audited as an update).
        """
        from keel import monitoring
        from keel.serving import Deployments

        if (deployment is None) == (dataset is None):
            raise InvalidSpecError("Give a monitor a deployment or a dataset to watch.")
        frame = self._reference_frame(reference)
        if dataset is not None:
            import keel.data

            keel.data.versions(dataset, client=self.client)  # it exists
            ref = monitoring.reference(frame, name=name, columns=columns)
            blob = self.client.objects.put_bytes(json.dumps(ref.to_dict()).encode())
            spec = MonitorSpec(
                reference_digest=blob.digest, dataset=dataset, every_seconds=every_seconds,
                window_seconds=window_seconds, min_rows=min_rows, tests=dict(tests or {}),
                thresholds=dict(thresholds or {}),
                columns=tuple(columns) if columns else None, prediction_column=None,
                alert=alert if isinstance(alert, AlertSpec) else AlertSpec(**(alert or {})),
            )  # fmt: skip
            return self._save(name, spec, reason, replace)
        assert deployment is not None
        dep = Deployments(self.client).get(deployment)
        from keel.registry import Registry

        model = Registry(self.client).load(f"models:/{dep.policy.primary}")
        inputs = model.signature.input_names if model.signature else list(frame.columns)
        cols = list(columns) if columns else [c for c in inputs if c in frame.columns]
        if not cols:
            raise InvalidSpecError(
                f"The reference has none of the model's input columns ({inputs[:8]}...): pass "
                "the features the deployment receives (or columns=...)."
            )
        ref_frame = frame[cols].copy()
        pred_col = "prediction" if prediction_drift else None
        if pred_col:
            try:
                preds = model.predict(frame, coerce=True)
                ref_frame[pred_col] = list(getattr(preds, "tolist", lambda: preds)())
            except Exception as exc:  # the reference lacks some inputs: no prediction drift
                _log.warning("no prediction drift for %s: the model failed on it (%s)", name, exc)
                pred_col = None
        ref = monitoring.reference(ref_frame, name=name)
        blob = self.client.objects.put_bytes(json.dumps(ref.to_dict()).encode())
        spec = MonitorSpec(
            deployment=deployment,
            reference_digest=blob.digest,
            every_seconds=every_seconds,
            window_seconds=window_seconds,
            min_rows=min_rows,
            tests=dict(tests or {}),
            thresholds=dict(thresholds or {}),
            columns=tuple(cols),
            prediction_column=pred_col,
            performance_metric=performance_metric,
            performance_min=performance_min,
            alert=alert if isinstance(alert, AlertSpec) else AlertSpec(**(alert or {})),
            retrain=(
                retrain
                if isinstance(retrain, RetrainSpec) or retrain is None
                else RetrainSpec(**retrain)
            ),
        )
        return self._save(name, spec, reason, replace)

    def _save(
        self, name: str, spec: MonitorSpec, reason: str | None, replace: bool
    ) -> MonitorRecord:
        if replace:
            from keel.exceptions import AlreadyExistsError

            try:
                return self._store.create(name, spec.to_dict(), actor=self.actor, reason=reason)
            except AlreadyExistsError:
                return self._store.update(
                    name, actor=self.actor, spec=spec.to_dict(), enabled=True, reason=reason
                )
        return self._store.create(name, spec.to_dict(), actor=self.actor, reason=reason)

    def get(self, name: str) -> MonitorRecord:
        """A monitor as stored."""
        return self._store.get(name)

    def list_monitors(self) -> list[MonitorRecord]:
        """Every monitor."""
        return self._store.list_all()

    def pause(self, name: str, *, reason: str | None = None) -> MonitorRecord:
        """Stop running a monitor."""
        return self._store.update(name, actor=self.actor, enabled=False, reason=reason)

    def resume(self, name: str, *, reason: str | None = None) -> MonitorRecord:
        """Run a paused monitor again (at once)."""
        return self._store.update(name, actor=self.actor, enabled=True, reason=reason)

    def runs(self, name: str, *, limit: int = 50) -> list[MonitorRunRecord]:
        """The latest evaluations, newest first."""
        return self._store.runs(name, limit=limit)

    def report(self, name: str, *, html: bool = False, run: int | None = None) -> bytes:
        """The stored JSON (or HTML) report of a monitor's latest (or given) run."""
        runs = self._store.runs(name, limit=1000 if run else 1)
        chosen = next((r for r in runs if run is None or r.id == run), None)
        digest = None if chosen is None else (chosen.html_digest if html else chosen.report_digest)
        if digest is None:
            raise NotFoundError(f"Monitor '{name}' has no stored report yet.", name=name)
        return self.client.objects.get_bytes(digest)

    # -- evaluating ------------------------------------------------------------------------------
    def evaluate(
        self, name: str, *, agent: str = "manual", now: int | None = None
    ) -> MonitorRunRecord:
        """Run one check of a monitor now (the agent calls this for due monitors)."""
        from keel import monitoring
        from keel.serving._deploy import Deployments
        from keel.serving._log import read_predictions

        started = now_ms() if now is None else now
        record = self._store.get(name)
        spec = MonitorSpec.from_dict(record.spec)
        if spec.dataset is not None:
            return self._evaluate_dataset(name, spec, agent, started)
        assert spec.deployment is not None
        deps = Deployments(self.client)
        # a monitor never reads traffic from before it was (re)configured: a new reference
        # or new tests must not be judged on what the old ones already saw
        since = max(started - int(spec.window_seconds * 1000), record.updated_at)
        rows = read_predictions(
            self.client.settings, deps._store, spec.deployment, since=since, until=started + 1
        )
        rows = [r for r in rows if r.get("role") != "shadow"]
        health = _health(rows, spec.window_seconds)
        current = window_frame(rows, spec.prediction_column)
        ref = monitoring.Reference.from_dict(
            json.loads(self.client.objects.get_bytes(spec.reference_digest))
        )
        report = monitoring.check(
            ref,
            current.drop(columns=[c for c in ("__request_id", "__ts") if c in current]),
            tests=spec.tests or None,
            thresholds=spec.thresholds or None,
            prediction_column=spec.prediction_column if spec.prediction_column in current else None,
            min_rows=spec.min_rows,
        )
        performance = self._performance(rows, current, spec)
        drifted_cols = [c for c, r in _column_items(report) if _col_drifted(r)]
        status = "insufficient" if report.insufficient else ("drift" if report.drifted else "ok")
        breach = (
            spec.performance_min is not None
            and performance.get("value") is not None
            and performance["value"] < spec.performance_min
        )
        summary: dict[str, Any] = {
            "rows": len(current),
            "window": [since, started],
            "share_drifted": report.share_drifted,
            "drifted_columns": drifted_cols,
            "insufficient": report.insufficient,
            "schema_issues": _jsonable(report.schema_issues),
            "performance": performance,
            "health": health,
        }
        report_blob = self.client.objects.put_bytes(report.to_json().encode())
        html_blob = self.client.objects.put_bytes(_html(report).encode())
        alerts_raised = []
        if status == "drift":
            alerts_raised += self._alert(
                name, spec, "drift", spec.alert.severity,
                f"Data drift on deployment '{spec.deployment}': {len(drifted_cols)} of "
                f"{len(list(_column_items(report)))} columns drifted "
                f"({', '.join(drifted_cols[:6])}{'…' if len(drifted_cols) > 6 else ''})",
                {"share_drifted": report.share_drifted, "drifted": ", ".join(drifted_cols),
                 "rows": len(current), "report_blob": html_blob.digest},
            )  # fmt: skip
        if breach:
            status = "degraded" if status != "drift" else status
            alerts_raised += self._alert(
                name, spec, "performance", "critical",
                f"{spec.performance_metric} of deployment '{spec.deployment}' fell to "
                f"{performance['value']:.3f} (minimum {spec.performance_min})",
                {"metric": spec.performance_metric, "value": performance["value"],
                 "labelled_rows": performance.get("labelled")},
            )  # fmt: skip
        summary["alerts"] = alerts_raised
        if spec.retrain is not None and (status == "drift" or breach):
            summary["retrain"] = self._maybe_retrain(name, spec, started, status)
        run = self._store.add_run(
            name,
            started_at=started,
            status=status,
            agent=agent,
            summary=summary,
            report_digest=report_blob.digest,
            html_digest=html_blob.digest,
        )
        from keel.monitoring._metrics import record_run

        record_run(name, spec.deployment, status, summary, report)
        return run

    def _evaluate_dataset(
        self, name: str, spec: MonitorSpec, agent: str, started: int
    ) -> MonitorRunRecord:
        """Check the dataset's newest version against the reference (once per version)."""
        import keel.data
        from keel import monitoring
        from keel.monitoring._metrics import record_run

        assert spec.dataset is not None
        latest = keel.data.versions(spec.dataset, client=self.client)[-1]
        previous = self._store.runs(name, limit=1)
        if previous and previous[0].summary.get("dataset_version") == latest.uri:
            return self._store.add_run(
                name, started_at=started, status="unchanged", agent=agent,
                summary={"dataset_version": latest.uri, "rows": 0},
            )  # fmt: skip
        ref = monitoring.Reference.from_dict(
            json.loads(self.client.objects.get_bytes(spec.reference_digest))
        )
        current = keel.data.table_path(latest.uri, client=self.client)
        report = monitoring.check(
            ref, str(current), tests=spec.tests or None, thresholds=spec.thresholds or None,
            columns=list(spec.columns) if spec.columns else None, min_rows=spec.min_rows,
        )  # fmt: skip
        drifted_cols = [c for c, r in _column_items(report) if _col_drifted(r)]
        status = "insufficient" if report.insufficient else ("drift" if report.drifted else "ok")
        summary: dict[str, Any] = {
            "dataset_version": latest.uri,
            "rows": report.rows_current,
            "share_drifted": report.share_drifted,
            "drifted_columns": drifted_cols,
            "insufficient": report.insufficient,
            "schema_issues": _jsonable(report.schema_issues),
        }
        report_blob = self.client.objects.put_bytes(report.to_json().encode())
        html_blob = self.client.objects.put_bytes(_html(report).encode())
        summary["alerts"] = (
            self._alert(
                name,
                spec,
                "drift",
                spec.alert.severity,
                f"Data drift in dataset {latest.uri}: {len(drifted_cols)} of "
                f"{len(report.columns)} columns drifted ({', '.join(drifted_cols[:6])})",
                {
                    "share_drifted": report.share_drifted,
                    "drifted": ", ".join(drifted_cols),
                    "rows": report.rows_current,
                    "report_blob": html_blob.digest,
                },
            )
            if status == "drift"
            else []
        )
        run = self._store.add_run(
            name, started_at=started, status=status, agent=agent, summary=summary,
            report_digest=report_blob.digest, html_digest=html_blob.digest,
        )  # fmt: skip
        record_run(name, spec.dataset, status, summary, report)
        return run

    def _performance(
        self, rows: Sequence[Mapping[str, Any]], current: Any, spec: MonitorSpec
    ) -> dict[str, Any]:
        from keel import monitoring
        from keel.serving._deploy import Deployments

        if not rows or "__request_id" not in getattr(current, "columns", ()):
            return {}
        feedback = Deployments(self.client)._store.feedback([r["request_id"] for r in rows])
        y_true, y_pred = [], []
        for row in rows:
            fb = feedback.get(row["request_id"])
            if (
                not fb
                or fb.get("labels") is None
                or row.get("status") != "ok"
                or not row.get("outputs")
            ):
                continue
            outputs = json.loads(row["outputs"])
            for got, want in zip(outputs, fb["labels"], strict=False):
                if isinstance(got, list | dict):
                    continue
                y_pred.append(got)
                y_true.append(want)
        if not y_true:
            return {"labelled": 0}
        metrics = monitoring.classification_metrics(y_true, y_pred)
        out: dict[str, Any] = {"labelled": len(y_true), **_jsonable(metrics)}
        if spec.performance_metric:
            value = out.get(spec.performance_metric)
            out["value"] = float(value) if isinstance(value, int | float) else None
        return out

    def _alert(
        self,
        name: str,
        spec: MonitorSpec,
        kind: str,
        severity: str,
        title: str,
        details: dict[str, Any],
    ) -> list[int]:
        raised = []
        for target in spec.alert.targets:
            alert = self._store.raise_alert(
                name,
                dedupe_key=f"{name}:{kind}:{target}",
                severity=severity,
                title=title,
                payload={"kind": kind, "target": target,
                         "deployment": spec.deployment, "dataset": spec.dataset,
                         "details": details},
                cooldown_ms=int(spec.alert.cooldown_seconds * 1000),
            )  # fmt: skip
            if alert is not None:
                raised.append(alert.id)
        return raised

    def _maybe_retrain(self, name: str, spec: MonitorSpec, now: int, why: str) -> dict[str, Any]:
        assert spec.retrain is not None
        configured = self._store.get(name).updated_at
        for run in self._store.runs(name, limit=200):
            if run.started_at < configured:
                break  # runs before the monitor was (re)configured do not count
            started = (run.summary.get("retrain") or {}).get("started_at")
            if started and now - int(started) < spec.retrain.cooldown_seconds * 1000:
                return {"skipped": f"a retraining ran {(now - int(started)) / 1000:.0f} s ago"}
        from keel.monitoring._retrain import retrain

        try:
            return retrain(self.client, name, spec, reason=why)
        except Exception as exc:
            _log.exception("retraining for monitor %s failed", name)
            return {"started_at": now, "error": f"{type(exc).__name__}: {exc}"}


def _column_items(report: Any) -> list[tuple[str, Any]]:
    cols = report.columns
    if isinstance(cols, Mapping):
        return list(cols.items())
    return [(getattr(c, "name", str(i)), c) for i, c in enumerate(cols)]


def _col_drifted(result: Any) -> bool:
    if isinstance(result, Mapping):
        return bool(result.get("drifted"))
    return bool(getattr(result, "drifted", False))


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


def _html(report: Any) -> str:
    html: str = report.to_html()
    return html
