"""Conformance suite of the metadata store, run on SQLite and PostgreSQL."""

from __future__ import annotations

import math

import pytest

from keel.entities import ArtifactInfo, Metric, RunStatus
from keel.exceptions import (
    AlreadyExistsError,
    InvalidSpecError,
    InvalidStateError,
    NotFoundError,
    ParamConflictError,
)
from keel.store import SqlStore


def _run(store: SqlStore, exp: str = "e", **kw: object) -> str:
    e = store.get_or_create_experiment(exp)
    return store.create_run(e.experiment_id, **kw).run_id  # type: ignore[arg-type]


def test_experiments_create_get_list_delete(store: SqlStore) -> None:
    e = store.create_experiment("churn", tags={"team": "ml"}, description="d")
    assert store.get_experiment(e.experiment_id).name == "churn"
    assert store.get_experiment_by_name("churn").tags == {"team": "ml"}
    with pytest.raises(AlreadyExistsError, match="already exists"):
        store.create_experiment("churn")
    with pytest.raises(NotFoundError, match="Did you mean 'churn'"):
        store.get_experiment_by_name("chrun")
    store.set_experiment_lifecycle(e.experiment_id, "deleted")
    assert [x.name for x in store.list_experiments()] == []
    assert [x.name for x in store.list_experiments("deleted")] == ["churn"]
    with pytest.raises(InvalidStateError, match="restore"):
        store.create_run(e.experiment_id)
    store.set_experiment_lifecycle(e.experiment_id, "active")
    assert [x.name for x in store.list_experiments()] == ["churn"]


def test_run_lifecycle_and_nesting(store: SqlStore) -> None:
    exp = store.create_experiment("e")
    parent = store.create_run(exp.experiment_id, name="parent", tags={"a": "1"})
    child = store.create_run(exp.experiment_id, name="child", parent_run_id=parent.run_id)
    got = store.get_run(child.run_id)
    assert got.parent_run_id == parent.run_id
    assert got.status is RunStatus.RUNNING and got.end_time is None
    store.end_run(child.run_id, "FAILED", failure="Traceback: boom")
    got = store.get_run(child.run_id)
    assert got.status is RunStatus.FAILED and got.failure == "Traceback: boom"
    assert got.end_time is not None and got.end_time >= got.start_time
    store.set_run_lifecycle(parent.run_id, "deleted")
    assert store.get_run(parent.run_id).lifecycle_stage == "deleted"
    runs, _ = store.search_runs([exp.experiment_id])
    assert [r.run_id for r in runs] == [child.run_id]
    store.set_run_lifecycle(parent.run_id, "active")
    runs, _ = store.search_runs([exp.experiment_id])
    assert {r.run_id for r in runs} == {parent.run_id, child.run_id}


def test_unknown_ids_are_clear_errors(store: SqlStore) -> None:
    with pytest.raises(NotFoundError, match="not found"):
        store.get_run("0" * 32)
    with pytest.raises(InvalidSpecError, match="not a run id"):
        store.get_run("nope")
    with pytest.raises(NotFoundError):
        store.create_run("999")
    with pytest.raises(InvalidSpecError, match="experiment id"):
        store.get_experiment("abc")


def test_params_are_immutable_and_batches_atomic(store: SqlStore) -> None:
    run_id = _run(store)
    store.log_batch(run_id, params={"lr": 0.1, "model": "rf"})
    store.log_batch(run_id, params={"lr": 0.1})  # same value: fine
    with pytest.raises(ParamConflictError, match="immutable") as info:
        store.log_batch(
            run_id,
            params={"lr": 0.2, "new": "x"},
            metrics=[Metric("m", 1.0, 0, 1)],
            tags={"t": "1"},
        )
    assert info.value.key == "lr"  # type: ignore[attr-defined]
    run = store.get_run(run_id)
    # nothing of the failed batch was written
    assert run.params == {"lr": "0.1", "model": "rf"}
    assert run.metrics == {} and run.tags == {}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"params": {"bad key!": 1}}, "contains"),
        ({"params": {"k" * 251: 1}}, "limit is 250"),
        ({"params": {"k": "v" * 6001}}, "limit is 6000"),
        ({"tags": {"t": "v" * 8001}}, "limit is 8000"),
        ({"params": {"../x": 1}}, "'\\.\\.'"),
        ({"metrics": [Metric("m", "high", 0, 1)]}, "must be a number"),  # type: ignore[arg-type]
        ({"metrics": [Metric("m", 1.0, 1.5, 1)]}, "step must be an integer"),  # type: ignore[arg-type]
    ],
)
def test_bad_input_is_rejected_without_partial_write(
    store: SqlStore, kwargs: dict[str, object], match: str
) -> None:
    run_id = _run(store)
    with pytest.raises(InvalidSpecError, match=match):
        batch: dict[str, object] = {"metrics": [Metric("ok", 1.0, 0, 1)], "tags": {"ok": "1"}}
        store.log_batch(run_id, **{**batch, **kwargs})  # type: ignore[arg-type]
    run = store.get_run(run_id)
    assert run.metrics == {} and run.tags == {} and run.params == {}


def test_metrics_history_latest_and_special_values(store: SqlStore) -> None:
    run_id = _run(store)
    points = [
        Metric("loss", 0.5, 0, 1000),
        Metric("loss", 0.3, 2, 1001),
        Metric("loss", 0.4, 1, 1002),  # lower step, later time: not the latest
        Metric("nan", math.nan, 0, 1000),
        Metric("pinf", math.inf, 0, 1000),
        Metric("ninf", -math.inf, 0, 1000),
        Metric("tiny", 5e-324, 0, 1000),
    ]
    store.log_batch(run_id, metrics=points)
    store.log_batch(run_id, metrics=points)  # a retried batch stores nothing twice
    hist = store.get_metric_history(run_id, "loss")
    assert [(m.step, m.value, m.timestamp) for m in hist] == [
        (0, 0.5, 1000),
        (1, 0.4, 1002),
        (2, 0.3, 1001),
    ]
    run = store.get_run(run_id)
    assert run.metrics["loss"] == 0.3
    assert math.isnan(run.metrics["nan"])
    assert run.metrics["pinf"] == math.inf and run.metrics["ninf"] == -math.inf
    assert run.metrics["tiny"] == 5e-324
    assert math.isnan(store.get_metric_history(run_id, "nan")[0].value)
    assert store.get_metric_history(run_id, "absent") == []


def test_same_step_and_timestamp_points_in_one_batch_are_all_kept(store: SqlStore) -> None:
    run_id = _run(store)
    store.log_batch(run_id, metrics=[Metric("m", float(i), 0, 5) for i in range(10)])
    assert sorted(m.value for m in store.get_metric_history(run_id, "m")) == [
        float(i) for i in range(10)
    ]


def test_finished_run_rejects_metrics_params_and_artifacts(store: SqlStore) -> None:
    run_id = _run(store)
    store.end_run(run_id)
    with pytest.raises(InvalidStateError, match="FINISHED"):
        store.log_batch(run_id, metrics=[Metric("m", 1.0, 0, 1)])
    with pytest.raises(InvalidStateError):
        store.log_batch(run_id, params={"p": 1})
    with pytest.raises(InvalidStateError):
        store.record_artifacts(run_id, [ArtifactInfo("a.txt", "0" * 64, 1)])
    store.log_batch(run_id, tags={"note": "tags still work"})
    assert store.get_run(run_id).tags["note"] == "tags still work"


def test_tags_overwrite_and_delete(store: SqlStore) -> None:
    run_id = _run(store)
    store.log_batch(run_id, tags={"a": "1"})
    store.log_batch(run_id, tags={"a": "2"})
    assert store.get_run(run_id).tags == {"a": "2"}
    store.delete_tag(run_id, "a")
    assert store.get_run(run_id).tags == {}
    with pytest.raises(NotFoundError):
        store.delete_tag(run_id, "a")


def test_artifact_records(store: SqlStore) -> None:
    run_id = _run(store)
    d = "a" * 64
    store.record_artifacts(
        run_id,
        [
            ArtifactInfo("model/model.skops", d, 10),
            ArtifactInfo("model/env.txt", d, 3),
            ArtifactInfo("x.txt", d, 1),
        ],
    )
    assert [a.path for a in store.list_artifacts(run_id)] == [
        "model/env.txt",
        "model/model.skops",
        "x.txt",
    ]
    assert [a.path for a in store.list_artifacts(run_id, "model")] == [
        "model/env.txt",
        "model/model.skops",
    ]
    assert [a.path for a in store.list_artifacts(run_id, "x.txt")] == ["x.txt"]
    for bad in ["../etc/passwd", "/abs", "a/../../b", "C:/win"]:
        with pytest.raises(InvalidSpecError):
            store.record_artifacts(run_id, [ArtifactInfo(bad, d, 1)])


def test_heartbeat_reaping(store: SqlStore) -> None:
    exp = store.create_experiment("e")
    watched = store.create_run(exp.experiment_id, heartbeat=True).run_id
    unwatched = store.create_run(exp.experiment_id).run_id
    assert store.reap_dead_runs(timeout=60) == []
    import time

    time.sleep(0.05)
    assert store.reap_dead_runs(timeout=0.01) == [watched]
    run = store.get_run(watched)
    assert run.status is RunStatus.FAILED and "heartbeat" in (run.failure or "")
    assert store.get_run(unwatched).status is RunStatus.RUNNING


def _search_fixture(store: SqlStore) -> dict[str, str]:
    exp = store.create_experiment("s")
    ids = {}
    data = [
        ("rf-1", "rf", 0.91, "ml", 5),
        ("rf-2", "rf", 0.85, "ml", 10),
        ("gb-1", "gb", 0.95, "data", 5),
        ("lr-1", "lr", math.nan, None, 1),
        ("none", None, None, "ml", None),
    ]
    for i, (name, model, auc, team, depth) in enumerate(data):
        run = store.create_run(exp.experiment_id, name=name, start_time=1000 + i)
        params = {} if model is None else {"model": model}
        if depth is not None:
            params["depth"] = str(depth)
        store.log_batch(
            run.run_id,
            params=params,
            metrics=[] if auc is None else [Metric("auc", auc, 0, 1)],
            tags={} if team is None else {"team": team},
        )
        ids[name] = run.run_id
    store.end_run(ids["rf-2"], "FAILED")
    return ids


@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        ("metrics.auc > 0.9", {"rf-1", "gb-1"}),
        ("metrics.auc > 0.9 and params.model = 'rf'", {"rf-1"}),
        ("metrics.auc > 0.9 or tags.team = 'ml'", {"rf-1", "gb-1", "rf-2", "none"}),
        ("not metrics.auc > 0.9", {"rf-2", "lr-1", "none"}),
        ("params.model in ('rf', 'lr')", {"rf-1", "rf-2", "lr-1"}),
        ("params.model not in ('rf')", {"gb-1", "lr-1", "none"}),
        ("params.model like 'r%'", {"rf-1", "rf-2"}),
        ("params.model like 'R%'", set()),
        ("params.model ilike 'R%'", {"rf-1", "rf-2"}),
        ("tags.team is null", {"lr-1"}),
        ("metrics.auc is not null", {"rf-1", "rf-2", "gb-1", "lr-1"}),
        ("metrics.auc = nan", {"lr-1"}),
        ("(params.model = 'rf' or params.model = 'gb') and tags.team = 'ml'", {"rf-1", "rf-2"}),
        ("status = 'FAILED'", {"rf-2"}),
        ("run_name like 'rf-%' and status != 'FAILED'", {"rf-1"}),
        ("metrics.unknown > 1", set()),
        ("params.depth = '5'", {"rf-1", "gb-1"}),
    ],
)
def test_search_filters(store: SqlStore, filter: str, expected: set[str]) -> None:
    ids = _search_fixture(store)
    names = {v: k for k, v in ids.items()}
    runs, _ = store.search_runs([], filter=filter)
    assert {names[r.run_id] for r in runs} == expected


def test_search_order_and_paging(store: SqlStore) -> None:
    ids = _search_fixture(store)
    names = {v: k for k, v in ids.items()}
    runs, _ = store.search_runs([], order_by=["metrics.auc DESC"])
    # NaN and missing sort last
    assert [names[r.run_id] for r in runs][:3] == ["gb-1", "rf-1", "rf-2"]
    runs, _ = store.search_runs([], order_by=["metrics.auc"])
    assert [names[r.run_id] for r in runs][:3] == ["rf-2", "rf-1", "gb-1"]
    runs, _ = store.search_runs([], order_by=["params.model ASC", "run_name DESC"])
    assert [names[r.run_id] for r in runs][:4] == ["gb-1", "lr-1", "rf-2", "rf-1"]
    seen = []
    token = None
    while True:
        page, token = store.search_runs([], max_results=2, page_token=token)
        seen += [r.run_id for r in page]
        if token is None:
            break
    assert len(seen) == 5 and len(set(seen)) == 5
    with pytest.raises(InvalidSpecError, match="page_token"):
        store.search_runs([], page_token="garbage")
    with pytest.raises(InvalidSpecError, match="max_results"):
        store.search_runs([], max_results=0)


def test_search_syntax_error_names_position(store: SqlStore) -> None:
    with pytest.raises(InvalidSpecError, match="position"):
        store.search_runs([], filter="metrics.auc > and")


def test_step_outside_64_bits_is_rejected(store: SqlStore) -> None:
    run_id = _run(store)
    with pytest.raises(InvalidSpecError, match="64 bits"):
        store.log_batch(run_id, metrics=[Metric("m", 1.0, 2**63, 1)])
    store.log_batch(run_id, metrics=[Metric("m", 1.0, 2**63 - 1, 1), Metric("m", 2.0, -(2**63), 1)])
    assert [m.step for m in store.get_metric_history(run_id, "m")] == [-(2**63), 2**63 - 1]
