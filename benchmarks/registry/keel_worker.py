"""keel side of the registry benchmark. Runs inside the project venv.

Usage (normally only via ``run.py``)::

    KEEL_HOME=<tmp>/.keel python keel_worker.py '<Request JSON>'

In a fresh process, against keel's default embedded SQLite store under
``$KEEL_HOME`` (no server): logs one scikit-learn model in one run, registers
it ``versions`` times, sets an alias, resolves it ``resolves`` times and loads
the model through the alias ``loads`` times. Prints one JSON object.

With ``profile_dir`` set, each timed section runs under pyinstrument and a
text report per section is written there (slower; numbers are then not for
the table).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from registry_common import (
    ALIAS,
    EXPERIMENT,
    MODEL,
    WARM_UP_MODEL,
    Config,
    Request,
    emit,
    json_stdout,
    latency,
    now,
    registration_profile,
    training_data,
)


def _profiler(profile_dir: str | None) -> Callable[[str], AbstractContextManager[None]]:
    """``section(name)``: a context manager profiling the block into ``<dir>/<name>.txt``."""

    @contextmanager
    def section(name: str) -> Iterator[None]:
        assert profile_dir is not None
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
        try:
            yield
        finally:
            profiler.stop()
            out = Path(profile_dir)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"keel-{name}.txt").write_text(
                profiler.output_text(unicode=False, color=False, show_all=False),
                encoding="utf-8",
            )
            (out / f"keel-{name}.html").write_text(profiler.output_html(), encoding="utf-8")

    if profile_dir:
        return section
    return lambda _name: nullcontext()


def run(cfg: Config, profile_dir: str | None) -> dict[str, Any]:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    import keel
    import keel.registry

    profiled = _profiler(profile_dir)
    X_list, y_list, X_pred_list = training_data(cfg)
    X, y, X_pred = np.array(X_list), np.array(y_list), np.array(X_pred_list)
    model = LogisticRegression(max_iter=1_000).fit(X, y)
    expected = model.predict(X_pred).tolist()

    # -- one run, one logged model (not timed) -------------------------------------------
    with keel.start_run(experiment=EXPERIMENT, run_name="train") as active:
        keel.log_metric("accuracy", float(model.score(X, y)))
        keel.log_model(model, "model", input_example=X[:5])
        run_id = active.run_id
    keel.flush()
    source = f"runs:/{run_id}/model"
    # Warm-up (not timed), as on MLflow's side: the first registration creates the
    # store's registry rows and loads lazily imported code; it goes to a separate model.
    keel.registry.register_model(source, WARM_UP_MODEL)

    # -- 1. register `versions` versions ---------------------------------------------------
    per_call: list[float] = []
    with profiled("register"):
        t0 = now()
        for _ in range(cfg.versions):
            t1 = now()
            keel.registry.register_model(source, MODEL)
            per_call.append(now() - t1)
        register_s = now() - t0
    numbers = sorted(int(mv.version) for mv in keel.registry.list_versions(MODEL))

    # -- 2. alias + resolve ------------------------------------------------------------------
    uri = f"models:/{MODEL}@{ALIAS}"
    t0 = now()
    keel.registry.set_alias(MODEL, ALIAS, cfg.alias_version)
    set_alias_s = now() - t0
    keel.registry.resolve(uri)  # warm-up, not timed
    resolve_samples: list[float] = []
    resolved: set[int] = set()
    with profiled("resolve"):
        for _ in range(cfg.resolves):
            t1 = now()
            found = keel.registry.resolve(uri)
            resolve_samples.append(now() - t1)
            assert found.version is not None
            resolved.add(int(found.version.version))

    # -- 3. load through the alias + predict --------------------------------------------------
    # The first load copies the files into keel's local model cache; every load
    # (first or not) verifies each file's sha256 against the registry before use.
    t1 = now()
    first = keel.registry.load(uri)
    predictions: list[list[int]] = [first.predict(X_pred).tolist()]
    first_s = now() - t1
    load_s: list[float] = []
    total_s: list[float] = []
    with profiled("load"):
        for _ in range(cfg.loads):
            t1 = now()
            loaded = keel.registry.load(uri)
            t2 = now()
            predictions.append(loaded.predict(X_pred).tolist())
            t3 = now()
            load_s.append(t2 - t1)
            total_s.append(t3 - t1)

    # What the per-load integrity check costs (not part of any row): Registry.materialize
    # is the step of keel.registry.load that re-hashes every cached file (BLAKE3)
    # against the registry's manifest before anything is deserialised.
    registry = keel.registry.default()
    found = registry.resolve(uri)
    verify_samples: list[float] = []
    for _ in range(cfg.loads):
        t1 = now()
        folder = registry.materialize(found)
        verify_samples.append(now() - t1)
    files = [f for f in folder.rglob("*") if f.is_file() and f.name != ".complete"]

    return {
        "register": {
            "versions": cfg.versions,
            "seconds": register_s,
            "versions_per_s": cfg.versions / register_s,
            "per_call_s": registration_profile(per_call),
            "stored_versions": len(numbers),
            "version_numbers_ok": numbers == list(range(1, cfg.versions + 1)),
            "api": "keel.registry.register_model('runs:/<run_id>/model', name)",
        },
        "alias": {
            "set_alias_s": set_alias_s,
            "resolve_s": latency(resolve_samples),
            "resolved_versions": sorted(resolved),
            "api": "keel.registry.resolve('models:/name@alias')",
        },
        "load": {
            "first_load_predict_s": first_s,
            "load_s": latency(load_s),
            "load_predict_s": latency(total_s),
            "predictions_match": all(p == expected for p in predictions),
            "api": "keel.registry.load(uri).predict(X)",
            "model_type": f"{type(first).__module__}.{type(first).__qualname__}",
            "verify_cached_files_s": latency(verify_samples),
            "model_files": len(files),
            "model_bytes": sum(f.stat().st_size for f in files),
        },
        "serialization_format": first.spec.format,
        "expected_predictions": expected,
        "sklearn_version": _dist_version("scikit-learn"),
    }


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def _keel_version() -> str:
    import keel

    version = getattr(keel, "__version__", None)
    return str(version) if version else _dist_version("keel")


def main() -> None:
    with json_stdout() as out:
        req = Request.from_argv(sys.argv[1])
        cfg = Config.from_json(req.config)
        import sqlite3

        if not os.environ.get("KEEL_HOME", "").startswith(req.workdir):
            raise SystemExit("KEEL_HOME must point into the worker's temporary directory")
        result = run(cfg, req.profile_dir)
        result["tool"] = "keel"
        result["version"] = _keel_version()
        result["sqlite_version"] = sqlite3.sqlite_version
        result["python"] = sys.version.split()[0]
        result["profiled"] = bool(req.profile_dir)
        emit(out, result)


if __name__ == "__main__":
    main()
