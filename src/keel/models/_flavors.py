"""The flavor contract, flavor detection, and helpers shared by the flavors.

A flavor knows how to write one kind of model into a directory, read it back
and put it behind :class:`Predictor`. Flavor modules are imported on first use,
so the heavy libraries they need are too.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from keel.exceptions import InvalidSpecError, did_you_mean
from keel.models._errors import UntrustedModelError, require

if TYPE_CHECKING:
    from keel.models._spec import ModelSpec

__all__ = [
    "FLAVORS",
    "FLAVOR_NAMES",
    "Flavor",
    "LoadOptions",
    "Predictor",
    "SaveOptions",
    "Saved",
    "class_path",
    "detect_flavor",
    "get_flavor",
    "import_class",
]

# name -> "module:Class" of the flavor implementation, in detection order
FLAVORS: dict[str, str] = {
    "sklearn": "keel.models._sklearn:SklearnFlavor",
    "xgboost": "keel.models._boosting:XGBoostFlavor",
    "lightgbm": "keel.models._boosting:LightGBMFlavor",
    "pytorch": "keel.models._pytorch:PyTorchFlavor",
    "onnx": "keel.models._onnx:OnnxFlavor",
    "python": "keel.models._pyfunc:PythonFlavor",
}

#: The flavor names, in detection order.
FLAVOR_NAMES: tuple[str, ...] = tuple(FLAVORS)
PICKLE_FILE = "model.pkl"


class Predictor:
    """A native model behind one interface; inputs arrive already validated.

    ``predict`` and ``predict_proba`` receive a pandas DataFrame (columns in
    signature order) or a numpy array.
    """

    def __init__(
        self,
        raw: Any,
        predict: Callable[[Any], Any],
        predict_proba: Callable[[Any], Any] | None = None,
    ) -> None:
        self.raw = raw
        self.predict = predict
        self.predict_proba = predict_proba


@dataclass(frozen=True)
class SaveOptions:
    """What ``save_model`` passes to a flavor."""

    unsafe_pickle: bool = False
    trusted_types: tuple[str, ...] = ()
    format: str | None = None
    model_config: Mapping[str, Any] = field(default_factory=dict)
    input_kind: str = "frame"  # "frame" or "array": what the input example was


@dataclass(frozen=True)
class LoadOptions:
    """What ``load_model`` passes to a flavor."""

    trusted_types: tuple[str, ...] = ()


@dataclass
class Saved:
    """What a flavor wrote."""

    format: str
    files: list[str]
    requirements: dict[str, str] = field(default_factory=dict)
    flavor_config: dict[str, Any] = field(default_factory=dict)
    trusted_types: list[str] = field(default_factory=list)
    unsafe: bool = False


class Flavor(ABC):
    """One kind of model: how to detect, save, load and wrap it."""

    name: ClassVar[str]
    #: formats this flavor writes and reads; the first is the default
    formats: ClassVar[tuple[str, ...]]

    @abstractmethod
    def matches(self, model: Any) -> bool:
        """True when ``model`` is of this flavor."""

    @abstractmethod
    def save(self, model: Any, directory: Path, options: SaveOptions) -> Saved:
        """Write ``model`` into the (empty) ``directory``."""

    @abstractmethod
    def load(self, directory: Path, spec: ModelSpec, options: LoadOptions) -> Predictor:
        """Read the model saved in ``directory`` (its files were verified by the caller)."""

    @abstractmethod
    def wrap(self, raw: Any, flavor_config: Mapping[str, Any]) -> Predictor:
        """Put a native model (live or loaded) behind :class:`Predictor`."""

    def for_save(self, model: Any, directory: Path, saved: Saved) -> Predictor:
        """A predictor for the model being saved, used to infer output signatures."""
        return self.wrap(model, saved.flavor_config)

    def check_format(self, options: SaveOptions) -> str:
        """The format to write: the requested one if this flavor supports it."""
        fmt = options.format or self.formats[0]
        if fmt not in self.formats:
            raise InvalidSpecError(
                f"The {self.name!r} flavor writes {', '.join(self.formats)}, not {fmt!r}."
                + did_you_mean(fmt, self.formats),
                format=fmt,
            )
        return fmt


# -- detection ----------------------------------------------------------------------------
def _mro_names(model: Any) -> set[str]:
    return {f"{c.__module__}.{c.__qualname__}" for c in type(model).__mro__}


def detect_flavor(model: Any) -> str:
    """The flavor name for ``model``, found without importing any ML library."""
    from keel.models._pyfunc import PythonModel

    names = _mro_names(model)
    if isinstance(model, PythonModel):
        return "python"
    if "onnx.onnx_ml_pb2.ModelProto" in names or any(
        n.startswith("onnx.") and n.endswith(".ModelProto") for n in names
    ):
        return "onnx"
    if isinstance(model, str | os.PathLike) and os.fspath(model).endswith(".onnx"):
        return "onnx"
    if names & {"xgboost.core.Booster", "xgboost.sklearn.XGBModel"}:
        return "xgboost"
    if names & {"lightgbm.basic.Booster", "lightgbm.sklearn.LGBMModel"}:
        return "lightgbm"
    if "torch.nn.modules.module.Module" in names:
        return "pytorch"
    if "sklearn.base.BaseEstimator" in names:
        return "sklearn"
    if callable(getattr(model, "predict", None)):
        return "python"
    raise InvalidSpecError(
        f"Cannot tell the flavor of a {type(model).__module__}.{type(model).__qualname__}: "
        f"it is none of {', '.join(FLAVORS)} and has no predict method. Pass flavor=... "
        "or wrap it in a keel.models.PythonModel subclass.",
        type=type(model).__qualname__,
    )


def get_flavor(name: str) -> Flavor:
    """The flavor implementation registered under ``name``."""
    if name not in FLAVORS:
        raise InvalidSpecError(
            f"Unknown model flavor {name!r}; known: {', '.join(FLAVORS)}."
            + did_you_mean(name, FLAVORS),
            flavor=name,
        )
    module, cls = FLAVORS[name].split(":")
    flavor: Flavor = getattr(importlib.import_module(module), cls)()
    return flavor


# -- shared helpers -------------------------------------------------------------------------
def dist_version(distribution: str) -> str | None:
    """Installed version of a distribution, or ``None``."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions(*distributions: str) -> dict[str, str]:
    """``{distribution: version}`` for those installed."""
    found = {d: dist_version(d) for d in distributions}
    return {d: v for d, v in found.items() if v is not None}


def class_path(cls: type) -> str | None:
    """``"module:Qualname"`` when importing that path gives back ``cls``, else ``None``."""
    module, qualname = cls.__module__, cls.__qualname__
    if module == "__main__" or "<locals>" in qualname:
        return None
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    return f"{module}:{qualname}" if obj is cls else None


def import_class(path: str, base: type, what: str) -> type:
    """Import ``"module:Qualname"`` and check it is a subclass of ``base``.

    Loading by reference imports code named in the spec: the class must derive
    from ``base`` so a spec cannot name an arbitrary callable.
    """
    module, _, qualname = path.partition(":")
    if not module or not qualname:
        raise InvalidSpecError(f"{what} class path {path!r} is not 'module:Class'.", path=path)
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise InvalidSpecError(
            f"Cannot import the {what} class {path!r} this model was saved with: {exc}. "
            "Install the package that defines it (it must be importable where the model "
            "is loaded).",
            path=path,
        ) from exc
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise UntrustedModelError(
            f"{path!r} is not a subclass of {base.__module__}.{base.__qualname__}; "
            f"refusing to load it as a {what}.",
            path=path,
        )
    return obj


def check_config(config: Mapping[str, Any], what: str = "model_config") -> dict[str, Any]:
    """A copy of ``config``, which must be JSON (it is stored in the spec)."""
    try:
        out: dict[str, Any] = json.loads(json.dumps(dict(config)))
    except (TypeError, ValueError) as exc:
        raise InvalidSpecError(
            f"{what} must be JSON-serialisable (it is stored in keel-model.json): {exc}."
        ) from exc
    return out


def pickle_save(model: Any, directory: Path, options: SaveOptions, why: str) -> Saved:
    """Write ``model`` with cloudpickle, only when the caller opted in."""
    if not options.unsafe_pickle:
        raise InvalidSpecError(
            f"{why} It can only be saved with pickle (cloudpickle), and loading a pickle "
            "runs arbitrary code. To accept that, pass unsafe_pickle=True to save_model "
            "(and allow_unsafe=True to load_model).",
            reason="needs_pickle",
        )
    cloudpickle = require("cloudpickle", "to pickle models")
    with open(directory / PICKLE_FILE, "wb") as fh:
        cloudpickle.dump(model, fh)
    return Saved(
        format="cloudpickle",
        files=[PICKLE_FILE],
        requirements=versions("cloudpickle"),
        unsafe=True,
    )


def pickle_load(directory: Path) -> Any:
    """Unpickle ``model.pkl`` (the caller has checked ``allow_unsafe``)."""
    cloudpickle = require("cloudpickle", "to load pickled models")
    with open(directory / PICKLE_FILE, "rb") as fh:
        return cloudpickle.load(fh)


def as_frame(data: Any, columns: list[str] | None = None) -> Any:
    """A pandas DataFrame from a validated input (numpy arrays get ``columns`` or ``f0..``)."""
    pd = require("pandas")
    if isinstance(data, pd.DataFrame):
        return data
    np = require("numpy")
    arr = np.asarray(data)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    names = columns if columns and len(columns) == arr.shape[1] else None
    return pd.DataFrame(arr, columns=names or [f"f{i}" for i in range(arr.shape[1])])


def as_array(data: Any, dtype: Any = None) -> Any:
    """A numpy array from a validated input (a DataFrame's values)."""
    np = require("numpy")
    if type(data).__module__.startswith("pandas"):
        data = data.to_numpy(dtype=dtype)
    return np.ascontiguousarray(data, dtype=dtype)


def estimator_input(model: Any, data: Any) -> Any:
    """Input for a scikit-learn-style estimator: a frame if it was fitted on one."""
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        return as_frame(data, [str(n) for n in names])
    return as_array(data)
