"""The ``python`` flavor: custom :class:`PythonModel` classes by reference, or pickled objects."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from keel.models._flavors import (
    Flavor,
    LoadOptions,
    Predictor,
    Saved,
    SaveOptions,
    as_array,
    as_frame,
    check_config,
    class_path,
    import_class,
    pickle_load,
    pickle_save,
)

if TYPE_CHECKING:
    import pandas as pd

    from keel.models._spec import ModelSpec

__all__ = ["ARTIFACTS_DIR", "PythonFlavor", "PythonModel"]

ARTIFACTS_DIR = "artifacts"


class PythonModel:
    """Base class for custom models saved by reference, without pickle.

    Subclass it in an importable module (not ``__main__``)::

        class Thresholded(PythonModel):
            def __init__(self, threshold: float = 0.5) -> None:
                self.threshold = threshold

            def save(self, artifacts_dir):           # optional: write your files
                (artifacts_dir / "weights.npy").write_bytes(...)

            def load_context(self, artifacts_dir):   # optional: read them back
                self.weights = np.load(artifacts_dir / "weights.npy")

            def predict(self, df):
                return (df["score"] > self.threshold).to_numpy()

    ``save_model(model, path, model_config={"threshold": 0.7})`` records
    ``"module:Thresholded"`` and ``model_config``; ``load_model`` imports the
    class, calls ``Thresholded(**model_config)`` then ``load_context``. Define
    ``predict_proba(self, df)`` too to expose it.
    """

    def save(self, artifacts_dir: Path) -> None:
        """Write the files this model needs into ``artifacts_dir`` (default: none)."""

    def load_context(self, artifacts_dir: Path) -> None:
        """Restore state from ``artifacts_dir`` after construction (default: nothing)."""

    def predict(self, df: pd.DataFrame) -> Any:
        """Predict for the rows of ``df`` (already validated against the signature)."""
        raise NotImplementedError(f"{type(self).__name__} must implement predict(self, df).")


class PythonFlavor(Flavor):
    """Custom Python models."""

    name: ClassVar[str] = "python"
    formats: ClassVar[tuple[str, ...]] = ("python-class", "cloudpickle")

    def matches(self, model: Any) -> bool:
        return isinstance(model, PythonModel) or callable(getattr(model, "predict", None))

    def save(self, model: Any, directory: Path, options: SaveOptions) -> Saved:
        fmt = self.check_format(options)
        path = class_path(type(model)) if isinstance(model, PythonModel) else None
        if fmt == "python-class" and path is not None:
            config = check_config(options.model_config)
            artifacts = directory / ARTIFACTS_DIR
            artifacts.mkdir()
            model.save(artifacts)
            files = sorted(
                p.relative_to(directory).as_posix() for p in artifacts.rglob("*") if p.is_file()
            )
            return Saved(
                format="python-class",
                files=files,
                flavor_config={"class": path, "model_config": config, "input_kind": "frame"},
            )
        if fmt == "cloudpickle":
            why = "format='cloudpickle' was requested."
        elif isinstance(model, PythonModel):
            why = (
                f"{type(model).__qualname__} is defined in {type(model).__module__!r} and cannot "
                "be imported by path (it is in __main__ or inside a function), so keel cannot "
                "save it by reference; move it into an importable module."
            )
        else:
            why = (
                f"A generic {type(model).__qualname__} object is not a known flavor. Subclass "
                "keel.models.PythonModel in an importable module to save it by reference "
                "without pickle."
            )
        saved = pickle_save(model, directory, options, why)
        saved.flavor_config = {"input_kind": options.input_kind}
        return saved

    def load(self, directory: Path, spec: ModelSpec, options: LoadOptions) -> Predictor:
        if spec.format == "cloudpickle":
            return self.wrap(pickle_load(directory), spec.flavor_config)
        cls = import_class(str(spec.flavor_config["class"]), PythonModel, "PythonModel")
        model = cls(**dict(spec.flavor_config.get("model_config", {})))
        model.load_context(directory / ARTIFACTS_DIR)
        return self.wrap(model, spec.flavor_config)

    def wrap(self, raw: Any, flavor_config: Mapping[str, Any]) -> Predictor:
        if isinstance(raw, PythonModel) or flavor_config.get("input_kind") != "array":
            convert: Any = as_frame
        else:
            convert = as_array
        proba = getattr(raw, "predict_proba", None)
        return Predictor(
            raw,
            lambda X: raw.predict(convert(X)),
            (lambda X: proba(convert(X))) if callable(proba) else None,
        )
