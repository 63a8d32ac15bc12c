"""Pickle needs opt-in on save and load; skops types outside the trusted list are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from keel.exceptions import IntegrityError, InvalidSpecError, KeelError
from keel.models import (
    DEFAULT_TRUSTED_TYPES,
    SPEC_FILE,
    UnsafeModelWarning,
    UntrustedModelError,
    load_model,
    save_model,
)


class Clipper(BaseEstimator, TransformerMixin):
    """A custom transformer: skops does not know it."""

    def __init__(self, limit: float = 1.0) -> None:
        self.limit = limit

    def fit(self, X: Any, y: Any = None) -> Clipper:
        return self

    def transform(self, X: Any) -> Any:
        return np.clip(X, -self.limit, self.limit)


class Generic:
    def predict(self, X: Any) -> Any:
        return np.zeros(len(X))


@pytest.fixture(scope="module")
def Xy() -> tuple[np.ndarray, np.ndarray]:
    return make_classification(n_samples=80, n_features=5, random_state=0)


def test_untrusted_error_is_a_keel_error() -> None:
    assert issubclass(UntrustedModelError, KeelError)
    assert issubclass(UnsafeModelWarning, UserWarning)


def test_generic_object_refused_without_opt_in(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpecError, match=r"unsafe_pickle=True.*allow_unsafe=True"):
        save_model(Generic(), tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_pickle_refused_on_load_without_allow_unsafe(tmp_path: Path) -> None:
    spec = save_model(Generic(), tmp_path / "m", unsafe_pickle=True)
    assert spec.unsafe and spec.to_dict()["unsafe"] is True
    with pytest.raises(UntrustedModelError, match="allow_unsafe=True"):
        load_model(tmp_path / "m")
    with pytest.warns(UnsafeModelWarning):
        assert load_model(tmp_path / "m", allow_unsafe=True).predict(np.ones((2, 1))).tolist() == [
            0,
            0,
        ]


def test_unsafe_flag_cannot_be_edited_away(tmp_path: Path) -> None:
    save_model(Generic(), tmp_path / "m", unsafe_pickle=True)
    spec_file = tmp_path / "m" / SPEC_FILE
    data = json.loads(spec_file.read_text())
    data["unsafe"] = False
    spec_file.write_text(json.dumps(data))
    with pytest.raises(UntrustedModelError):
        load_model(tmp_path / "m")  # the format (cloudpickle) decides, not the flag


def test_default_trusted_types_cover_tree_models(tmp_path: Path, Xy: Any) -> None:
    X, y = Xy
    gb = GradientBoostingClassifier(n_estimators=3, random_state=0).fit(X, y)
    spec = save_model(gb, tmp_path / "m")
    assert "sklearn.tree._tree.Tree" in spec.flavor_config["untrusted_types"]
    assert "sklearn.tree._tree.Tree" in DEFAULT_TRUSTED_TYPES
    np.testing.assert_array_equal(load_model(tmp_path / "m").predict(X), gb.predict(X))


def test_custom_types_need_trust_at_save(tmp_path: Path, Xy: Any) -> None:
    X, y = Xy
    pipe = make_pipeline(Clipper(0.5), LogisticRegression()).fit(X, y)
    name = f"{__name__}.Clipper"
    with pytest.raises(UntrustedModelError, match=rf"{name}.*trusted_types=") as info:
        save_model(pipe, tmp_path / "m")
    assert info.value.untrusted == [name]  # type: ignore[attr-defined]
    spec = save_model(pipe, tmp_path / "m", trusted_types=[name])
    assert spec.trusted_types == (name,)
    # recorded at save time -> accepted on load
    np.testing.assert_array_equal(load_model(tmp_path / "m").predict(X), pipe.predict(X))


def test_untrusted_types_refused_on_load(tmp_path: Path, Xy: Any) -> None:
    X, y = Xy
    pipe = make_pipeline(Clipper(0.5), LogisticRegression()).fit(X, y)
    name = f"{__name__}.Clipper"
    save_model(pipe, tmp_path / "m", trusted_types=[name])
    spec_file = tmp_path / "m" / SPEC_FILE
    data = json.loads(spec_file.read_text())
    data["trusted_types"] = []  # as if saved by someone else without recording trust
    spec_file.write_text(json.dumps(data))
    with pytest.raises(UntrustedModelError, match=rf"{name}.*load_model\(\.\.\., trusted_types="):
        load_model(tmp_path / "m")
    loaded = load_model(tmp_path / "m", trusted_types=[name])
    np.testing.assert_array_equal(loaded.predict(X), pipe.predict(X))


def test_spec_paths_and_missing_files(tmp_path: Path, Xy: Any) -> None:
    X, y = Xy
    save_model(LogisticRegression().fit(X, y), tmp_path / "m")
    spec_file = tmp_path / "m" / SPEC_FILE
    data = json.loads(spec_file.read_text())
    (tmp_path / "m" / "model.skops").unlink()
    with pytest.raises(IntegrityError, match=r"model\.skops"):
        load_model(tmp_path / "m")
    data["files"] = ["../outside.skops"]
    spec_file.write_text(json.dumps(data))
    with pytest.raises(InvalidSpecError, match="inside the model directory"):
        load_model(tmp_path / "m")
    with pytest.raises(InvalidSpecError, match=r"no keel-model\.json"):
        load_model(tmp_path)
    data["flavor"] = "sklern"
    data["files"] = []
    spec_file.write_text(json.dumps(data))
    with pytest.raises(InvalidSpecError, match="Did you mean 'sklearn'"):
        load_model(tmp_path / "m")


def test_errors_pickle(tmp_path: Path) -> None:
    import pickle

    err = UntrustedModelError("bad", untrusted=["x.Y"])
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is UntrustedModelError and back.untrusted == ["x.Y"]  # type: ignore[attr-defined]
