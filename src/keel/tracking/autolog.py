"""Automatic logging for scikit-learn: ``keel.autolog()`` then ``model.fit(X, y)``.

Every estimator class's ``fit`` is wrapped. The outermost ``fit`` (a Pipeline,
a search, or a plain estimator) logs its params, training metrics and the
fitted model (skops format, no pickle); fits nested inside it are not logged
again. Without an active run, ``fit`` starts and ends one of its own.
"""

from __future__ import annotations

import functools
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["autolog"]

_patched: dict[type, Callable[..., Any]] = {}
_state = threading.local()
_options: dict[str, Any] = {"log_models": True, "experiment": None}


def autolog(
    *, disable: bool = False, log_models: bool = True, experiment: str | None = None
) -> None:
    """Turn scikit-learn autologging on (or off with ``disable=True``).

    Args:
        disable: restore the original ``fit`` methods.
        log_models: store each fitted model as an artifact ``model/model.skops``.
        experiment: experiment for runs autolog starts itself.
    """
    if disable:
        for cls, original in _patched.items():
            cls.fit = original  # type: ignore[attr-defined]
        _patched.clear()
        return
    _options.update(log_models=log_models, experiment=experiment)
    try:
        from sklearn.utils.discovery import all_estimators
    except ImportError as exc:
        from keel.exceptions import InvalidSpecError

        raise InvalidSpecError("autolog needs scikit-learn: pip install 'keel[sklearn]'.") from exc
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
    from sklearn.pipeline import Pipeline

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        classes = [cls for _, cls in all_estimators()]
    for cls in [*classes, Pipeline, GridSearchCV, RandomizedSearchCV]:
        if "fit" in cls.__dict__ and cls not in _patched:
            _patched[cls] = cls.fit
            cls.fit = _wrap(cls.fit)


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(_state, "depth", 0) > 0:
            return original(self, *args, **kwargs)
        _state.depth = 1
        try:
            return _logged_fit(original, self, args, kwargs)
        finally:
            _state.depth = 0

    return fit


def _logged_fit(
    original: Callable[..., Any], est: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    from keel.entities import RunStatus
    from keel.tracking import fluent

    own = fluent.active_run() is None
    run = (
        fluent.start_run(experiment=_options["experiment"], run_name=type(est).__name__)
        if own
        else fluent.active_run()
    )
    assert run is not None
    try:
        result = original(est, *args, **kwargs)
        _log_fit(run, est, args, kwargs)
    except BaseException as exc:
        if own:
            status = RunStatus.KILLED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
            run.end(status, failure=repr(exc))
        raise
    if own:
        run.end()
    return result


def _flat_params(est: Any) -> dict[str, str]:
    out = {}
    for key, value in est.get_params(deep=True).items():
        if hasattr(value, "get_params"):
            value = type(value).__name__
        text = str(value)
        if len(key) <= 250 and len(text) <= 6000:
            out[key] = text
    return out


def _training_metrics(est: Any, X: Any, y: Any) -> dict[str, float]:
    from sklearn import metrics as skm
    from sklearn.base import is_classifier, is_regressor

    out: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if is_classifier(est):
            pred = est.predict(X)
            out["training_accuracy"] = skm.accuracy_score(y, pred)
            out["training_precision"] = skm.precision_score(
                y, pred, average="weighted", zero_division=0
            )
            out["training_recall"] = skm.recall_score(y, pred, average="weighted", zero_division=0)
            out["training_f1"] = skm.f1_score(y, pred, average="weighted", zero_division=0)
            if hasattr(est, "predict_proba"):
                try:
                    proba = est.predict_proba(X)
                    out["training_log_loss"] = skm.log_loss(y, proba, labels=est.classes_)
                    if proba.shape[1] == 2:
                        out["training_roc_auc"] = skm.roc_auc_score(y, proba[:, 1])
                    else:
                        out["training_roc_auc"] = skm.roc_auc_score(
                            y, proba, multi_class="ovr", labels=est.classes_
                        )
                except (ValueError, AttributeError):
                    pass
        elif is_regressor(est):
            pred = est.predict(X)
            mse = skm.mean_squared_error(y, pred)
            out["training_mse"] = mse
            out["training_rmse"] = mse**0.5
            out["training_mae"] = skm.mean_absolute_error(y, pred)
            out["training_r2"] = skm.r2_score(y, pred)
    if hasattr(est, "best_score_"):
        out["best_cv_score"] = float(est.best_score_)
    return {k: float(v) for k, v in out.items()}


def _log_fit(run: Any, est: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    from keel.exceptions import ParamConflictError

    client, run_id = run.client, run.run_id
    try:
        client.log_params(run_id, _flat_params(est))
    except ParamConflictError:
        warnings.warn(
            "keel.autolog: this run already has params of an earlier fit; not logging this "
            "fit's params. Start one run per fit to keep them apart.",
            stacklevel=4,
        )
    client.set_tags(
        run_id, {"keel.autolog.estimator": f"{type(est).__module__}.{type(est).__name__}"}
    )
    X = args[0] if args else kwargs.get("X")
    y = args[1] if len(args) > 1 else kwargs.get("y")
    if X is not None and y is not None:
        run.log_metrics(_training_metrics(est, X, y))
    if _options["log_models"]:
        try:
            import skops.io as sio
        except ImportError:
            warnings.warn("keel.autolog: install skops to log models.", stacklevel=4)
            return
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.skops"
            sio.dump(est, path)
            client.log_artifact(run_id, path, "model")
