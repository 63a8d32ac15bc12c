"""export_onnx: skl2onnx conversion plus a parity report against scikit-learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("skl2onnx")
pytest.importorskip("onnxruntime")

from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from keel.models import export_onnx, infer_signature, load_model, save_model


def test_classifier_parity_on_numpy(tmp_path: Path) -> None:
    X, y = make_classification(n_samples=120, n_features=6, random_state=0)
    clf = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    report = export_onnx(clf, X, tmp_path / "clf.onnx")
    assert report.ok, report
    assert report.classifier and report.n_rows == 120 and report.label_mismatches == 0
    assert report.max_abs_diff_proba is not None and report.max_abs_diff_proba < 1e-4
    # the exported file is a regular onnx-flavor model
    save_model(report.path, tmp_path / "m", input_example=X[:5])
    loaded = load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), atol=1e-4)


def test_column_transformer_pipeline_on_dataframe(tmp_path: Path) -> None:
    X, y = make_classification(
        n_samples=150, n_features=3, n_informative=2, n_redundant=0, random_state=2
    )
    frame = pd.DataFrame(
        {"a": X[:, 0], "b": X[:, 1], "city": np.where(X[:, 2] > 0, "paris", "lyon")}
    )
    pipe = Pipeline(
        [
            (
                "pre",
                ColumnTransformer(
                    [("num", StandardScaler(), ["a", "b"]), ("cat", OneHotEncoder(), ["city"])]
                ),
            ),
            ("clf", LogisticRegression()),
        ]
    ).fit(frame, y)
    report = export_onnx(pipe, frame, tmp_path / "pipe.onnx")
    assert report.ok, report
    save_model(report.path, tmp_path / "m", input_example=frame.head())
    loaded = load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(frame), pipe.predict(frame))


def test_regressor_and_signature_only(tmp_path: Path) -> None:
    X, y = make_regression(n_samples=100, n_features=4, random_state=0)
    reg = RandomForestRegressor(n_estimators=5, max_depth=4, random_state=0).fit(X, y)
    report = export_onnx(reg, X, tmp_path / "reg.onnx")
    assert not report.classifier and report.max_abs_diff_predictions is not None
    assert report.ok, report
    strict = export_onnx(reg, X, tmp_path / "reg2.onnx", tolerance=0.0)
    assert strict.ok is (strict.max_abs_diff_predictions == 0.0)
    unchecked = export_onnx(reg, infer_signature(X), tmp_path / "reg3.onnx")
    assert unchecked.n_rows == 0 and not unchecked.ok
    assert Path(unchecked.path).is_file()
