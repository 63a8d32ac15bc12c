"""The ``onnx`` flavor (run with onnxruntime) and ONNX export of scikit-learn models."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
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
from keel.models._signature import Signature, enforce_signature, infer_signature

if TYPE_CHECKING:
    from keel.models._spec import ModelSpec

__all__ = ["OnnxFlavor", "ParityReport", "export_onnx"]

MODEL_FILE = "model.onnx"
_NUMPY_TYPES: dict[str, Any] = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(bool)": "bool",
    "tensor(string)": object,
}


def _is_model_proto(model: Any) -> bool:
    return any(
        c.__module__.startswith("onnx") and c.__qualname__ == "ModelProto"
        for c in type(model).__mro__
    )


def _session(source: Any) -> Any:
    ort = require("onnxruntime", "to run ONNX models")
    return ort.InferenceSession(source, providers=["CPUExecutionProvider"])


def _zipmap_to_array(out: Any) -> Any:
    np = require("numpy")
    if isinstance(out, list) and out and isinstance(out[0], dict):
        keys = sorted(out[0])
        return np.array([[row[k] for k in keys] for row in out])
    return out


class OnnxFlavor(Flavor):
    """ONNX models (a ``ModelProto`` or a path to a ``.onnx`` file), stored as is."""

    name: ClassVar[str] = "onnx"
    formats: ClassVar[tuple[str, ...]] = ("onnx",)

    def matches(self, model: Any) -> bool:
        if isinstance(model, str | os.PathLike):
            return os.fspath(model).endswith(".onnx")
        return _is_model_proto(model)

    def save(self, model: Any, directory: Path, options: SaveOptions) -> Saved:
        fmt = self.check_format(options)
        onnx = require("onnx", "to save ONNX models")
        target = directory / MODEL_FILE
        if isinstance(model, str | os.PathLike):
            if not Path(model).is_file():
                raise InvalidSpecError(f"ONNX file {os.fspath(model)!r} does not exist.")
            shutil.copyfile(model, target)
        else:
            onnx.save_model(model, str(target))
        try:
            onnx.checker.check_model(str(target))
        except onnx.checker.ValidationError as exc:
            raise InvalidSpecError(f"The ONNX model is invalid: {exc}") from exc
        proto = onnx.load(str(target), load_external_data=False)
        return Saved(
            format=fmt,
            files=[MODEL_FILE],
            requirements=versions("onnxruntime"),
            flavor_config={
                "inputs": [i.name for i in proto.graph.input],
                "outputs": [o.name for o in proto.graph.output],
                "opset": {o.domain or "ai.onnx": int(o.version) for o in proto.opset_import},
            },
        )

    def load(self, directory: Path, spec: ModelSpec, options: LoadOptions) -> Predictor:
        return self.wrap(_session(str(directory / MODEL_FILE)), spec.flavor_config)

    def for_save(self, model: Any, directory: Path, saved: Saved) -> Predictor:
        return self.wrap(_session(str(directory / MODEL_FILE)), saved.flavor_config)

    def wrap(self, raw: Any, flavor_config: Mapping[str, Any]) -> Predictor:
        session = raw if hasattr(raw, "get_inputs") else _session(raw.SerializeToString())
        inputs = session.get_inputs()
        outputs = [o.name for o in session.get_outputs()]

        def feed(X: Any) -> dict[str, Any]:
            columns = list(getattr(X, "columns", ()))
            if columns and all(i.name in columns for i in inputs) and len(inputs) > 1:
                out = {}
                for i in inputs:
                    col = X[[i.name]].to_numpy(dtype=_NUMPY_TYPES.get(i.type, "float32"))
                    out[i.name] = col if len(i.shape) == 2 else col.reshape(-1)
                return out
            first = inputs[0]
            return {first.name: as_array(X, _NUMPY_TYPES.get(first.type, "float32"))}

        def predict(X: Any) -> Any:
            return _zipmap_to_array(session.run([outputs[0]], feed(X))[0])

        prob = [n for n in outputs[1:] if "prob" in n.lower()]
        proba = None
        if prob:

            def proba(X: Any) -> Any:
                return _zipmap_to_array(session.run([prob[0]], feed(X))[0])

        return Predictor(session, predict, proba)


# -- export -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParityReport:
    """How closely an exported ONNX model reproduces the scikit-learn model.

    Labels must match exactly; probabilities within ``tolerance`` (absolute);
    regression outputs within ``tolerance * max(1, max |prediction|)``. ``ok`` is
    ``False`` when no example rows were available to compare.
    """

    path: str
    n_rows: int
    classifier: bool
    label_mismatches: int | None
    max_abs_diff_predictions: float | None
    max_abs_diff_proba: float | None
    tolerance: float
    #: largest absolute prediction (regression), scaling the tolerance
    scale: float = 1.0

    @property
    def ok(self) -> bool:
        """True when the example rows were compared and every difference is within tolerance."""
        if self.n_rows == 0:
            return False
        if self.classifier:
            return self.label_mismatches == 0 and (
                self.max_abs_diff_proba is None or self.max_abs_diff_proba <= self.tolerance
            )
        return self.max_abs_diff_predictions is not None and self.max_abs_diff_predictions <= (
            self.tolerance * max(1.0, self.scale)
        )


def _contains_column_transformer(model: Any) -> bool:
    if type(model).__name__ == "ColumnTransformer":
        return True
    params = model.get_params(deep=True) if hasattr(model, "get_params") else {}
    return any(type(v).__name__ == "ColumnTransformer" for v in params.values())


def _initial_types(model: Any, signature: Signature) -> list[tuple[str, Any]]:
    types = require("skl2onnx.common.data_types", "to export ONNX")
    numeric = {"double", "float", "halffloat"} | {
        f"{s}int{b}" for s in ("", "u") for b in (8, 16, 32, 64)
    }
    if signature.is_tensor:
        raise InvalidSpecError("export_onnx takes tabular models (a column signature).")
    dtypes = [c.dtype for c in signature.inputs]
    if not _contains_column_transformer(model) and all(d in numeric for d in dtypes):
        return [("X", types.FloatTensorType([None, len(dtypes)]))]
    out = []
    for col in signature.inputs:
        if col.dtype in ("double", "float", "halffloat"):
            out.append((col.name, types.FloatTensorType([None, 1])))
        elif col.dtype in numeric:
            out.append((col.name, types.Int64TensorType([None, 1])))
        elif col.dtype == "string":
            out.append((col.name, types.StringTensorType([None, 1])))
        elif col.dtype == "bool":
            out.append((col.name, types.BooleanTensorType([None, 1])))
        else:
            raise InvalidSpecError(
                f"Column {col.name!r} has type {col.dtype}, which ONNX export does not support.",
                column=col.name,
            )
    return out


def export_onnx(
    model: Any,
    signature_or_example: Any,
    path: str | os.PathLike[str],
    *,
    tolerance: float = 1e-4,
    target_opset: int | None = None,
) -> ParityReport:
    """Convert a fitted scikit-learn model to ONNX with skl2onnx and check parity.

    ``signature_or_example`` is a :class:`Signature` or example input (whose rows
    are then run through both scikit-learn and onnxruntime). Classifiers are
    exported with plain probability tensors (no ZipMap). Writes ``path`` (a
    ``.onnx`` file, loadable with ``save_model(path, dir)``).
    """
    skl2onnx = require("skl2onnx", "to export ONNX")
    np = require("numpy")
    if isinstance(signature_or_example, Signature):
        signature, example = signature_or_example, None
    else:
        signature, example = infer_signature(signature_or_example), signature_or_example
    is_classifier = getattr(model, "_estimator_type", None) == "classifier" or hasattr(
        model, "predict_proba"
    )
    onx = skl2onnx.to_onnx(
        model,
        initial_types=_initial_types(model, signature),
        options={"zipmap": False} if is_classifier else None,
        target_opset=target_opset,
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(onx.SerializeToString())
    if example is None:
        return ParityReport(str(target), 0, is_classifier, None, None, None, tolerance)
    frame = enforce_signature(signature, example)
    onnx_model = OnnxFlavor().wrap(_session(str(target)), {})
    X = estimator_input(model, frame)
    expected = np.asarray(model.predict(X))
    got = np.asarray(onnx_model.predict(frame))
    if is_classifier:
        mismatches = int(np.sum(expected.reshape(-1) != got.reshape(-1)))
        proba_diff = None
        if onnx_model.predict_proba is not None:
            p_exp = np.asarray(model.predict_proba(X), dtype=float)
            p_got = np.asarray(onnx_model.predict_proba(frame), dtype=float)
            proba_diff = float(np.max(np.abs(p_exp - p_got))) if p_exp.size else 0.0
        return ParityReport(str(target), len(frame), True, mismatches, None, proba_diff, tolerance)
    diff = np.abs(expected.astype(float).reshape(-1) - got.astype(float).reshape(-1))
    return ParityReport(
        str(target),
        len(frame),
        False,
        None,
        float(diff.max()) if diff.size else 0.0,
        None,
        tolerance,
        scale=float(np.max(np.abs(expected))) if expected.size else 1.0,
    )
