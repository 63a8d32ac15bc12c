"""Serving fixtures: registered test models and live ``keel serve`` processes on 127.0.0.1.

``registered`` registers versions of the ``churn`` model in the test's KEEL_HOME:
1 = a HistGradientBoostingClassifier on 20 float features f0..f19 (skops), 2 =
:class:`~tests.serving.models.Threshold`, 3 = :class:`~tests.serving.models.Faulty`
(raises on ~30% of requests), 4 = :class:`~tests.serving.models.Inverted`.
``serve(...)`` starts a real ``keel serve`` on that home and waits for /readyz.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.server.conftest import free_port, server_env

FEATURES = [f"f{i}" for i in range(20)]
ROOT = Path(__file__).resolve().parents[2]


def make_data(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Features f0..f19 and the label (f0 + f1 > 0)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 20)), columns=FEATURES)
    return X, (X["f0"] + X["f1"] > 0).astype(np.int64)


def records(X: pd.DataFrame) -> list[dict[str, float]]:
    """Rows as JSON records."""
    return [{k: float(v) for k, v in row.items()} for row in X.to_dict(orient="records")]


@pytest.fixture
def registered(keel_home: Path) -> dict[int, str]:
    """Versions 1-4 of model ``churn`` (see the module docstring): {version: uri}."""
    return register_models()


def register_models() -> dict[int, str]:
    """Register versions 1-4 of ``churn`` in the current configuration's stores."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    import keel
    from tests.serving.models import Faulty, Inverted, Threshold

    X, y = make_data(2000)
    models: list[Any] = [
        HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(X, y),
        Threshold(),
        Faulty(),
        Inverted(),
    ]
    from keel.models import ColumnSpec, Signature, infer_signature

    signature = Signature(
        infer_signature(X.head(5)).inputs, (ColumnSpec("prediction", "int64", False),)
    )
    out: dict[int, str] = {}
    for i, model in enumerate(models):
        with keel.start_run(log_environment=False):
            info = keel.log_model(
                model,
                "model",
                input_example=X.head(5) if i == 0 else None,
                signature=None if i == 0 else signature,
                registered_model_name="churn",
            )
        assert info.version is not None
        out[info.version.version] = f"models:/churn/{info.version.version}"
    return out


class ServeProcess:
    """A real ``keel serve`` process."""

    def __init__(self, home: Path, *args: str, **env: str) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = args
        self.env = env
        self.log = home / f"serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> ServeProcess:
        """Start and wait until /readyz answers 200."""
        cmd = [sys.executable, "-m", "keel", "serve", "--port", str(self.port), *self.args]
        env = server_env(self.home, **{"KEEL_FLUSH_INTERVAL": "0.2", **self.env})
        env["PYTHONPATH"] = str(ROOT)  # the test models (tests.serving.models) import from here
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"keel serve exited early:\n{self.log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"keel serve not ready:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        """SIGTERM (a clean shutdown flushes the prediction log), then SIGKILL."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def serve(keel_home: Path) -> Iterator[Callable[..., ServeProcess]]:
    """``serve(*cli_args, **env)`` starts ``keel serve`` on the test's KEEL_HOME."""
    started: list[ServeProcess] = []

    def start(*args: str, **env: str) -> ServeProcess:
        proc = ServeProcess(keel_home, *args, **env).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
