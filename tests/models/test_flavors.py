"""Every flavor round-trips through a directory with equal predictions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from keel.models import (
    SPEC_FILE,
    LoadedModel,
    PythonModel,
    detect_flavor,
    load_model,
    save_model,
)


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=200, n_features=6, n_informative=4, random_state=0)
    frame = pd.DataFrame(X[:, :4], columns=["a", "b", "c", "d"])
    frame["n"] = (X[:, 4] * 10).round().astype("int64")
    frame["city"] = np.where(X[:, 5] > 0, "paris", "lyon")
    return frame, y


@pytest.fixture(scope="module")
def Xy() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    return make_classification(n_samples=200, n_features=8, n_informative=5, random_state=1)


def roundtrip(model: Any, path: Path, example: Any, **kwargs: Any) -> LoadedModel:
    spec = save_model(model, path, input_example=example, **kwargs)
    on_disk = json.loads((path / SPEC_FILE).read_text())
    assert on_disk == spec.to_dict()
    assert sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()) == sorted(
        [*spec.files, SPEC_FILE]
    )
    return load_model(path, allow_unsafe=kwargs.get("unsafe_pickle", False))


def test_sklearn_pipeline_with_column_transformer(tmp_path: Path, data: Any) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame, y = data
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["a", "b", "c", "d", "n"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
        ]
    )
    pipe = Pipeline([("pre", pre), ("rf", RandomForestClassifier(n_estimators=5, random_state=0))])
    pipe.fit(frame, y)
    assert detect_flavor(pipe) == "sklearn"
    loaded = roundtrip(pipe, tmp_path / "m", frame.head(20))
    assert loaded.flavor == "sklearn" and loaded.spec.format == "skops"
    assert not loaded.spec.unsafe
    np.testing.assert_array_equal(loaded.predict(frame), pipe.predict(frame))
    np.testing.assert_array_equal(loaded.predict_proba(frame), pipe.predict_proba(frame))
    assert type(loaded.raw).__name__ == "Pipeline"
    reqs = loaded.metadata["requirements"]
    assert {"python", "numpy", "scikit-learn", "skops"} <= set(reqs)
    sig = loaded.signature
    assert sig is not None
    assert [(c.name, c.dtype) for c in sig.inputs] == [
        ("a", "double"),
        ("b", "double"),
        ("c", "double"),
        ("d", "double"),
        ("n", "int64"),
        ("city", "string"),
    ]
    assert [(c.name, c.dtype) for c in sig.outputs] == [("prediction", "int64")]
    # other input types are converted to the frame the pipeline was fitted on
    import polars as pl
    import pyarrow as pa

    np.testing.assert_array_equal(loaded.predict(pl.from_pandas(frame)), pipe.predict(frame))
    np.testing.assert_array_equal(loaded.predict(pa.Table.from_pandas(frame)), pipe.predict(frame))
    records = frame.head(3).to_dict(orient="records")
    np.testing.assert_array_equal(loaded.predict(records), pipe.predict(frame.head(3)))


def test_sklearn_on_numpy_and_regressor(tmp_path: Path, Xy: Any) -> None:
    from sklearn.linear_model import Ridge

    X, y = Xy
    model = Ridge().fit(X, y)
    loaded = roundtrip(model, tmp_path / "m", X[:10])
    assert loaded.signature is not None
    assert loaded.signature.input_names == [f"f{i}" for i in range(8)]
    np.testing.assert_allclose(loaded.predict(X), model.predict(X), rtol=0, atol=0)
    with pytest.raises(AttributeError, match="no predict_proba"):
        loaded.predict_proba(X)
    assert not hasattr(loaded, "predict_proba")


@pytest.mark.parametrize("fmt", [None, "xgboost-json"])
def test_xgboost_classifier(tmp_path: Path, data: Any, fmt: str | None) -> None:
    xgb = pytest.importorskip("xgboost")
    frame, y = data
    frame = frame.drop(columns=["city"])
    model = xgb.XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1).fit(frame, y)
    loaded = roundtrip(model, tmp_path / "m", frame.head(5), format=fmt)
    assert loaded.spec.format == (fmt or "xgboost-ubj")
    assert loaded.spec.files == (("model.json",) if fmt else ("model.ubj",))
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    np.testing.assert_array_equal(loaded.predict_proba(frame), model.predict_proba(frame))
    assert type(loaded.raw).__name__ == "XGBClassifier"


def test_xgboost_regressor_and_booster(tmp_path: Path, Xy: Any) -> None:
    xgb = pytest.importorskip("xgboost")
    X, y = Xy
    reg = xgb.XGBRegressor(n_estimators=10, max_depth=3, n_jobs=1).fit(X, y)
    loaded = roundtrip(reg, tmp_path / "reg", X[:5])
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))
    assert not hasattr(loaded, "predict_proba")
    booster = reg.get_booster()
    assert detect_flavor(booster) == "xgboost"
    loaded_b = roundtrip(booster, tmp_path / "booster", X[:5])
    np.testing.assert_array_equal(loaded_b.predict(X), booster.predict(xgb.DMatrix(X)))


def test_lightgbm_classifier_keeps_labels_and_proba(tmp_path: Path, data: Any) -> None:
    lgb = pytest.importorskip("lightgbm")
    frame, y = data
    frame = frame.drop(columns=["city"])
    labels = np.where(y == 1, "churn", "stay")
    model = lgb.LGBMClassifier(n_estimators=10, num_leaves=7, verbose=-1, n_jobs=1)
    model.fit(frame, labels)
    loaded = roundtrip(model, tmp_path / "m", frame.head(5))
    assert loaded.spec.format == "lightgbm-txt"
    assert loaded.metadata["flavor_config"]["classes"] == ["churn", "stay"]
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    np.testing.assert_allclose(loaded.predict_proba(frame), model.predict_proba(frame))
    assert type(loaded.raw).__name__ == "Booster"


def test_lightgbm_multiclass_and_regressor(tmp_path: Path) -> None:
    lgb = pytest.importorskip("lightgbm")
    from sklearn.datasets import make_classification, make_regression

    X, y = make_classification(150, 6, n_informative=4, n_classes=3, random_state=0)
    clf = lgb.LGBMClassifier(n_estimators=5, verbose=-1, n_jobs=1).fit(X, y)
    loaded = roundtrip(clf, tmp_path / "clf", X[:5])
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X))
    Xr, yr = make_regression(100, 4, random_state=0)
    reg = lgb.LGBMRegressor(n_estimators=5, verbose=-1, n_jobs=1).fit(Xr, yr)
    loaded_r = roundtrip(reg, tmp_path / "reg", Xr[:5])
    np.testing.assert_allclose(loaded_r.predict(Xr), reg.predict(Xr))


def test_onnx_model_proto_and_file(tmp_path: Path, Xy: Any) -> None:
    pytest.importorskip("onnxruntime")
    skl2onnx = pytest.importorskip("skl2onnx")
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    X, y = Xy
    clf = LogisticRegression().fit(X, y)
    proto = skl2onnx.to_onnx(
        clf, initial_types=[("X", FloatTensorType([None, 8]))], options={"zipmap": False}
    )
    assert detect_flavor(proto) == "onnx"
    loaded = roundtrip(proto, tmp_path / "proto", X[:5])
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), atol=1e-5)
    assert type(loaded.raw).__name__ == "InferenceSession"
    # a path to an .onnx file, with the default ZipMap probabilities output
    zipped = skl2onnx.to_onnx(clf, initial_types=[("X", FloatTensorType([None, 8]))])
    onnx_file = tmp_path / "clf.onnx"
    onnx_file.write_bytes(zipped.SerializeToString())
    loaded_f = roundtrip(str(onnx_file), tmp_path / "file", X[:5])
    np.testing.assert_allclose(loaded_f.predict_proba(X), clf.predict_proba(X), atol=1e-5)
    assert (tmp_path / "file" / "model.onnx").read_bytes() == onnx_file.read_bytes()


class ScaledSum(PythonModel):
    """A custom model saved by reference, with its own artifact file."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self.weights: np.ndarray | None = None

    def save(self, artifacts_dir: Path) -> None:
        assert self.weights is not None
        np.save(artifacts_dir / "weights.npy", self.weights)

    def load_context(self, artifacts_dir: Path) -> None:
        self.weights = np.load(artifacts_dir / "weights.npy")

    def predict(self, df: pd.DataFrame) -> Any:
        assert isinstance(df, pd.DataFrame)
        assert self.weights is not None
        return df.to_numpy(dtype=float) @ self.weights * self.scale

    def predict_proba(self, df: pd.DataFrame) -> Any:
        p = 1 / (1 + np.exp(-self.predict(df)))
        return np.column_stack([1 - p, p])


def test_python_model_by_reference_without_pickle(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0.5, 0.0, -1.0]})
    model = ScaledSum(scale=2.0)
    model.weights = np.array([1.0, 3.0])
    assert detect_flavor(model) == "python"
    loaded = roundtrip(model, tmp_path / "m", frame, model_config={"scale": 2.0})
    assert loaded.spec.format == "python-class" and not loaded.spec.unsafe
    assert loaded.spec.files == ("artifacts/weights.npy",)
    assert not any(p.suffix == ".pkl" for p in (tmp_path / "m").rglob("*"))
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    np.testing.assert_array_equal(loaded.predict_proba(frame), model.predict_proba(frame))
    assert isinstance(loaded.raw, ScaledSum) and loaded.raw.scale == 2.0


class Doubler:
    """A generic object with predict: needs pickle."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def predict(self, X: Any) -> Any:
        assert isinstance(X, np.ndarray)  # it was saved with a numpy example
        return X.sum(axis=1) * 2 + self.offset


def test_generic_object_via_unsafe_pickle(tmp_path: Path, Xy: Any) -> None:
    from keel.models import UnsafeModelWarning

    X, _ = Xy
    model = Doubler(offset=0.5)
    spec = save_model(model, tmp_path / "m", input_example=X[:3], unsafe_pickle=True)
    assert spec.unsafe and spec.format == "cloudpickle" and "cloudpickle" in spec.requirements
    with pytest.warns(UnsafeModelWarning, match="allow_unsafe=True"):
        loaded = load_model(tmp_path / "m", allow_unsafe=True)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_save_target_must_be_empty_and_is_atomic(tmp_path: Path, Xy: Any) -> None:
    from sklearn.linear_model import Ridge

    from keel.exceptions import AlreadyExistsError

    X, y = Xy
    model = Ridge().fit(X, y)
    (tmp_path / "empty").mkdir()
    save_model(model, tmp_path / "empty")  # an empty directory is fine
    with pytest.raises(AlreadyExistsError, match="not empty"):
        save_model(model, tmp_path / "empty")
    with pytest.raises(Exception, match="input_example"):
        save_model(model, tmp_path / "bad", input_example=np.ones((2, 3)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no leftovers


def test_spec_round_trip_and_metadata(tmp_path: Path, Xy: Any) -> None:
    from sklearn.linear_model import Ridge

    from keel.models import ModelSpec

    X, y = Xy
    spec = save_model(
        Ridge().fit(X, y),
        tmp_path / "m",
        input_example=X[:2],
        extra_requirements=["pandas==2.2.0", "mylib"],
        metadata={"team": "growth"},
    )
    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.requirements["pandas"] == "2.2.0" and spec.requirements["mylib"] == ""
    assert spec.extra == {"team": "growth"}
    assert spec.created_at.endswith("+00:00")
    loaded = load_model(tmp_path / "m")
    assert loaded.metadata["extra"] == {"team": "growth"}
    assert "sklearn" in repr(loaded)


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, keel.models; heavy = {'numpy', 'pandas', 'pyarrow', 'sklearn', 'torch', "
        "'xgboost', 'lightgbm', 'onnxruntime', 'cryptography'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_flavor_errors(tmp_path: Path, Xy: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from sklearn.linear_model import Ridge

    from keel.exceptions import InvalidSpecError
    from keel.models import MissingDependencyError

    with pytest.raises(InvalidSpecError, match="Cannot tell the flavor"):
        detect_flavor(object())
    X, y = Xy
    model = Ridge().fit(X, y)
    with pytest.raises(InvalidSpecError, match="not a 'xgboost' model"):
        save_model(model, tmp_path / "m", flavor="xgboost")
    with pytest.raises(InvalidSpecError, match="Did you mean 'pytorch'"):
        save_model(model, tmp_path / "m", flavor="pytorc")
    with pytest.raises(InvalidSpecError, match="writes skops, not 'onnx'"):
        save_model(model, tmp_path / "m", format="onnx")
    with pytest.raises(InvalidSpecError, match="metadata must be JSON"):
        save_model(model, tmp_path / "m", metadata={"when": object()})
    save_model(model, tmp_path / "m")
    monkeypatch.setitem(sys.modules, "skops.io", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'keel\[models\]'"):
        load_model(tmp_path / "m")


def test_public_names_resolve() -> None:
    import keel.models

    assert sorted(set(keel.models.__all__)) == sorted(keel.models.__all__)
    for name in keel.models.__all__:
        assert getattr(keel.models, name) is not None
    assert keel.models.FLAVOR_NAMES == (
        "sklearn",
        "xgboost",
        "lightgbm",
        "pytorch",
        "onnx",
        "python",
    )
