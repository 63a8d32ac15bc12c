"""The ``xgboost`` and ``lightgbm`` flavors: native model files, no pickle."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from keel.exceptions import InvalidSpecError
from keel.models._errors import require
from keel.models._flavors import (
    Flavor,
    LoadOptions,
    Predictor,
    Saved,
    SaveOptions,
    as_array,
    estimator_input,
    versions,
)

if TYPE_CHECKING:
    from keel.models._spec import ModelSpec

__all__ = ["LightGBMFlavor", "XGBoostFlavor"]


def _mro(model: Any) -> list[str]:
    return [f"{c.__module__}.{c.__qualname__}" for c in type(model).__mro__]


# -- xgboost ------------------------------------------------------------------------------
_XGB_FILES = {"xgboost-ubj": "model.ubj", "xgboost-json": "model.json"}
_XGB_SKLEARN = ("XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier", "XGBRFRegressor")


def _xgb_model_type(model: Any) -> str:
    """``Booster`` or the nearest xgboost scikit-learn class in the MRO."""
    for name in _mro(model):
        module, _, cls = name.rpartition(".")
        if module.startswith("xgboost") and cls in (*_XGB_SKLEARN, "Booster"):
            return cls
    raise InvalidSpecError(f"{type(model).__name__} is not an xgboost model keel can save.")


class XGBoostFlavor(Flavor):
    """xgboost Boosters and scikit-learn wrappers in xgboost's UBJ (default) or JSON format."""

    name: ClassVar[str] = "xgboost"
    formats: ClassVar[tuple[str, ...]] = ("xgboost-ubj", "xgboost-json")

    def matches(self, model: Any) -> bool:
        return bool({"xgboost.core.Booster", "xgboost.sklearn.XGBModel"} & set(_mro(model)))

    def save(self, model: Any, directory: Path, options: SaveOptions) -> Saved:
        fmt = self.check_format(options)
        model_type = _xgb_model_type(model)
        model.save_model(str(directory / _XGB_FILES[fmt]))
        xgb = require("xgboost")
        return Saved(
            format=fmt,
            files=[_XGB_FILES[fmt]],
            # the module's version: the distribution may be xgboost or xgboost-cpu
            requirements={"xgboost": str(xgb.__version__)},
            flavor_config={"model_type": model_type},
        )

    def load(self, directory: Path, spec: ModelSpec, options: LoadOptions) -> Predictor:
        xgb = require("xgboost", "to load xgboost models")
        model_type = str(spec.flavor_config.get("model_type", "Booster"))
        if model_type not in (*_XGB_SKLEARN, "Booster"):
            raise InvalidSpecError(f"Unknown xgboost model type {model_type!r} in the spec.")
        model = getattr(xgb, model_type)()
        model.load_model(str(directory / _XGB_FILES[spec.format]))
        return self.wrap(model, spec.flavor_config)

    def wrap(self, raw: Any, flavor_config: Mapping[str, Any]) -> Predictor:
        if _xgb_model_type(raw) != "Booster":
            proba = getattr(raw, "predict_proba", None)
            return Predictor(
                raw,
                lambda X: raw.predict(estimator_input(raw, X)),
                (lambda X: proba(estimator_input(raw, X))) if proba is not None else None,
            )
        xgb = require("xgboost")

        def dmatrix(X: Any) -> Any:
            names = raw.feature_names
            if names is None:
                return xgb.DMatrix(as_array(X))
            if type(X).__module__.startswith("pandas"):
                return xgb.DMatrix(X)
            return xgb.DMatrix(as_array(X), feature_names=names)

        return Predictor(raw, lambda X: raw.predict(dmatrix(X)))


# -- lightgbm -----------------------------------------------------------------------------
_LGB_FILE = "model.txt"
_LGB_SKLEARN = ("LGBMClassifier", "LGBMRegressor", "LGBMRanker")


def _lgb_model_type(model: Any) -> str:
    for name in _mro(model):
        module, _, cls = name.rpartition(".")
        if module.startswith("lightgbm") and cls in (*_LGB_SKLEARN, "Booster"):
            return cls
    raise InvalidSpecError(f"{type(model).__name__} is not a lightgbm model keel can save.")


def _json_labels(classes: Any) -> list[Any]:
    return [c.item() if hasattr(c, "item") else c for c in classes]


class LightGBMFlavor(Flavor):
    """lightgbm Boosters and scikit-learn wrappers in lightgbm's text format.

    A scikit-learn wrapper loads back as its Booster (``LoadedModel.raw``) with the
    classes recorded in the spec, so ``predict`` returns the original labels and
    classifiers keep ``predict_proba``.
    """

    name: ClassVar[str] = "lightgbm"
    formats: ClassVar[tuple[str, ...]] = ("lightgbm-txt",)

    def matches(self, model: Any) -> bool:
        return bool({"lightgbm.basic.Booster", "lightgbm.sklearn.LGBMModel"} & set(_mro(model)))

    def save(self, model: Any, directory: Path, options: SaveOptions) -> Saved:
        fmt = self.check_format(options)
        model_type = _lgb_model_type(model)
        booster = model if model_type == "Booster" else model.booster_
        booster.save_model(str(directory / _LGB_FILE))
        config: dict[str, Any] = {"model_type": model_type}
        if model_type == "LGBMClassifier":
            config["classes"] = _json_labels(model.classes_)
            config["objective"] = str(model.objective_)
        return Saved(
            format=fmt,
            files=[_LGB_FILE],
            requirements=versions("lightgbm"),
            flavor_config=config,
        )

    def load(self, directory: Path, spec: ModelSpec, options: LoadOptions) -> Predictor:
        lgb = require("lightgbm", "to load lightgbm models")
        booster = lgb.Booster(model_file=str(directory / _LGB_FILE))
        return self.wrap(booster, spec.flavor_config)

    def wrap(self, raw: Any, flavor_config: Mapping[str, Any]) -> Predictor:
        booster = raw if _lgb_model_type(raw) == "Booster" else raw.booster_
        if flavor_config.get("model_type") != "LGBMClassifier":
            return Predictor(booster, booster.predict)
        np = require("numpy")
        classes = np.asarray(flavor_config["classes"])

        def proba(X: Any) -> Any:
            p = booster.predict(X)
            return np.column_stack([1.0 - p, p]) if p.ndim == 1 else p

        return Predictor(booster, lambda X: classes[np.argmax(proba(X), axis=1)], proba)
