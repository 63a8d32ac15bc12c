"""The retraining trigger and its evaluation gate.

When a monitor finds drift (or a performance breach) and has a :class:`RetrainSpec`,
:func:`retrain` runs the registered entry point (``module:function``) as a tracked
run on fresh data, then the gate: the candidate must beat the champion (the version
the deployment serves) on a held-out dataset by ``margin`` and must not regress on any
slice by more than ``slice_tolerance``. Only then is it registered and rolled out as a
canary, whose guards promote or roll it back (docs/serving.md). Every step is linked
in lineage (monitor -> run, dataset -> run, run -> model version -> deployment) and
audited (``retrain.passed`` / ``retrain.rejected``, the registration, the canary).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from keel.exceptions import InvalidSpecError
from keel.store.base import now_ms

if TYPE_CHECKING:
    import pandas as pd

    from keel.monitoring._monitors import MonitorSpec
    from keel.tracking.client import Client

__all__ = ["RetrainContext", "evaluate_metric", "retrain"]

_log = logging.getLogger("keel.monitoring")
_LOWER_IS_BETTER = {"mae", "rmse"}


@dataclass(frozen=True)
class RetrainContext:
    """What a retraining entry point receives.

    Attributes:
        monitor: the monitor that fired.
        deployment: the deployment it watches.
        model: the registered model name the candidate will be registered under.
        champion: the version serving now (``name/version``).
        reason: why (``drift`` or ``degraded``).
        run_id: the tracked run the training happens in (log params and metrics freely).
    """

    monitor: str
    deployment: str
    model: str
    champion: str
    reason: str
    run_id: str


def _entry_point(spec: str) -> Callable[[RetrainContext], Any]:
    module, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidSpecError(
            f"Cannot import the retraining entry point {spec!r}: {exc}. It must be an "
            "importable 'module:function' where the agent runs.",
            entry_point=spec,
        ) from exc
    if not callable(fn):
        raise InvalidSpecError(f"The retraining entry point {spec!r} is not callable.")
    return fn  # type: ignore[no-any-return]


def evaluate_metric(model: Any, X: pd.DataFrame, y: np.ndarray[Any, Any], metric: str) -> float:
    """``metric`` of a loaded keel model on ``X``/``y`` (ROC AUC from class-1 probabilities)."""
    from sklearn import metrics as skm

    if metric == "roc_auc":
        proba = np.asarray(model.predict_proba(X, coerce=True))
        return float(skm.roc_auc_score(y, proba[:, 1] if proba.ndim == 2 else proba))
    pred = np.asarray(model.predict(X, coerce=True))
    if metric == "accuracy":
        return float(skm.accuracy_score(y, pred))
    if metric == "f1":
        return float(skm.f1_score(y, pred))
    if metric == "mae":
        return float(skm.mean_absolute_error(y, pred))
    return float(np.sqrt(skm.mean_squared_error(y, pred)))


def _better(a: float, b: float, metric: str, margin: float) -> bool:
    """Is ``a`` better than ``b`` by at least ``margin``?"""
    return a <= b - margin if metric in _LOWER_IS_BETTER else a >= b + margin


def _gate(candidate: Any, champion: Any, data: pd.DataFrame, label: str, r: Any) -> dict[str, Any]:
    X, y = data.drop(columns=[label]), data[label].to_numpy()
    cand = evaluate_metric(candidate, X, y, r.metric)
    champ = evaluate_metric(champion, X, y, r.metric)
    out: dict[str, Any] = {
        "metric": r.metric,
        "candidate": cand,
        "champion": champ,
        "margin": r.margin,
        "rows": len(data),
        "slices": [],
    }
    passed = _better(cand, champ, r.metric, r.margin)
    reasons = [] if passed else [f"{r.metric} {cand:.4f} does not beat {champ:.4f} by {r.margin}"]
    for column in r.slices:
        if column not in data.columns:
            raise InvalidSpecError(f"Gate slice column {column!r} is not in the gate dataset.")
        for value, part in data.groupby(column, observed=True):
            if len(part) < 30 or part[label].nunique() < 2:
                continue  # too small to judge
            xs, ys = part.drop(columns=[label]), part[label].to_numpy()
            c, h = (
                evaluate_metric(candidate, xs, ys, r.metric),
                evaluate_metric(champion, xs, ys, r.metric),
            )
            regressed = not _better(c, h, r.metric, -r.slice_tolerance)
            out["slices"].append(
                {"column": column, "value": str(value), "candidate": c, "champion": h,
                 "rows": len(part), "regressed": regressed}
            )  # fmt: skip
            if regressed:
                passed = False
                reasons.append(f"slice {column}={value}: {c:.4f} vs champion {h:.4f}")
    out["passed"] = passed
    out["reasons"] = reasons
    return out


def retrain(client: Client, monitor: str, spec: MonitorSpec, *, reason: str) -> dict[str, Any]:
    """Train a candidate, gate it against the champion, and canary it if it passes."""
    import keel
    import keel.data
    from keel.registry import Registry
    from keel.serving import Deployments, Guards

    r = spec.retrain
    assert r is not None
    started = now_ms()
    deployments = Deployments(client)
    if spec.deployment is None:  # pragma: no cover - MonitorSpec refuses it
        raise InvalidSpecError("Retraining needs a deployment.")
    deployment = spec.deployment
    dep = deployments.get(deployment)
    if dep.policy.kind not in ("single", "bluegreen"):  # an experiment is already running
        return {"started_at": started, "skipped": f"a {dep.policy.kind} is already running"}
    champion_ref = dep.policy.primary
    fn = _entry_point(r.entry_point)
    registry = Registry(client)
    monitors = client.store.monitors  # type: ignore[attr-defined]
    # the held-out table is read outside the run: it is evaluation data, not training data,
    # and is linked to the run as such (evaluated_on) instead of as an input
    holdout_version = keel.data.get_version(r.gate_dataset, client=client)
    holdout = keel.data.get_table(holdout_version.uri, client=client).to_pandas()
    if r.label not in holdout.columns:
        raise InvalidSpecError(
            f"The gate dataset {holdout_version.uri} has no label column {r.label!r}."
        )
    with keel.start_run(experiment=f"retrain-{r.model}", run_name=f"retrain by {monitor}") as run:
        keel.set_tags(
            {"keel.trigger": f"monitor:{monitor}", "keel.reason": reason,
             "keel.champion": champion_ref}
        )  # fmt: skip
        context = RetrainContext(
            monitor=monitor,
            deployment=deployment,
            model=r.model,
            champion=champion_ref,
            reason=reason,
            run_id=run.run_id,
        )
        model = fn(context)
        example = holdout.drop(columns=[r.label]).head(5)
        keel.log_model(model, "model", input_example=example)
        candidate = registry.load(f"runs:/{run.run_id}/model")
        champion = registry.load(f"models:/{champion_ref}")
        verdict = _gate(candidate, champion, holdout, r.label, r)
        keel.log_metrics(
            {
                f"gate_candidate_{r.metric}": verdict["candidate"],
                f"gate_champion_{r.metric}": verdict["champion"],
                "gate_passed": float(verdict["passed"]),
            }
        )
    registry.add_lineage(f"monitor:{monitor}", f"run:{run.run_id}", "triggered")
    registry.add_lineage(holdout_version.node, f"run:{run.run_id}", "evaluated_on")
    result: dict[str, Any] = {"started_at": started, "run_id": run.run_id, "gate": verdict}
    summary = (
        f"{r.metric}: candidate {verdict['candidate']:.4f} vs champion {champion_ref} "
        f"{verdict['champion']:.4f} on {holdout_version.uri} ({verdict['rows']} rows)"
    )
    if not verdict["passed"]:
        monitors.record_event(
            "retrain.rejected", f"run:{run.run_id}", actor=client.settings.user,
            reason=f"{summary}; " + "; ".join(verdict["reasons"]), after=verdict,
        )  # fmt: skip
        _log.warning("retrained candidate rejected by the gate: %s", summary)
        return result
    monitors.record_event(
        "retrain.passed", f"run:{run.run_id}", actor=client.settings.user, reason=summary,
        after=verdict,
    )  # fmt: skip
    mv = registry.register_model(
        f"runs:/{run.run_id}/model",
        r.model,
        description=f"retrained by monitor {monitor} ({reason}); gate: {summary}",
    )
    deployments.canary(
        deployment,
        f"models:/{mv.name}/{mv.version}",
        steps=r.canary_steps,
        step_seconds=r.canary_step_seconds,
        guards=Guards(**r.guards),
        reason=f"retrained by monitor {monitor} after {reason}; gate passed ({summary})",
    )
    result.update(version=mv.version, canary=True)
    return result
