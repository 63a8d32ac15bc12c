"""Signature inference from every input kind, enforcement and coercion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from keel.exceptions import InvalidSpecError
from keel.models import (
    ColumnSpec,
    LoadedModel,
    Signature,
    SignatureError,
    infer_signature,
    load_model,
    save_model,
)


def _types(sig: Signature) -> list[tuple[str, str]]:
    return [(c.name, c.dtype) for c in sig.inputs]


EXPECTED = [
    ("age", "int64"),
    ("income", "double"),
    ("city", "string"),
    ("member", "bool"),
    ("seen", "timestamp[us]"),
]


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": np.array([31, 45, 22], dtype="int64"),
            "income": [1.5, 2.0, 3.25],
            "city": ["paris", "lyon", "nice"],
            "member": [True, False, True],
            "seen": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"]).as_unit("us"),
        }
    )


def test_infer_from_pandas_polars_arrow_and_records(frame: pd.DataFrame) -> None:
    assert _types(infer_signature(frame)) == EXPECTED
    assert _types(infer_signature(pl.from_pandas(frame))) == EXPECTED
    assert _types(infer_signature(pa.Table.from_pandas(frame))) == EXPECTED
    assert _types(infer_signature(frame.to_dict(orient="records"))) == EXPECTED
    assert _types(infer_signature(frame.to_dict(orient="list")))[:4] == EXPECTED[:4]
    assert _types(infer_signature({"a": 1, "b": "x"})) == [("a", "int64"), ("b", "string")]
    categorical = frame.assign(city=frame["city"].astype("category"))
    assert _types(infer_signature(categorical)) == EXPECTED  # dictionary -> value type


def test_infer_from_numpy() -> None:
    X = np.zeros((5, 3), dtype=np.float32)
    assert _types(infer_signature(X)) == [("f0", "float"), ("f1", "float"), ("f2", "float")]
    named = infer_signature(X.astype(np.int64), column_names=["a", "b", "c"])
    assert _types(named) == [("a", "int64"), ("b", "int64"), ("c", "int64")]
    tensor = infer_signature(np.zeros((2, 3, 4, 5)))
    assert tensor.is_tensor and tensor.inputs[0].shape == (-1, 3, 4, 5)
    with_out = infer_signature(X, np.array([0, 1, 1, 0, 1]))
    assert [(c.name, c.dtype, c.shape) for c in with_out.outputs] == [("prediction", "int64", None)]
    proba = infer_signature(X, np.zeros((5, 2)))
    assert proba.outputs[0].shape == (-1, 2)


def test_signature_json_round_trip() -> None:
    sig = Signature(
        inputs=[
            ColumnSpec("a", "double", nullable=False),
            ColumnSpec("img", "float", shape=(-1, 2)),
        ],
        outputs=[ColumnSpec("prediction", "int64")],
    )
    assert Signature.from_dict(json.loads(json.dumps(sig.to_dict()))) == sig
    with pytest.raises(InvalidSpecError, match="repeat"):
        Signature(inputs=[ColumnSpec("a", "double"), ColumnSpec("a", "int64")])


class Echo:
    """Returns the input's first column, to see what the model receives."""

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return df.iloc[:, 0].to_numpy()


@pytest.fixture
def model(tmp_path: Path, frame: pd.DataFrame) -> LoadedModel:
    save_model(Echo(), tmp_path / "m", input_example=frame, unsafe_pickle=True)
    with pytest.warns(UserWarning):
        return load_model(tmp_path / "m", allow_unsafe=True)


def test_violations_name_every_column(model: LoadedModel, frame: pd.DataFrame) -> None:
    bad = frame.drop(columns=["city"]).assign(age=frame["age"].astype(float), extra=1)
    with pytest.raises(SignatureError) as info:
        model.predict(bad)
    msg = str(info.value)
    assert "missing column 'city' (expected string)" in msg
    assert "column 'age': expected int64, got double" in msg
    assert "unexpected column 'extra' (int64)" in msg
    assert "coerce=True" in msg
    err = info.value
    assert err.missing == ["city"]  # type: ignore[attr-defined]
    assert err.extra == ["extra"]  # type: ignore[attr-defined]
    assert err.mismatched == {"age": {"expected": "int64", "got": "double"}}  # type: ignore[attr-defined]
    with pytest.raises(SignatureError, match="column 'income': expected double, got string"):
        model.predict(frame.assign(income=["a", "b", "c"]))


def test_coerce_casts_safely_and_drops_extras(model: LoadedModel, frame: pd.DataFrame) -> None:
    shuffled = frame[["city", "age", "seen", "member", "income"]].assign(
        age=frame["age"].astype(float),  # float -> int64: no loss
        income=np.array([1, 2, 3], dtype="int32"),  # int -> double
        note="extra",
    )
    prepared = model.validate(shuffled, coerce=True)
    assert list(prepared.columns) == [n for n, _ in EXPECTED]
    assert str(prepared["age"].dtype) == "int64" and str(prepared["income"].dtype) == "float64"
    np.testing.assert_array_equal(model.predict(shuffled, coerce=True), frame["age"].to_numpy())
    # polars with nanosecond timestamps and large strings coerce too
    as_ns = pl.from_pandas(frame).with_columns(pl.col("seen").dt.cast_time_unit("ns"))
    with pytest.raises(
        SignatureError, match=r"'seen': expected timestamp\[us\], got timestamp\[ns\]"
    ):
        model.predict(as_ns)
    np.testing.assert_array_equal(model.predict(as_ns, coerce=True), frame["age"].to_numpy())


def test_coerce_refuses_lossy_or_unrelated_casts(model: LoadedModel, frame: pd.DataFrame) -> None:
    with pytest.raises(SignatureError, match=r"'age': expected int64, got double .*truncated"):
        model.predict(frame.assign(age=[1.5, 2.0, 3.0]), coerce=True)
    with pytest.raises(SignatureError, match="'income': expected double, got string"):
        model.predict(frame.assign(income=["1", "2", "3"]), coerce=True)
    with pytest.raises(SignatureError, match="missing column 'city'"):
        model.predict(frame.drop(columns=["city"]), coerce=True)


def test_non_nullable_columns(tmp_path: Path) -> None:
    sig = Signature(inputs=[ColumnSpec("x", "double", nullable=False)])
    save_model(Echo(), tmp_path / "m", signature=sig, unsafe_pickle=True)
    with pytest.warns(UserWarning):
        model = load_model(tmp_path / "m", allow_unsafe=True)
    assert model.predict(pd.DataFrame({"x": [1.0]})).tolist() == [1.0]
    with pytest.raises(SignatureError, match="'x' has 1 null values"):
        model.predict(pd.DataFrame({"x": [1.0, None]}))


def test_numpy_input_against_named_columns(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [0.0, 1.0, 0.0, 1.0]})
    reg = LinearRegression().fit(frame, [1.0, 2.0, 3.0, 5.0])
    save_model(reg, tmp_path / "m", input_example=frame)
    model = load_model(tmp_path / "m")
    # a plain array is taken positionally, and passed on with the fitted feature names
    np.testing.assert_allclose(model.predict(frame.to_numpy()), reg.predict(frame))
    with pytest.raises(SignatureError, match="3 columns but 2 names are expected"):
        model.predict(np.ones((2, 3)))


def test_signature_is_checked_against_the_example(tmp_path: Path) -> None:
    sig = Signature(inputs=[ColumnSpec("x", "double")])
    with pytest.raises(SignatureError, match="missing column 'x'"):
        save_model(
            Echo(), tmp_path / "m", signature=sig, input_example={"y": [1.0]}, unsafe_pickle=True
        )


class Named:
    def predict(self, df: pd.DataFrame) -> np.ndarray:
        assert list(df.columns) == ["x", "y"]
        return (df["x"] + df["y"]).to_numpy()


def test_numpy_input_gets_the_signature_names(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0], "y": [3.0, 4.0]})
    save_model(Named(), tmp_path / "m", input_example=frame, unsafe_pickle=True)
    with pytest.warns(UserWarning):
        model = load_model(tmp_path / "m", allow_unsafe=True)
    assert model.predict(frame.to_numpy()).tolist() == [4.0, 6.0]
    assert model.predict({"x": [1.0], "y": [1.0]}).tolist() == [2.0]
    assert model.predict(pa.table({"y": [1.0], "x": [5.0]})).tolist() == [6.0]
