"""``save_model`` / ``load_model`` and :class:`LoadedModel`, the one interface over flavors."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from keel.exceptions import AlreadyExistsError, InvalidSpecError
from keel.models._errors import UnsafeModelWarning, UntrustedModelError
from keel.models._flavors import (
    LoadOptions,
    Predictor,
    SaveOptions,
    check_config,
    detect_flavor,
    dist_version,
    get_flavor,
)
from keel.models._signature import (
    Signature,
    enforce_signature,
    infer_outputs,
    infer_signature,
    to_model_input,
)
from keel.models._spec import ModelSpec

__all__ = ["LoadedModel", "load_model", "save_model"]


def _requirements(
    flavor_reqs: Mapping[str, str],
    extra: Mapping[str, str] | Sequence[str] | None,
) -> dict[str, str]:
    reqs: dict[str, str] = {"python": platform.python_version()}
    for dist in ("keel", "numpy"):
        version = dist_version(dist)
        if version is not None:
            reqs[dist] = version
    reqs.update(flavor_reqs)
    if isinstance(extra, Mapping):
        reqs.update({str(k): str(v) for k, v in extra.items()})
    elif extra is not None:
        for item in extra:
            name, sep, version = str(item).partition("==")
            if not name.strip():
                raise InvalidSpecError(f"Bad requirement {item!r}: expected 'name' or 'name==1.2'.")
            reqs[name.strip()] = version.strip() if sep else ""
    return reqs


def _check_target(target: Path) -> None:
    if target.is_file():
        raise InvalidSpecError(f"Cannot save a model to {target}: it is a file.", path=str(target))
    if target.is_dir() and any(target.iterdir()):
        raise AlreadyExistsError(
            f"Cannot save a model to {target}: the directory is not empty. "
            "Choose a new path or empty it first.",
            path=str(target),
        )


def save_model(
    model: Any,
    path: str | os.PathLike[str],
    *,
    flavor: str | None = None,
    format: str | None = None,
    input_example: Any = None,
    signature: Signature | None = None,
    unsafe_pickle: bool = False,
    trusted_types: Sequence[str] | None = None,
    extra_requirements: Mapping[str, str] | Sequence[str] | None = None,
    model_config: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> ModelSpec:
    """Write ``model`` into the directory ``path`` (created; must be absent or empty).

    Args:
        flavor: one of ``sklearn, xgboost, lightgbm, pytorch, onnx, python``;
            detected from the model when omitted.
        format: a non-default format of the flavor (``"xgboost-json"``,
            ``"torchscript"``, ``"cloudpickle"``).
        input_example: rows the model takes; the signature is inferred from it
            (outputs by running the model on it) when ``signature`` is omitted,
            and checked against ``signature`` otherwise.
        unsafe_pickle: allow pickle-based formats (generic objects, TorchScript).
        trusted_types: extra types to trust in skops files (recorded in the spec).
        extra_requirements: more ``{package: version}`` (or ``"pkg==1.0"``) needed to load.
        model_config: constructor keyword arguments of a class saved by reference
            (PyTorch modules, :class:`PythonModel` subclasses).
        metadata: free JSON metadata stored as the spec's ``extra``.

    The directory holds the model files and ``keel-model.json``; it appears only
    once complete (written to a temporary sibling, then renamed).
    """
    target = Path(path)
    _check_target(target)
    name = flavor or detect_flavor(model)
    impl = get_flavor(name)
    if not impl.matches(model):
        raise InvalidSpecError(
            f"A {type(model).__qualname__} is not a {name!r} model "
            f"(detected flavor: {detect_flavor(model)!r}).",
            flavor=name,
        )
    is_array = type(input_example).__module__ == "numpy"
    options = SaveOptions(
        unsafe_pickle=unsafe_pickle,
        trusted_types=tuple(trusted_types or ()),
        format=format,
        model_config=dict(model_config or {}),
        input_kind="array" if is_array else "frame",
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        saved = impl.save(model, tmp, options)
        sig = signature
        if input_example is not None:
            sig = sig or infer_signature(input_example)
            if not sig.outputs:
                predictor = impl.for_save(model, tmp, saved)
                sig = Signature(sig.inputs, _infer_output(predictor, sig, input_example))
            else:
                enforce_signature(sig, input_example)
        spec = ModelSpec(
            flavor=name,
            format=saved.format,
            files=tuple(saved.files),
            signature=sig,
            requirements=_requirements(saved.requirements, extra_requirements),
            unsafe=saved.unsafe,
            trusted_types=tuple(saved.trusted_types),
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            flavor_config=saved.flavor_config,
            extra=check_config(metadata or {}, "metadata"),
        )
        spec.write(tmp)
        tmp.chmod(0o755)
        try:
            tmp.replace(target)  # an empty target directory is replaced atomically
        except OSError:
            _check_target(target)  # another save_model filled it meanwhile
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return spec


def _infer_output(predictor: Predictor, sig: Signature, example: Any) -> tuple[Any, ...]:
    prepared = enforce_signature(sig, example)
    try:
        output = predictor.predict(prepared)
    except Exception as exc:
        raise InvalidSpecError(
            f"Running the model on input_example failed ({type(exc).__name__}: {exc}); "
            "pass an example the model accepts, or a signature with outputs.",
        ) from exc
    return infer_outputs(output)


class LoadedModel:
    """A saved model ready to predict, whatever its flavor.

    Inputs (pandas / polars DataFrame, Arrow table, numpy array, list of dicts)
    are validated against the signature first; see :meth:`validate`.
    """

    def __init__(self, spec: ModelSpec, predictor: Predictor) -> None:
        self.spec = spec
        self._predictor = predictor

    @property
    def flavor(self) -> str:
        """The flavor name (``sklearn``, ``xgboost`` ...)."""
        return self.spec.flavor

    @property
    def signature(self) -> Signature | None:
        """The model's signature, or ``None`` when it was saved without one."""
        return self.spec.signature

    @property
    def metadata(self) -> dict[str, Any]:
        """The spec (``keel-model.json``) as a dict."""
        return self.spec.to_dict()

    @property
    def raw(self) -> Any:
        """The underlying native model (an onnxruntime session for ONNX, a Booster for
        lightgbm)."""
        return self._predictor.raw

    @property
    def predictor(self) -> Predictor:
        """The flavor's predict functions, taking inputs already checked against the signature
        (what a server that validated a request itself calls)."""
        return self._predictor

    def validate(self, data: Any, *, coerce: bool = False) -> Any:
        """``data`` checked against the signature, as the model will receive it."""
        if self.spec.signature is None:
            return to_model_input(data)
        return enforce_signature(self.spec.signature, data, coerce=coerce)

    def predict(self, data: Any, *, coerce: bool = False) -> Any:
        """Predict; ``coerce=True`` casts safely convertible types and drops extra columns."""
        return self._predictor.predict(self.validate(data, coerce=coerce))

    @property
    def predict_proba(self) -> Callable[..., Any]:
        """Class probabilities (``predict_proba(data, coerce=False)``), when the flavor has them."""
        proba = self._predictor.predict_proba
        if proba is None:
            raise AttributeError(
                f"This {self.flavor!r} model ({type(self.raw).__name__}) has no predict_proba: "
                "only classifiers of the sklearn, xgboost and lightgbm flavors, ONNX models "
                "with a probabilities output and Python models defining predict_proba do."
            )

        def predict_proba(data: Any, *, coerce: bool = False) -> Any:
            return proba(self.validate(data, coerce=coerce))

        return predict_proba

    def __repr__(self) -> str:
        return f"<LoadedModel flavor={self.flavor!r} format={self.spec.format!r}>"


def load_model(
    path: str | os.PathLike[str],
    *,
    trusted_types: Sequence[str] | None = None,
    allow_unsafe: bool = False,
) -> LoadedModel:
    """Load a model saved with :func:`save_model`.

    Pickle-based formats are refused unless ``allow_unsafe=True`` (then an
    :class:`UnsafeModelWarning` is emitted). ``trusted_types`` adds types to trust
    in skops files, on top of keel's defaults and those recorded at save time.
    """
    root = Path(path)
    spec = ModelSpec.read(root)
    impl = get_flavor(spec.flavor)
    if spec.format not in impl.formats:
        raise InvalidSpecError(
            f"The {spec.flavor!r} flavor cannot read format {spec.format!r} "
            f"(it reads {', '.join(impl.formats)}).",
            format=spec.format,
        )
    if spec.is_unsafe:
        if not allow_unsafe:
            raise UntrustedModelError(
                f"The model at {root} is stored as {spec.format}, a pickle-based format: "
                "loading it runs arbitrary code from the file. Load it only if you trust "
                "where it comes from, with load_model(..., allow_unsafe=True).",
                path=str(root),
                format=spec.format,
            )
        warnings.warn(
            UnsafeModelWarning(
                f"Loading the pickle-based model at {root} ({spec.format}) "
                "because allow_unsafe=True."
            ),
            stacklevel=2,
        )
    predictor = impl.load(root, spec, LoadOptions(trusted_types=tuple(trusted_types or ())))
    return LoadedModel(spec, predictor)
