"""The fluent tracking API end to end, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

import keel
from keel.entities import RunStatus
from keel.exceptions import (
    InvalidSpecError,
    InvalidStateError,
    NotFoundError,
    ParamConflictError,
)


def test_run_records_everything(backend_env: str, tmp_path: Path) -> None:
    with keel.start_run(
        experiment="churn", run_name="rf", tags={"team": "ml"}, description="d"
    ) as run:
        keel.log_param("model", "rf")
        keel.log_params({"depth": 8, "lr": 0.1})
        for step in range(3):
            keel.log_metric("loss", 1.0 / (step + 1), step=step)
        keel.log_metrics({"auc": 0.9, "f1": 0.8}, step=2)
        keel.set_tag("stage", "dev")
        keel.set_tags({"a": 1})
        (tmp_path / "file.txt").write_text("hi")
        keel.log_artifact(tmp_path / "file.txt", "docs")
        keel.log_text("text", "notes/a.txt")
        keel.log_dict({"x": 1}, "conf/c.json")
    got = keel.get_run(run.run_id)
    assert got.name == "rf" and got.status is RunStatus.FINISHED and got.description == "d"
    assert got.params == {"model": "rf", "depth": "8", "lr": "0.1"}
    assert got.metrics == {"loss": pytest.approx(1 / 3), "auc": 0.9, "f1": 0.8}
    assert got.tags["team"] == "ml" and got.tags["stage"] == "dev" and got.tags["a"] == "1"
    assert got.tags["keel.python"]
    hist = keel.get_metric_history(run.run_id, "loss")
    assert [(m.step, m.value) for m in hist] == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    client = keel.get_client()
    assert [a.path for a in client.list_artifacts(run.run_id)] == [
        "conf/c.json",
        "docs/file.txt",
        "notes/a.txt",
    ]
    assert json.loads(client.read_artifact(run.run_id, "conf/c.json")) == {"x": 1}
    out = keel.download_artifacts(run.run_id, "docs", tmp_path / "dl")
    assert (out / "file.txt").read_text() == "hi"
    one = keel.download_artifact(run.run_id, "notes/a.txt", tmp_path / "one")
    assert one.read_text() == "text"


def test_nested_runs_and_active_run_rules(backend_env: str) -> None:
    with keel.start_run(experiment="e") as parent:
        with pytest.raises(InvalidStateError, match="nested=True"):
            keel.start_run(experiment="e")
        with keel.start_run(experiment="e", nested=True) as child:
            assert keel.active_run() is child
        assert keel.active_run() is parent
    assert keel.get_run(child.run_id).parent_run_id == parent.run_id
    assert keel.active_run() is None
    with pytest.raises(InvalidStateError, match="No active run"):
        keel.log_metric("m", 1.0)


def test_exception_marks_failed_with_traceback(backend_env: str) -> None:
    with pytest.raises(ZeroDivisionError), keel.start_run(experiment="e") as run:
        keel.log_metric("before", 1.0)
        _ = 1 / 0
    got = keel.get_run(run.run_id)
    assert got.status is RunStatus.FAILED
    assert (
        got.failure is not None
        and "ZeroDivisionError" in got.failure
        and "Traceback" in got.failure
    )
    assert got.metrics == {"before": 1.0}  # buffered points were flushed


def test_keyboard_interrupt_marks_killed(backend_env: str) -> None:
    with pytest.raises(KeyboardInterrupt), keel.start_run(experiment="e") as run:
        raise KeyboardInterrupt
    assert keel.get_run(run.run_id).status is RunStatus.KILLED


def test_params_immutable_and_finished_run_rejects_logging(
    backend_env: str, tmp_path: Path
) -> None:
    with keel.start_run(experiment="e") as run:
        keel.log_param("lr", 0.1)
        keel.log_param("lr", 0.1)
        with pytest.raises(ParamConflictError, match="immutable"):
            keel.log_param("lr", 0.2)
    client = keel.get_client()
    with pytest.raises(InvalidStateError, match="FINISHED"):
        client.log_params(run.run_id, {"x": 1})
    (tmp_path / "f").write_text("x")
    with pytest.raises(InvalidStateError, match="FINISHED"):
        client.log_artifact(run.run_id, tmp_path / "f")
    with pytest.raises(InvalidStateError):
        client.log_metric(run.run_id, "m", 1.0)


def test_buffered_metric_to_finished_run_surfaces_on_flush(backend_env: str) -> None:
    with keel.start_run(experiment="e") as run:
        keel.get_client().store.end_run(run.run_id)  # ended elsewhere meanwhile
        keel.log_metric("m", 1.0)
        with pytest.raises(InvalidStateError, match="FINISHED"):
            keel.flush()


@pytest.mark.parametrize(
    "bad",
    ["../escape.txt", "/etc/passwd", "a/../../b.txt", ""],
)
def test_artifact_paths_outside_the_run_are_rejected(bad: str) -> None:
    with keel.start_run(experiment="e"), pytest.raises(InvalidSpecError):
        keel.log_text("x", bad)


def test_bad_keys_and_values_are_rejected() -> None:
    with keel.start_run(experiment="e") as run:
        with pytest.raises(InvalidSpecError, match="contains"):
            keel.log_metric("bad key!", 1.0)
        with pytest.raises(InvalidSpecError, match="must be a number"):
            keel.log_metric("m", "x")  # type: ignore[arg-type]
        with pytest.raises(InvalidSpecError, match="limit is 6000"):
            keel.log_param("p", "x" * 6001)
        with pytest.raises(InvalidSpecError, match="name"):
            keel.start_run(experiment="", nested=True)
    assert keel.get_run(run.run_id).metrics == {}
    with pytest.raises(NotFoundError):
        keel.get_run("f" * 32)


def test_nan_and_inf_round_trip(backend_env: str) -> None:
    with keel.start_run(experiment="e") as run:
        keel.log_metric("nan", math.nan, step=0)
        keel.log_metric("pinf", math.inf, step=0)
        keel.log_metric("ninf", -math.inf, step=0)
    got = keel.get_run(run.run_id).metrics
    assert math.isnan(got["nan"]) and got["pinf"] == math.inf and got["ninf"] == -math.inf
    [point] = keel.get_metric_history(run.run_id, "ninf")
    assert point.value == -math.inf


def test_same_step_points_in_a_tight_loop_are_all_kept() -> None:
    with keel.start_run(experiment="e") as run:
        for i in range(500):
            keel.log_metric("m", float(i))  # default step 0, same millisecond
    assert len(keel.get_metric_history(run.run_id, "m")) == 500


def test_search_runs_outputs(backend_env: str) -> None:
    for i in range(5):
        with keel.start_run(experiment="s", run_name=f"r{i}"):
            keel.log_params({"model": "rf" if i % 2 else "gb"})
            keel.log_metric("auc", i / 10)
    runs = keel.search_runs("s", filter="params.model = 'rf'", order_by=["metrics.auc DESC"])
    assert [r.name for r in runs] == ["r3", "r1"]
    page = keel.search_runs(["s"], max_results=2)
    assert len(page) == 2 and page.next_page_token
    df = keel.search_runs("s", output="pandas", order_by=["run_name"])
    assert list(df["run_name"]) == [f"r{i}" for i in range(5)]
    assert str(df["start_time"].dtype).startswith("datetime64")
    pl_df = keel.search_runs("s", output="polars", filter="metrics.auc >= 0.3")
    assert pl_df.height == 2 and "metrics.auc" in pl_df.columns
    assert len(keel.search_runs()) == 5  # all experiments


def test_log_figure_and_table(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import polars as pl
    import pyarrow.parquet as pq

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    with keel.start_run(experiment="e") as run:
        keel.log_figure(fig, "plots/line.png")
        keel.log_table(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}), "tables/t.parquet")
        keel.log_table(pl.DataFrame({"c": [1.5]}), "tables/p.parquet")
        with pytest.raises(InvalidSpecError, match="parquet"):
            keel.log_table(pd.DataFrame({"a": [1]}), "t.csv")
        with pytest.raises(InvalidSpecError, match="DataFrame"):
            keel.log_table([1, 2], "t.parquet")
    plt.close(fig)
    client = keel.get_client()
    assert client.read_artifact(run.run_id, "plots/line.png").startswith(b"\x89PNG")
    path = keel.download_artifact(run.run_id, "tables/t.parquet", tmp_path)
    assert pq.read_table(path).to_pydict() == {"a": [1, 2], "b": ["x", "y"]}


def test_environment_and_git_capture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.email=a@b", "-c", "user.name=a"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=repo, check=True)
    (repo / "train.py").write_text("print(1)\n")
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
    (repo / "train.py").write_text("print(2)\n")  # dirty
    monkeypatch.chdir(repo)
    from keel.tracking import environment

    environment._process.cache_clear()
    with keel.start_run(experiment="e") as run:
        pass
    got = keel.get_run(run.run_id)
    assert got.tags["keel.git.branch"] == "main"
    assert got.tags["keel.git.dirty"] == "true"
    assert len(got.tags["keel.git.commit"]) == 40
    assert got.environment_digest is not None
    env = json.loads(keel.get_client().objects.get_bytes(got.environment_digest))
    assert "print(2)" in env["git"]["diff"]
    assert env["python"]["version"] and env["system"]["cpu_count"] >= 1
    assert "keel" in env["packages"] and env["system"]["memory_bytes"] > 0
    environment._process.cache_clear()


def test_seed_everything_sets_and_records() -> None:
    import random

    import numpy as np

    from keel.tracking import fluent

    try:
        with keel.start_run(experiment="e") as run:
            seeded = keel.seed_everything(42)
            a = (random.random(), np.random.rand())
            keel.seed_everything(42)
            assert (random.random(), np.random.rand()) == a
        assert seeded["numpy"] is True
        assert keel.get_run(run.run_id).tags["keel.seed"] == "42"
        with keel.start_run(experiment="e") as later:
            pass
        assert keel.get_run(later.run_id).tags["keel.seed"] == "42"
        with pytest.raises(InvalidSpecError):
            keel.seed_everything(-1)
    finally:
        fluent.default_tags.clear()


def test_autolog_sklearn(tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(n_samples=200, n_features=5, random_state=0)
    keel.autolog(experiment="auto")
    try:
        model = make_pipeline(
            StandardScaler(), RandomForestClassifier(n_estimators=5, random_state=0)
        )
        model.fit(X, y)
        with keel.start_run(experiment="auto", run_name="mine") as mine:
            LinearRegression().fit(X, y.astype(float))
    finally:
        keel.autolog(disable=True)
    runs = keel.search_runs("auto", order_by=["start_time"])
    assert [r.name for r in runs] == ["Pipeline", "mine"]
    pipe_run = runs[0]
    assert pipe_run.status is RunStatus.FINISHED
    assert pipe_run.params["randomforestclassifier__n_estimators"] == "5"
    assert 0.5 < pipe_run.metrics["training_accuracy"] <= 1.0
    assert "training_roc_auc" in pipe_run.metrics
    path = keel.download_artifact(pipe_run.run_id, "model/model.skops", tmp_path)
    loaded = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    assert (loaded.predict(X) == model.predict(X)).all()
    assert "training_r2" in keel.get_run(mine.run_id).metrics
    # disabled: fitting logs nothing more
    RandomForestClassifier(n_estimators=2).fit(X, y)
    assert len(keel.search_runs("auto")) == 2


def test_resume_run_by_id() -> None:
    with keel.start_run(experiment="e") as run:
        keel.log_metric("m", 1.0, step=0)
    with keel.start_run(run_id=run.run_id):
        keel.log_metric("m", 2.0, step=1)
    got = keel.get_run(run.run_id)
    assert got.metrics["m"] == 2.0 and got.status is RunStatus.FINISHED


@pytest.mark.parametrize("store_kind", ["sqlite", "postgres"])
def test_artifacts_on_s3_end_to_end(
    store_kind: str,
    s3_bucket: str,
    s3_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    if store_kind == "postgres":
        monkeypatch.setenv("KEEL_STORE_URI", request.getfixturevalue("postgres_url"))
    monkeypatch.setenv("KEEL_ARTIFACT_URI", s3_bucket)
    monkeypatch.setenv("KEEL_S3_ENDPOINT_URL", s3_endpoint)
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)) * 1000)
    with keel.start_run(experiment="s3") as run:
        keel.log_artifacts(src, "bundle")
        keel.log_text("same", "x/one.txt")
        keel.log_text("same", "x/two.txt")  # identical content: one object
    client = keel.get_client()
    assert client.objects.uri == s3_bucket
    out = keel.download_artifacts(run.run_id, "bundle", tmp_path / "dl")
    assert (out / "a.txt").read_text() == "alpha"
    assert (out / "sub" / "b.bin").read_bytes() == (src / "sub" / "b.bin").read_bytes()
    infos = {a.path: a.digest for a in client.list_artifacts(run.run_id, "x")}
    assert infos["x/one.txt"] == infos["x/two.txt"]
    env_digest = keel.get_run(run.run_id).environment_digest
    assert env_digest is not None and client.objects.exists(env_digest)
