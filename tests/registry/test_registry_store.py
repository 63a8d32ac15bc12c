"""Registry storage on SQLite and PostgreSQL: versions, stages, aliases, approvals, audit."""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

import pytest
import sqlalchemy as sa

from keel.exceptions import (
    AlreadyExistsError,
    InvalidSpecError,
    InvalidStateError,
    NotFoundError,
    PermissionDeniedError,
)
from keel.store import SqlStore
from keel.store._registry import SqlRegistry

SPEC = {"flavor": "sklearn", "format": "skops", "unsafe": False}


def _version(reg: SqlRegistry, name: str = "churn", actor: str = "alice", **kw: Any) -> int:
    mv = reg.create_version(
        name,
        actor=actor,
        source="runs:/" + "a" * 32 + "/model",
        run_id=kw.pop("run_id", None),
        manifest_digest="d" * 64,
        spec=kw.pop("spec", SPEC),
        metrics=kw.pop("metrics", {"auc": 0.9}),
        datasets=kw.pop("datasets", []),
        **kw,
    )
    return mv.version


@pytest.fixture
def reg(store: SqlStore) -> SqlRegistry:
    return store.registry


def test_versions_autoincrement_and_errors_list_what_exists(reg: SqlRegistry) -> None:
    assert [_version(reg) for _ in range(3)] == [1, 2, 3]
    model = reg.get_model("churn")
    assert model.latest_version == 3 and model.owner == "alice"
    assert [v.version for v in reg.list_versions("churn")] == [3, 2, 1]
    with pytest.raises(NotFoundError, match="Versions: 1, 2, 3"):
        reg.get_version("churn", 7)
    with pytest.raises(NotFoundError, match="Did you mean 'churn'"):
        reg.get_model("chrun")
    with pytest.raises(AlreadyExistsError):
        reg.create_model("churn", actor="bob")
    with pytest.raises(InvalidSpecError, match="version number"):
        reg.get_version("churn", "three")


def test_aliases_move_atomically_and_are_audited(reg: SqlRegistry) -> None:
    _version(reg)
    _version(reg)
    reg.set_alias("churn", "champion", 1, actor="alice", reason="first")
    reg.set_alias("churn", "champion", 2, actor="alice", reason="better")
    assert reg.resolve_alias("churn", "champion").version == 2
    assert reg.get_version("churn", 1).aliases == []
    assert reg.get_model("churn").aliases == {"champion": 2}
    with pytest.raises(NotFoundError, match="Aliases: champion"):
        reg.resolve_alias("churn", "challenger")
    for bad in ["1st", "latest", "Production", "a b"]:
        with pytest.raises(InvalidSpecError):
            reg.set_alias("churn", bad, 1, actor="alice")
    events = [e for e in reg.audit_events() if e.action == "alias.set"]
    assert [(e.before, e.after) for e in events] == [
        ({"version": None}, {"version": 1}),
        ({"version": 1}, {"version": 2}),
    ]
    reg.delete_alias("churn", "champion", actor="alice")
    assert reg.get_model("churn").aliases == {}


def test_stage_rules_one_production(reg: SqlRegistry) -> None:
    for _ in range(3):
        _version(reg)
    reg.set_stage("churn", 1, "production", actor="a")
    reg.set_stage("churn", 2, "Production", actor="a")  # archives version 1
    assert reg.get_version("churn", 1).stage == "Archived"
    assert reg.latest_in_stage("churn", "Production").version == 2
    with pytest.raises(InvalidStateError, match="already has version 2 in Production"):
        reg.set_stage("churn", 3, "Production", actor="a", archive_existing=False)
    reg.set_protection("churn", actor="a", multiple_production=True)
    reg.set_stage("churn", 3, "Production", actor="a", archive_existing=False)
    prod = [v.version for v in reg.list_versions("churn") if v.stage == "Production"]
    assert prod == [3, 2]
    with pytest.raises(InvalidSpecError, match="Did you mean 'Staging'"):
        reg.set_stage("churn", 1, "Stagin", actor="a")


def test_approvals_required_for_protected_stage(reg: SqlRegistry) -> None:
    _version(reg, actor="dev")
    reg.set_protection("churn", actor="admin", stages=["Production"], required_approvals=2)
    with pytest.raises(PermissionDeniedError, match="needs 2 approval"):
        reg.set_stage("churn", 1, "Production", actor="dev")
    reg.grant("ann", "approver", actor="admin", model="churn")
    reg.grant("ben", "approver", actor="admin")
    reg.grant("dev", "approver", actor="admin")
    req = reg.request("churn", 1, actor="dev", stage="Production", comment="AUC +2 pts")
    assert [r.id for r in reg.list_requests()] == [req.id]
    with pytest.raises(PermissionDeniedError, match="requested this change"):
        reg.vote(req.id, "approve", actor="dev")  # self-approval
    with pytest.raises(PermissionDeniedError, match="approver role"):
        reg.vote(req.id, "approve", actor="mallory")
    after_one = reg.vote(req.id, "approve", actor="ann", comment="ok")
    assert after_one.status == "pending" and reg.get_version("churn", 1).stage == "None"
    with pytest.raises(InvalidStateError, match="already voted"):
        reg.vote(req.id, "approve", actor="ann")
    done = reg.vote(req.id, "approve", actor="ben")
    assert done.status == "applied" and [v["user"] for v in done.votes] == ["ann", "ben"]
    assert reg.get_version("churn", 1).stage == "Production"
    assert reg.list_requests() == []
    stage_event = [e for e in reg.audit_events() if e.action == "version.stage"][-1]
    assert stage_event.actor == "ben" and "approval request" in (stage_event.reason or "")


def test_rejection_and_protected_alias(reg: SqlRegistry) -> None:
    _version(reg, actor="dev")
    reg.set_protection("churn", actor="admin", aliases=["champion"])
    with pytest.raises(PermissionDeniedError, match="Alias 'champion'"):
        reg.set_alias("churn", "champion", 1, actor="dev")
    reg.grant("ann", "approver", actor="admin")
    req = reg.request("churn", 1, actor="dev", alias="champion")
    rejected = reg.vote(req.id, "reject", actor="ann", comment="needs slice eval")
    assert rejected.status == "rejected"
    with pytest.raises(InvalidStateError, match="already rejected"):
        reg.vote(req.id, "approve", actor="ann")
    req2 = reg.request("churn", 1, actor="dev", alias="champion")
    reg.vote(req2.id, "approve", actor="ann")
    assert reg.resolve_alias("churn", "champion").version == 1


def test_lineage_edges_from_registration(reg: SqlRegistry) -> None:
    run_id = "b" * 32
    reg.add_edge("dataset:churn@3", f"run:{run_id}", "input")
    _version(reg, run_id=run_id, datasets=["dataset:churn@3"])
    nodes, edges = reg.lineage("model_version:churn/1", "up", 5)
    assert nodes == ["model_version:churn/1", "dataset:churn@3", f"run:{run_id}"]
    assert (f"run:{run_id}", "model_version:churn/1", "output") in edges
    down, _ = reg.lineage("dataset:churn@3", "down", 5)
    assert "model_version:churn/1" in down


def _tamper(store: SqlStore, sql: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text(sql))


@pytest.mark.parametrize(
    ("sql", "match"),
    [
        ("UPDATE audit_events SET reason = 'nothing to see' WHERE seq = 2", "event 2 was edited"),
        ("DELETE FROM audit_events WHERE seq = 2", "event 2 is missing"),
        ("DELETE FROM audit_events WHERE seq = (SELECT max(seq) FROM audit_events)", "newest"),
        ("SWAP 2 3", "does not follow"),
    ],
    ids=["edited", "deleted", "deleted-tail", "swapped"],
)
def test_audit_chain_detects_tampering(store: SqlStore, sql: str, match: str) -> None:
    reg = store.registry
    _version(reg)
    reg.set_alias("churn", "a", 1, actor="x")
    reg.set_alias("churn", "b", 1, actor="x")
    reg.set_stage("churn", 1, "Staging", actor="x")
    count, problem = reg.verify_audit()
    assert problem is None and count == 5
    if sql == "SWAP 2 3":  # swap two rows' positions through a free number
        _tamper(store, "UPDATE audit_events SET seq = 999 WHERE seq = 2")
        _tamper(store, "UPDATE audit_events SET seq = 2 WHERE seq = 3")
        _tamper(store, "UPDATE audit_events SET seq = 3 WHERE seq = 999")
    else:
        _tamper(store, sql)
    _, problem = reg.verify_audit()
    assert problem is not None and match in problem, problem


def _move_alias(url: str, version: int, n: int) -> None:
    store = SqlStore(url)
    reg = store.registry
    for i in range(n):
        reg.set_alias("churn", "champion", version, actor=f"proc{version}", reason=str(i))
    store.close()


def test_concurrent_alias_moves_stay_consistent_and_audited(store: SqlStore) -> None:
    reg = store.registry
    _version(reg)
    _version(reg)
    n = 25
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_move_alias, args=(store.url, v, n)) for v in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    moves = [e for e in reg.audit_events() if e.action == "alias.set"]
    assert len(moves) == 2 * n
    # every move's "before" is the previous move's "after": one consistent history
    previous = None
    for e in moves:
        assert e.before == {"version": previous}
        previous = e.after["version"]
    assert reg.resolve_alias("churn", "champion").version == previous
    assert reg.verify_audit()[1] is None


def test_governance_changes_need_admin_once_admins_exist(reg: SqlRegistry) -> None:
    _version(reg, actor="dev")
    reg.set_protection("churn", actor="dev", stages=["Production"], aliases=["champion"])
    with pytest.raises(NotFoundError):
        reg.grant("ann", "approver", actor="boss", model="nope")
    reg.grant("boss", "admin", actor="boss")  # bootstrap: no admin exists yet
    with pytest.raises(PermissionDeniedError, match="admin role"):
        reg.grant("dev", "approver", actor="dev")  # no more self-service
    with pytest.raises(PermissionDeniedError, match="Admins: boss"):
        reg.set_protection("churn", actor="dev", stages=[])
    reg.grant("ann", "approver", actor="boss", model="churn")
    assert reg.approvers("churn") == ["ann", "boss"]
    req = reg.request("churn", 1, actor="dev", alias="champion")
    reg.vote(req.id, "approve", actor="ann")
    with pytest.raises(PermissionDeniedError, match="protected alias"):
        reg.delete_alias("churn", "champion", actor="dev")
    with pytest.raises(PermissionDeniedError, match="protection guards"):
        reg.delete_version("churn", 1, actor="dev")
    reg.delete_alias("churn", "champion", actor="boss")
    reg.revoke("ann", "approver", actor="boss", model="churn")
    assert reg.approvers("churn") == ["boss"]
