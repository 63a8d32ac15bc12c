"""``keel models``, ``keel lineage`` and ``keel audit`` end to end.

Models are trained and logged with the Python API (``keel.log_model`` inside
``keel.start_run``); every command then runs through Typer's ``CliRunner``, acting
as the user in ``KEEL_USER`` (set per invocation to play requester and approvers).
"""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from sklearn.tree import DecisionTreeClassifier
from typer.testing import CliRunner

import keel
import keel.registry as registry
from keel.cli import main as cli
from keel.exceptions import PermissionDeniedError

runner = CliRunner()


@pytest.fixture(autouse=True)
def plain_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic output: no colours, a fixed width; everything acts as alice."""
    monkeypatch.setattr(cli, "console", Console(width=140, color_system=None))
    monkeypatch.setattr(cli, "err_console", Console(width=300, color_system=None, stderr=True))
    monkeypatch.setenv("KEEL_USER", "alice")


def invoke(*args: str, code: int = 0, user: str | None = None) -> Any:
    """Run ``keel ARGS`` in-process (as ``user`` if given) and check its exit code."""
    env = {"KEEL_USER": user} if user else None
    result = runner.invoke(cli.app, list(args), env=env)
    assert result.exit_code == code, (
        f"keel {' '.join(args)} exited {result.exit_code}, expected {code}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\nexception: {result.exception!r}"
    )
    if code == 0:
        assert result.exception is None
    return result


X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "b": [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]})
Y = np.array([0, 1, 0, 1, 0, 1])


class Opaque:
    """A model only pickle can store."""

    def predict(self, data: Any) -> Any:
        return data


def train(name: str | None = "churn", *, dataset: str | None = None, unsafe: bool = False) -> str:
    """Log (and register) a tiny model in a new run; returns the run id."""
    with keel.start_run(experiment="models", run_name=f"tree-{name}") as run:
        if dataset:
            registry.default()._reg.add_edge(dataset, f"run:{run.run_id}", "input")
        keel.log_metric("auc", 0.9)
        # log_model does not flush buffered metrics before registering (reported), so the
        # version would record no metrics when the background flush has not run yet.
        keel.get_client().flush()
        if unsafe:
            keel.log_model(Opaque(), "model", registered_model_name=name, unsafe_pickle=True)
        else:
            model = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, Y)
            keel.log_model(model, "model", input_example=X.head(2), registered_model_name=name)
    return run.run_id


@pytest.fixture
def churn() -> list[str]:
    """Model churn with versions 1 and 2 (v1 trained on dataset:churn@3); returns run ids."""
    return [train(dataset="dataset:churn@3"), train()]


# -- help and exit codes ------------------------------------------------------------------------
def test_help_lists_the_new_commands() -> None:
    out = invoke("--help").stdout
    for name in ("models", "lineage", "audit"):
        assert name in out
    models_help = invoke("models", "--help").stdout
    commands = [
        *("list", "show", "versions", "create", "edit", "protect", "register", "stage", "alias"),
        *("archive", "delete", "request", "approve", "reject", "pending", "grant", "revoke"),
        *("card", "sign", "keygen"),
    ]
    for name in commands:
        assert name in models_help, name
    audit_help = invoke("audit", "--help").stdout
    for name in ("verify", "log", "export"):
        assert name in audit_help


def test_permission_denied_exits_4() -> None:
    assert cli.exit_code_for(PermissionDeniedError("x")) == 4
    assert cli.EXIT_CODES["permission_denied"] == 4


# -- reading ------------------------------------------------------------------------------------
def test_list_show_and_versions(churn: list[str]) -> None:
    registry.set_alias("churn", "champion", 1)
    registry.set_stage("churn", 2, "Production")
    train("fraud", unsafe=True)

    out = invoke("models", "list").stdout
    assert "churn" in out and "champion=v1" in out and "fraud" in out
    churn_row = next(line for line in out.splitlines() if line.startswith("churn"))
    assert "v2" in churn_row and "alice" in churn_row
    assert "2 models." in out
    listing = json.loads(invoke("models", "list", "--json").stdout)
    assert [m["name"] for m in listing] == ["churn", "fraud"]
    assert listing[0]["production_versions"] == [2]
    assert listing[0]["aliases"] == {"champion": 1} and listing[0]["latest_version"] == 2

    show = invoke("models", "show", "churn").stdout
    for text in ("Model churn", "Protection", "Versions", "champion", "Production", "sklearn"):
        assert text in show, text
    assert "No pending approval requests." in show
    data = json.loads(invoke("models", "show", "churn", "--json").stdout)
    assert data["name"] == "churn" and data["pending_requests"] == []
    assert [v["version"] for v in data["versions"]] == [2, 1]
    assert data["versions"][0]["run_id"] == churn[1]

    fraud = invoke("models", "versions", "fraud").stdout
    assert "python unsafe" in fraud and "loading it runs code" in fraud
    versions = json.loads(invoke("models", "versions", "churn", "--json").stdout)
    assert [(v["version"], v["stage"]) for v in versions] == [(2, "Production"), (1, "None")]


def test_unknown_model_exits_3_listing_models(churn: list[str]) -> None:
    err = invoke("models", "show", "chrun", code=3).stderr
    assert "Registered model 'chrun' not found" in err
    assert "Did you mean 'churn'?" in err and "Registered models: churn." in err
    invoke("models", "versions", "nope", code=3)
    assert "has no version 7" in invoke("models", "stage", "churn", "7", "Staging", code=3).stderr


def test_empty_registry() -> None:
    assert "No registered models" in invoke("models", "list").stdout
    assert json.loads(invoke("models", "list", "--json").stdout) == []
    assert "No pending" in invoke("models", "pending").stdout


# -- editing models -----------------------------------------------------------------------------
def test_create_edit_and_protect() -> None:
    out = invoke("models", "create", "risk", "-d", "credit risk", "--owner", "team-risk").stdout
    assert "Created registered model risk (owner team-risk)." in out
    assert "already exists" in invoke("models", "create", "risk", code=1).stderr

    out = invoke(
        "models", "edit", "risk", "--purpose", "Score loans.", "--limitations", "EU only",
        "--reason", "model review",
    ).stdout  # fmt: skip
    assert "Updated model risk: purpose, limitations." in out
    model = registry.get_model("risk")
    assert (model.purpose, model.limitations, model.description) == (
        "Score loans.",
        "EU only",
        "credit risk",
    )
    assert "Nothing to change" in invoke("models", "edit", "risk", code=2).stderr
    event = registry.audit("model:risk")[-1]
    assert event.action == "model.update" and event.reason == "model review"

    out = invoke(
        "models", "protect", "risk", "--stage", "production", "--alias", "champion",
        "--approvals", "2", "--multiple-production",
    ).stdout  # fmt: skip
    assert "Production" in out and "champion" in out and "several versions allowed" in out
    model = registry.get_model("risk")
    assert model.protected_stages == ["Production"] and model.protected_aliases == ["champion"]
    assert model.required_approvals == 2 and model.multiple_production
    assert "Approvals needed   2" in invoke("models", "protect", "risk").stdout  # just shows
    invoke("models", "protect", "risk", "--clear", "--single-production")
    model = registry.get_model("risk")
    assert model.protected_stages == [] and model.protected_aliases == []
    assert not model.multiple_production
    invoke("models", "protect", "risk", "--stage", "Prod", code=2)
    invoke("models", "protect", "risk", "--approvals", "0", code=2)


def test_register_a_logged_model() -> None:
    run_id = train(None)
    out = invoke("models", "register", f"runs:/{run_id}/model", "iris", "-d", "first").stdout
    assert "as iris v1 (models:/iris/1)." in out
    mv = registry.get_version("iris", 1)
    assert mv.run_id == run_id and mv.description == "first"
    assert "not a runs:/" in invoke("models", "register", "runs:/abc/model", "iris", code=2).stderr
    invoke("models", "register", f"runs:/{run_id}/nothing", "iris", code=3)


# -- stages, aliases, deletion ------------------------------------------------------------------
def test_stage_archives_the_previous_production_version(churn: list[str]) -> None:
    assert (
        "churn v1: None -> Production."
        in invoke("models", "stage", "churn", "1", "production").stdout
    )
    out = invoke("models", "stage", "churn", "v2", "Production", "--reason", "better").stdout
    assert "churn v2: None -> Production." in out and "Archived churn v1 (was Production)." in out
    assert registry.get_version("churn", 1).stage == "Archived"
    assert registry.audit("model_version:churn/2")[-1].reason == "better"

    registry.set_stage("churn", 1, "Staging")
    err = invoke("models", "stage", "churn", "1", "Production", "--keep-existing", code=1).stderr
    assert "already has version 2 in Production" in err and "--multiple-production" in err
    invoke("models", "protect", "churn", "--multiple-production")
    invoke("models", "stage", "churn", "1", "Production", "--keep-existing")
    stages = {v.version: v.stage for v in registry.list_versions("churn")}
    assert stages == {1: "Production", 2: "Production"}
    assert "Unknown stage" in invoke("models", "stage", "churn", "1", "Prod", code=2).stderr

    assert "-> Archived." in invoke("models", "archive", "churn", "1").stdout
    assert registry.get_version("churn", 1).stage == "Archived"


def test_alias_set_move_delete(churn: list[str]) -> None:
    assert (
        "churn@champion -> v1 (new alias)."
        in invoke("models", "alias", "churn", "champion", "1").stdout
    )
    out = invoke("models", "alias", "churn", "champion", "2", "--reason", "retrained").stdout
    assert "churn@champion -> v2 (was v1)." in out
    assert registry.resolve("models:/churn@champion").version.version == 2
    assert "Give the VERSION" in invoke("models", "alias", "churn", "champion", code=2).stderr
    invoke("models", "alias", "churn", "champion", "1", "--delete", code=2)
    invoke("models", "alias", "churn", "latest", "1", code=2)  # reserved
    assert (
        "Deleted alias churn@champion (was v2)."
        in invoke("models", "alias", "churn", "champion", "--delete").stdout
    )
    invoke("models", "alias", "churn", "champion", "--delete", code=3)


def test_delete_version(churn: list[str]) -> None:
    registry.set_alias("churn", "champion", 2)
    out = invoke("models", "delete", "churn", "2", "--reason", "leaked labels").stdout
    assert "Deleted churn v2 (stage None; removed aliases: champion)." in out
    assert [v.version for v in registry.list_versions("churn")] == [1]
    assert registry.audit("model_version:churn/2")[-1].reason == "leaked labels"
    invoke("models", "delete", "churn", "2", code=3)


# -- approvals and roles ------------------------------------------------------------------------
def test_protected_stage_needs_approval_from_another_approver(churn: list[str]) -> None:
    invoke("models", "grant", "alice", "approver")
    invoke("models", "grant", "bob", "approver", "--model", "churn")
    invoke("models", "grant", "carol", "approver")
    invoke("models", "protect", "churn", "--stage", "Production", "--approvals", "2")

    err = invoke("models", "stage", "churn", "1", "Production", code=4).stderr
    assert "protected" in err and "approvers: alice, bob, carol" in err
    assert "keel models request churn VERSION --stage Production" in err
    invoke("models", "request", "churn", "1", code=2)  # neither --stage nor --alias
    invoke("models", "request", "churn", "1", "--stage", "Production", "--alias", "x", code=2)

    out = invoke("models", "request", "churn", "1", "--stage", "Production", "-m", "ready").stdout
    assert "Request 1: churn v1 -> stage Production, by alice; needs 2 approvals" in out
    assert "keel models approve 1" in out
    err = invoke("models", "approve", "1", code=4).stderr  # alice requested it
    assert "alice requested this change and cannot approve" in err and "bob, carol" in err
    err = invoke("models", "approve", "1", user="dave", code=4).stderr  # not an approver
    assert "needs the approver role" in err

    pending = invoke("models", "pending").stdout
    assert "stage Production" in pending and "0/2" in pending and "ready" in pending
    out = invoke("models", "approve", "1", "-m", "metrics ok", user="bob").stdout
    assert "1 of 2 approvals" in out
    assert "1/2" in invoke("models", "show", "churn").stdout
    assert "already voted" in invoke("models", "approve", "1", user="bob", code=1).stderr
    data = json.loads(invoke("models", "pending", "churn", "--json").stdout)
    assert [(r["id"], r["required_approvals"]) for r in data] == [(1, 2)]
    assert data[0]["votes"][0]["user"] == "bob"

    out = invoke("models", "approve", "1", user="carol").stdout
    assert "Approved request 1: churn v1 is now in stage Production." in out
    assert registry.get_version("churn", 1).stage == "Production"
    assert json.loads(invoke("models", "pending", "--json").stdout) == []
    assert "already applied" in invoke("models", "reject", "1", user="carol", code=1).stderr

    invoke("models", "request", "churn", "2", "--stage", "Production")
    out = invoke("models", "reject", "2", "-m", "not yet", user="bob").stdout
    assert "Rejected request 2 (churn v2 -> stage Production)." in out
    assert registry.get_version("churn", 2).stage == "None"
    invoke("models", "approve", "99", user="bob", code=3)


def test_protected_alias_request(churn: list[str]) -> None:
    invoke("models", "grant", "bob", "approver")
    invoke("models", "protect", "churn", "--alias", "champion")
    err = invoke("models", "alias", "churn", "champion", "2", code=4).stderr
    assert "Alias 'champion' of model 'churn' is protected" in err and "bob" in err
    invoke("models", "request", "churn", "2", "--alias", "champion")
    out = invoke("models", "approve", "1", user="bob").stdout
    assert "churn v2 is now churn@champion." in out
    assert registry.get_model("churn").aliases == {"champion": 2}


def test_grant_and_revoke(churn: list[str]) -> None:
    assert (
        "Granted reader to dave on model churn."
        in invoke("models", "grant", "dave", "reader", "--model", "churn").stdout
    )
    assert (
        "Granted approver to erin on every model."
        in invoke("models", "grant", "erin", "approver").stdout
    )
    assert "Unknown role" in invoke("models", "grant", "dave", "boss", code=2).stderr
    err = invoke("models", "grant", "dave", "reader", "--model", "chrun", code=3).stderr
    assert "Registered models: churn" in err
    assert (
        "Revoked approver from erin on every model."
        in invoke("models", "revoke", "erin", "approver").stdout
    )
    invoke("models", "revoke", "erin", "approver", code=3)
    actions = [e.action for e in registry.audit("user:")]
    assert actions == ["role.grant", "role.grant", "role.revoke"]


# -- cards and signatures -----------------------------------------------------------------------
def test_card_to_stdout_and_files(churn: list[str], tmp_path: Path) -> None:
    registry.update_model("churn", purpose="Retention offers.", limitations="EU customers only.")
    md = invoke("models", "card", "churn", "1").stdout
    assert md.startswith("# Model card: churn v1")
    for text in ("Retention offers.", "EU customers only.", "dataset:churn@3", "| auc |"):
        assert text in md, text

    out = invoke("models", "card", "churn", "1", "--output", "cards/churn-v1.md").stdout
    path = Path(out.strip())
    assert path == (tmp_path / "cards" / "churn-v1.md").resolve()
    assert path.read_text(encoding="utf-8").startswith("# Model card: churn v1")

    out = invoke("models", "card", "churn", "2", "-o", "card.html").stdout  # format from suffix
    html = Path(out.strip()).read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and "Retention offers." in html
    assert "<script" not in html
    html2 = invoke("models", "card", "churn", "2", "--format", "html").stdout
    assert html2.startswith("<!doctype html>")
    invoke("models", "card", "churn", "1", "--format", "pdf", code=2)
    invoke("models", "card", "churn", "9", code=3)


def test_keygen_and_sign(churn: list[str], tmp_path: Path) -> None:
    from keel.models import verify_digest

    out = invoke("models", "keygen", "--out", "keys").stdout
    private, public = (
        tmp_path / "keys" / "signing-key.pem",
        tmp_path / "keys" / "signing-key.pub.pem",
    )
    assert str(private) in out and str(public) in out and "fingerprint" in out
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes() and b"PUBLIC KEY" in public.read_bytes()
    before = private.read_bytes()
    assert "--force" in invoke("models", "keygen", "--out", "keys", code=1).stderr
    assert private.read_bytes() == before
    private.chmod(0o644)
    invoke("models", "keygen", "--out", "keys", "--force")
    assert private.read_bytes() != before and stat.S_IMODE(private.stat().st_mode) == 0o600

    out = invoke("models", "sign", "churn", "1", "--key", str(private)).stdout
    assert "Signed churn v1 (content hash" in out and "as alice." in out
    mv = registry.get_version("churn", 1)
    assert mv.signature_b64 and mv.signed_by == "alice"
    verify_digest(mv.manifest_digest, mv.signature_b64, [public.read_bytes()])
    assert "yes (alice)" in invoke("models", "versions", "churn").stdout
    assert registry.audit("model_version:churn/1")[-1].action == "version.sign"
    invoke("models", "sign", "churn", "1", "--key", "missing.pem", code=2)
    assert (
        "private key" in invoke("models", "sign", "churn", "1", "--key", str(public), code=2).stderr
    )


# -- lineage ------------------------------------------------------------------------------------
def test_lineage_names_the_dataset_and_run_of_a_version(churn: list[str]) -> None:
    run_id = churn[0]
    out = invoke("lineage", "models:/churn/1").stdout
    lines = out.splitlines()
    assert lines[0].startswith("model_version:churn/1")
    assert any(
        f"run:{run_id}" in line and "tree-churn" in line and "output" in line for line in lines
    )
    assert any("dataset:churn@3" in line and "trained_on" in line for line in lines)
    assert "2 nodes upstream: 1 dataset, 1 run." in out

    data = json.loads(invoke("lineage", "models:/churn/1", "--json").stdout)
    assert data["start"] == "model_version:churn/1" and data["direction"] == "up"
    assert {"src": f"run:{run_id}", "dst": "model_version:churn/1", "relation": "output"} in data[
        "edges"
    ]
    assert "dataset:churn@3" in data["nodes"]

    registry.set_alias("churn", "champion", 1)
    assert invoke("lineage", "models:/churn@champion").stdout == out.replace(
        "  None", "  None @champion"
    )

    down = invoke("lineage", run_id[:8], "--down").stdout  # a run id prefix
    assert down.splitlines()[0].startswith(f"run:{run_id}")
    assert "model_version:churn/1" in down and "model_version:churn/2" not in down
    down = invoke("lineage", "dataset:churn@3", "--down").stdout
    assert f"run:{run_id}" in down and "model_version:churn/1" in down
    shallow = json.loads(
        invoke("lineage", "dataset:churn@3", "--down", "--depth", "1", "--json").stdout
    )
    assert shallow["nodes"] == ["dataset:churn@3", "model_version:churn/1", f"run:{run_id}"]

    assert (
        "No lineage recorded upstream of dataset:other@1"
        in invoke("lineage", "dataset:other@1").stdout
    )
    invoke("lineage", "models:/churn/9", code=3)
    invoke("lineage", "0" * 32, code=3)
    invoke("lineage", "zzz", code=2)


# -- audit --------------------------------------------------------------------------------------
def test_audit_log_verify_export(churn: list[str], keel_home: Path, tmp_path: Path) -> None:
    registry.set_alias("churn", "champion", 1, reason="best auc")
    out = invoke("audit", "log").stdout
    header = out.splitlines()[0].split()
    assert header == ["Seq", "Time", "Actor", "Action", "Object", "Reason"]
    assert "alias.set" in out and "model:churn@champion" in out and "best auc" in out
    assert "4 events." in out
    last = invoke("audit", "log", "--limit", "1").stdout
    assert "alias.set" in last and "version.register" not in last
    assert "The newest 1 of 4 events" in last
    assert [e["seq"] for e in json.loads(invoke("audit", "log", "--json").stdout)] == [1, 2, 3, 4]
    only = json.loads(invoke("audit", "log", "--object", "model_version:churn/2", "--json").stdout)
    assert [e["action"] for e in only] == ["version.register"]
    mine = json.loads(invoke("audit", "log", "--model", "churn", "--json").stdout)
    assert [e["seq"] for e in mine] == [1, 2, 3, 4]
    assert "No audit events match." in invoke("audit", "log", "--object", "user:").stdout

    assert invoke("audit", "verify").stdout.strip() == "4 events, chain intact."
    out = invoke("audit", "export", "audit.jsonl").stdout
    assert "Exported 4 events" in out
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3, 4]
    invoke("audit", "export", "no/such/dir/audit.jsonl", code=2)

    with sqlite3.connect(keel_home / "keel.db") as conn:
        conn.execute("UPDATE audit_events SET reason = 'nothing to see' WHERE seq = 4")
    err = invoke("audit", "verify", code=5).stderr
    assert "broken at event 4" in err and "alias.set on model:churn@champion" in err
    assert "was edited" in err and "Events 1-3 are intact." in err
