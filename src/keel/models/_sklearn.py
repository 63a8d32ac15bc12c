"""The ``sklearn`` flavor: any scikit-learn estimator or Pipeline, saved with skops (no pickle)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from keel.exceptions import InvalidSpecError
from keel.models._errors import UntrustedModelError, require
from keel.models._flavors import (
    Flavor,
    LoadOptions,
    Predictor,
    Saved,
    SaveOptions,
    estimator_input,
    versions,
)

if TYPE_CHECKING:
    from keel.models._spec import ModelSpec

__all__ = ["DEFAULT_TRUSTED_TYPES", "SklearnFlavor", "untrusted"]

MODEL_FILE = "model.skops"

#: Types trusted on top of those skops trusts by default: scikit-learn's internal
#: data holders (fitted trees, optimizers, distance metrics, losses). An entry
#: ending in ``.*`` trusts every name under that module prefix.
DEFAULT_TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.metrics._dist_metrics.*",
    "sklearn._loss.*",
)


def _trusted(name: str, allowed: Iterable[str]) -> bool:
    for entry in allowed:
        if entry.endswith(".*"):
            if name.startswith(entry[:-1]):
                return True
        elif name == entry:
            return True
    return False


def untrusted(types: Iterable[str], *allowed: Iterable[str]) -> list[str]:
    """The entries of ``types`` that neither the defaults nor ``allowed`` trust."""
    pool = [*DEFAULT_TRUSTED_TYPES, *(t for group in allowed for t in group)]
    return sorted(t for t in types if not _trusted(t, pool))


class SklearnFlavor(Flavor):
    """scikit-learn estimators and pipelines in the skops format."""

    name: ClassVar[str] = "sklearn"
    formats: ClassVar[tuple[str, ...]] = ("skops",)

    def matches(self, model: Any) -> bool:
        return any(
            f"{c.__module__}.{c.__qualname__}" == "sklearn.base.BaseEstimator"
            for c in type(model).__mro__
        )

    def save(self, model: Any, directory: Path, options: SaveOptions) -> Saved:
        self.check_format(options)
        if not (hasattr(model, "predict") or hasattr(model, "transform")):
            raise InvalidSpecError(
                f"{type(model).__name__} has neither predict nor transform; nothing to serve."
            )
        sio = require("skops.io", "to save scikit-learn models")
        path = directory / MODEL_FILE
        sio.dump(model, path)
        found = sio.get_untrusted_types(file=path)
        bad = untrusted(found, options.trusted_types)
        if bad:
            raise UntrustedModelError(
                "The model contains types that skops does not trust by default: "
                f"{', '.join(bad)}. If they come from code you trust, pass "
                f"trusted_types={bad!r} to save_model; they are recorded in the spec and "
                "accepted by load_model.",
                untrusted=bad,
            )
        return Saved(
            format="skops",
            files=[MODEL_FILE],
            requirements=versions("scikit-learn", "skops"),
            trusted_types=list(options.trusted_types),
            flavor_config={
                "estimator": f"{type(model).__module__}.{type(model).__qualname__}",
                "untrusted_types": list(found),
            },
        )

    def load(self, directory: Path, spec: ModelSpec, options: LoadOptions) -> Predictor:
        sio = require("skops.io", "to load scikit-learn models")
        path = directory / MODEL_FILE
        found = sio.get_untrusted_types(file=path)
        bad = untrusted(found, spec.trusted_types, options.trusted_types)
        if bad:
            raise UntrustedModelError(
                f"The model at {directory} contains types keel does not trust: "
                f"{', '.join(bad)}. Loading them may run their code. If you trust them, "
                f"call load_model(..., trusted_types={bad!r}).",
                untrusted=bad,
                path=str(directory),
            )
        return self.wrap(sio.load(path, trusted=list(found)), spec.flavor_config)

    def wrap(self, raw: Any, flavor_config: Mapping[str, Any]) -> Predictor:
        method = raw.predict if hasattr(raw, "predict") else raw.transform
        proba = getattr(raw, "predict_proba", None) if hasattr(raw, "predict_proba") else None
        return Predictor(
            raw,
            lambda X: method(estimator_input(raw, X)),
            (lambda X: proba(estimator_input(raw, X))) if proba is not None else None,
        )
