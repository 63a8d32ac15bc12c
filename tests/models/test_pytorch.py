"""The pytorch flavor: safetensors weights plus an importable class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from keel.exceptions import InvalidSpecError
from keel.models import (
    UnsafeModelWarning,
    UntrustedModelError,
    detect_flavor,
    load_model,
    save_model,
)

torch = pytest.importorskip("torch")


class TinyNet(torch.nn.Module):
    def __init__(self, n_in: int, hidden: int = 8) -> None:
        super().__init__()
        self.dropout = torch.nn.Dropout(0.5)
        self.body = torch.nn.Sequential(
            torch.nn.Linear(n_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 2)
        )

    def forward(self, x: Any) -> Any:
        return self.body(self.dropout(x))


class ImageNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.flat = torch.nn.Flatten()
        self.linear = torch.nn.Linear(18, 3)

    def forward(self, x: Any) -> Any:
        return self.linear(self.flat(x))


@pytest.fixture
def X() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(50, 8))


def test_module_round_trips_via_safetensors(tmp_path: Path, X: np.ndarray) -> None:
    torch.manual_seed(0)
    net = TinyNet(n_in=8, hidden=16)
    assert detect_flavor(net) == "pytorch"
    spec = save_model(
        net, tmp_path / "m", input_example=X[:4], model_config={"n_in": 8, "hidden": 16}
    )
    assert spec.format == "safetensors" and spec.files == ("model.safetensors",)
    assert not spec.unsafe and {"torch", "safetensors"} <= set(spec.requirements)
    assert spec.flavor_config["class"] == f"{__name__}:TinyNet"
    assert net.training  # saving did not leave the user's module in eval mode
    loaded = load_model(tmp_path / "m")
    assert not loaded.raw.training
    net.eval()
    with torch.no_grad():
        expected = net(torch.from_numpy(X.astype(np.float32))).numpy()
    got = loaded.predict(X)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    assert loaded.signature is not None
    assert loaded.signature.outputs[0].shape == (-1, 2)
    with pytest.raises(AttributeError, match="no predict_proba"):
        loaded.predict_proba(X)


def test_wrong_or_missing_model_config_fails_at_save(tmp_path: Path) -> None:
    net = TinyNet(n_in=8)
    with pytest.raises(InvalidSpecError, match="model_config"):
        save_model(net, tmp_path / "m")
    with pytest.raises(InvalidSpecError, match="does not have the saved model's parameters"):
        save_model(net, tmp_path / "m", model_config={"n_in": 3})
    with pytest.raises(InvalidSpecError, match="importable module"):
        save_model(torch.nn.Sequential(torch.nn.Linear(2, 2)), tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_tensor_signature(tmp_path: Path) -> None:
    images = np.random.default_rng(0).random((4, 2, 3, 3)).astype(np.float32)
    net = ImageNet()
    save_model(net, tmp_path / "m", input_example=images)
    loaded = load_model(tmp_path / "m")
    assert loaded.signature is not None and loaded.signature.is_tensor
    assert loaded.signature.inputs[0].shape == (-1, 2, 3, 3)
    with torch.no_grad():
        expected = net(torch.from_numpy(images)).numpy()
    np.testing.assert_array_equal(loaded.predict(images), expected)
    from keel.models import SignatureError

    with pytest.raises(SignatureError, match=r"expected shape \(-1, 2, 3, 3\)"):
        loaded.predict(images[:, :1])


def test_loading_checks_the_class_is_a_module(tmp_path: Path) -> None:
    import json

    save_model(TinyNet(n_in=8), tmp_path / "m", model_config={"n_in": 8})
    spec_file = tmp_path / "m" / "keel-model.json"
    spec = json.loads(spec_file.read_text())
    spec["flavor_config"]["class"] = "os:system"
    spec_file.write_text(json.dumps(spec))
    with pytest.raises(UntrustedModelError, match=r"not a subclass of torch\.nn"):
        load_model(tmp_path / "m")


@pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")
def test_torchscript_needs_unsafe_pickle(tmp_path: Path, X: np.ndarray) -> None:
    net = TinyNet(n_in=8).eval()
    scripted = torch.jit.trace(net, torch.zeros(1, 8))
    with pytest.raises(InvalidSpecError, match="unsafe_pickle=True"):
        save_model(scripted, tmp_path / "m")
    spec = save_model(scripted, tmp_path / "m", unsafe_pickle=True)
    assert spec.format == "torchscript" and spec.unsafe
    with pytest.raises(UntrustedModelError, match="allow_unsafe=True"):
        load_model(tmp_path / "m")
    with pytest.warns(UnsafeModelWarning):
        loaded = load_model(tmp_path / "m", allow_unsafe=True)
    with torch.no_grad():
        expected = net(torch.from_numpy(X.astype(np.float32))).numpy()
    np.testing.assert_allclose(loaded.predict(X), expected, rtol=1e-6)
