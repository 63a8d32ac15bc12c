"""``keel deploy ...``, ``keel predict`` and ``keel build`` through Typer's CliRunner against a
real SQLite store: outputs (tables and --json), exit codes of errors, batch scoring checked
against the model loaded in-process, and the build bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import keel
from keel import serving
from keel.cli import main as cli
from keel.models import load
from tests.cli._helpers import invoke, plain_consoles, runner
from tests.serving.conftest import make_data


@pytest.fixture(autouse=True)
def plain_console(monkeypatch: pytest.MonkeyPatch) -> None:
    plain_consoles(monkeypatch, width=160)


def as_json(*args: str) -> Any:
    return json.loads(invoke(*args, "--json").stdout)


@pytest.fixture
def models(keel_home: Path) -> dict[int, str]:
    """Cheap versions of ``churn`` (1 Threshold, 2 Inverted, 3 Threshold): {version: uri}."""
    from keel.models import ColumnSpec, Signature, infer_signature
    from tests.serving.models import Inverted, Threshold

    X, _ = make_data(5)
    signature = Signature(infer_signature(X).inputs, (ColumnSpec("prediction", "int64", False),))
    out: dict[int, str] = {}
    for model in (Threshold(), Inverted(), Threshold()):
        with keel.start_run(log_environment=False):
            info = keel.log_model(
                model, "model", signature=signature, registered_model_name="churn"
            )
        assert info.version is not None
        out[info.version.version] = f"models:/churn/{info.version.version}"
    return out


# -- keel deploy --------------------------------------------------------------------------
def test_deploy_lifecycle(models: dict[int, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_USER", "bob")
    from keel.tracking import fluent

    for client in list(fluent._clients.values()):
        client.close()  # the next client reads KEEL_USER
    fluent._reset()
    created = as_json(
        "deploy", "create", "churn", models[1], "--max-batch-size", "32", "-m", "first"
    )
    assert created["name"] == "churn" and created["revision"] == 1
    assert created["policy"]["kind"] == "single" and created["policy"]["primary"] == "churn/1"
    assert created["policy"]["max_batch_size"] == 32 and created["created_by"] == "bob"
    table = invoke("deploy", "list").stdout
    assert "churn" in table and "single" in table and "churn/1" in table
    assert [d["name"] for d in as_json("deploy", "list")] == ["churn"]

    canary = as_json(
        "deploy", "canary", "churn", models[2], "--steps", "10,50,100",
        "--step-seconds", "30", "--max-error-rate", "0.02", "--max-p99-ms", "40",
        "--min-requests", "7",
    )  # fmt: skip
    p = canary["policy"]
    assert (p["kind"], p["candidate"], p["steps"], p["weight"]) == (
        "canary",
        "churn/2",
        [0.1, 0.5, 1.0],
        0.1,
    )
    assert p["step_seconds"] == 30 and p["guards"]["max_error_rate"] == 0.02
    assert p["guards"]["max_p99_ms"] == 40 and p["guards"]["min_requests"] == 7
    shown = invoke("deploy", "status", "churn").stdout
    assert "canary" in shown and "churn/2 (10%)" in shown and "10%, 50%, 100%" in shown
    status = as_json("deploy", "status", "churn")
    assert status["policy"]["candidate"] == "churn/2" and status["versions"] == []
    assert invoke("deploy", "tick", "churn").stdout.strip() == "nothing to do"

    traffic = as_json("deploy", "set-traffic", "churn", "50", "-m", "halfway")
    assert traffic["policy"]["weight"] == 0.5 and traffic["policy"]["step"] == 1
    promoted = as_json("deploy", "promote", "churn", "-m", "good")
    assert promoted["policy"]["kind"] == "single" and promoted["policy"]["primary"] == "churn/2"
    assert promoted["policy"]["fallback"] == "churn/1"
    rolled = as_json("deploy", "rollback", "churn", "-m", "oops")
    assert rolled["policy"]["primary"] == "churn/1" and rolled["revision"] == 5

    history = as_json("deploy", "history", "churn")
    assert [(h["revision"], h["action"], h["actor"], h["reason"]) for h in history] == [
        (1, "create", "bob", "first"),
        (2, "canary", "bob", None),
        (3, "set_traffic", "bob", "halfway"),
        (4, "promote", "bob", "good"),
        (5, "rollback", "bob", "oops"),
    ]
    text = invoke("deploy", "history", "churn").stdout
    assert "churn/1 + churn/2 (canary)" in text and "halfway" in text and "rollback" in text


def test_shadow_ab_bluegreen_commands(models: dict[int, str]) -> None:
    invoke("deploy", "create", "churn", models[1])
    shadow = as_json("deploy", "shadow", "churn", models[2])
    assert shadow["policy"]["kind"] == "shadow" and shadow["policy"]["candidate"] == "churn/2"
    assert "churn/2 (mirror)" in invoke("deploy", "status", "churn").stdout
    invoke("deploy", "rollback", "churn")

    ab = as_json("deploy", "ab", "churn", models[2], "--split", "20", "--key", "user_id")
    assert (ab["policy"]["kind"], ab["policy"]["weight"], ab["policy"]["ab_key"]) == (
        "ab",
        0.2,
        "user_id",
    )
    report = as_json("deploy", "ab-status", "churn")
    assert report["decision"] == "insufficient data"
    assert report["control"]["n"] == 0 and report["treatment"]["n"] == 0
    assert "insufficient data" in invoke("deploy", "ab-status", "churn").stdout
    invoke("deploy", "rollback", "churn")

    staged = as_json("deploy", "bluegreen", "churn", models[3])
    assert staged["policy"]["candidate"] == "churn/3" and staged["policy"]["primary"] == "churn/1"
    assert "churn/3 (idle)" in invoke("deploy", "status", "churn").stdout
    switched = as_json("deploy", "switch", "churn", "-m", "go")
    assert switched["policy"]["primary"] == "churn/3"
    assert switched["policy"]["candidate"] == "churn/1"
    assert invoke("deploy", "tick", "churn").stdout.strip() == "nothing to do"


def test_deploy_errors_have_exit_codes_and_messages(models: dict[int, str]) -> None:
    with keel.start_run(log_environment=False) as run:
        pass
    r = invoke("deploy", "create", "churn", f"runs:/{run.run_id}/model", code=2)
    assert "Error:" in r.stderr and "registered model version" in r.stderr
    r = invoke("deploy", "create", "churn", "models:/nope/1", code=3)
    assert "nope" in r.stderr
    r = invoke("deploy", "create", "bad name", models[1], code=2)
    assert "not valid" in r.stderr
    invoke("deploy", "create", "churn", models[1])
    r = invoke("deploy", "create", "churn", models[2], code=1)
    assert "already exists" in r.stderr
    r = invoke("deploy", "status", "chrun", code=3)
    assert "Deployment 'chrun' not found" in r.stderr and "churn" in r.stderr
    r = invoke("deploy", "promote", "churn", code=1)
    assert "no candidate to promote" in r.stderr
    r = invoke("deploy", "rollback", "churn", code=1)
    assert "nothing to roll back to" in r.stderr
    r = invoke("deploy", "set-traffic", "churn", "0.3", code=1)
    assert "only a canary or an A/B test" in r.stderr
    r = invoke("deploy", "canary", "churn", models[2], "--steps", "5,x", code=2)
    assert "steps must be numbers" in r.stderr
    r = invoke("deploy", "canary", "churn", models[2], "--steps", "10,50", code=2)
    assert "last canary step must be 1.0" in r.stderr
    invoke("deploy", "canary", "churn", models[2])
    r = invoke("deploy", "canary", "churn", models[3], code=1)
    assert "running a canary" in r.stderr
    r = invoke("deploy", "set-traffic", "churn", "150", code=2)
    assert "percentage" in r.stderr
    r = invoke("deploy", "ab-status", "churn", code=1)
    assert "not running an A/B test" in r.stderr
    # nothing above changed the deployment beyond the one canary
    assert [h["action"] for h in as_json("deploy", "history", "churn")] == ["create", "canary"]
    assert serving.get_deployment("churn").revision == 2


# -- keel predict -------------------------------------------------------------------------
def test_predict(registered: dict[int, str], tmp_path: Path) -> None:
    """One test (the scikit-learn model costs seconds to register): outputs, then errors."""
    _predict_files(registered, tmp_path / "ok")
    _predict_errors(registered, tmp_path / "errors")


def _predict_files(registered: dict[int, str], tmp_path: Path) -> None:
    tmp_path.mkdir()
    X, _ = make_data(500, seed=7)
    X.insert(0, "customer", [f"c{i}" for i in range(len(X))])
    parquet, csv = tmp_path / "in.parquet", tmp_path / "in.csv"
    X.to_parquet(parquet, row_group_size=128)
    X.to_csv(csv, index=False)
    model = load(registered[1])
    features = X.drop(columns="customer")
    want = np.asarray(model.predict(features))
    want_proba = np.asarray(model.predict_proba(features))

    out = tmp_path / "out" / "scored.parquet"
    r = invoke(
        "predict", registered[1], "-i", str(parquet), "-o", str(out),
        "--batch-rows", "100", "--keep", "customer", "--no-progress",
    )  # fmt: skip
    assert "wrote 500 predictions" in r.stdout
    got = pd.read_parquet(out)
    assert list(got.columns) == ["customer", "prediction"]
    assert got["customer"].tolist() == X["customer"].tolist()
    np.testing.assert_array_equal(got["prediction"].to_numpy(), want)

    out_csv = tmp_path / "scored-csv.parquet"
    invoke(
        "predict", registered[1], "-i", str(csv), "-o", str(out_csv),
        "--method", "predict_proba", "--no-progress",
    )  # fmt: skip
    got = pd.read_parquet(out_csv)
    assert list(got.columns) == ["proba_0", "proba_1"]
    np.testing.assert_allclose(got.to_numpy(), want_proba, rtol=1e-9)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "in.csv",
        "in.parquet",
        "out",
        "scored-csv.parquet",
    ]  # no temporary files left behind


def _predict_errors(registered: dict[int, str], tmp_path: Path) -> None:
    tmp_path.mkdir()
    X, _ = make_data(40, seed=1)
    src = tmp_path / "in.parquet"
    X.to_parquet(src)
    out = tmp_path / "out.parquet"
    r = invoke(
        "predict", registered[1], "-i", str(tmp_path / "nope.parquet"), "-o", str(out), code=3
    )
    assert "No input file" in r.stderr
    (tmp_path / "in.json").write_text("{}")
    r = invoke("predict", registered[1], "-i", str(tmp_path / "in.json"), "-o", str(out), code=2)
    assert ".parquet or .csv" in r.stderr and "'.json'" in r.stderr
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    r = invoke(
        "predict", registered[1], "-i", str(tmp_path / "broken.parquet"), "-o", str(out), code=2
    )
    assert "not a readable Parquet file" in r.stderr
    r = invoke(
        "predict", registered[1], "-i", str(src), "-o", str(out), "--keep", "customer", code=2
    )
    assert "--keep" in r.stderr and "customer" in r.stderr
    r = invoke("predict", registered[1], "-i", str(src), "-o", str(out), "--method", "x", code=2)
    assert "predict or predict_proba" in r.stderr
    assert not out.exists()

    # a model that fails on a later chunk leaves no output (and no temporary file) behind
    f2 = X["f2"].to_numpy()
    faulty = (np.abs(f2 * 1000).astype(np.int64) % 10) < 3
    order = np.argsort(faulty, kind="stable")  # good rows first, the failing ones last
    assert not faulty[order[:10]].any() and faulty.any()
    X.iloc[order].to_parquet(src, row_group_size=10)
    result = runner.invoke(
        cli.app,
        ["predict", registered[3], "-i", str(src), "-o", str(out), "--batch-rows", "10"],
    )
    assert result.exit_code != 0
    assert "simulated failure" in repr(result.exception) + result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "broken.parquet",
        "in.json",
        "in.parquet",
    ]


# -- keel build ---------------------------------------------------------------------------
def test_build_writes_the_bundle(models: dict[int, str], tmp_path: Path) -> None:
    import yaml

    serving.create_deployment("churn", models[1])
    serving.canary("churn", models[2])
    out = tmp_path / "bundle"
    r = invoke("build", "churn", "-o", str(out), "--replicas", "3", "--workers", "2")
    assert "see docs/build.md" in r.stdout
    names = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert {
        "Dockerfile",
        "requirements.txt",
        "k8s/deployment.yaml",
        "k8s/service.yaml",
        "k8s/hpa.yaml",
        "k8s/pdb.yaml",
        "k8s/kustomization.yaml",
    } <= names
    reqs = (out / "requirements.txt").read_text().lower()
    spec = keel.registry.Registry(keel.get_client()).resolve(models[1]).spec
    numpy_pin = spec["requirements"]["numpy"]
    assert numpy_pin and f"numpy=={numpy_pin}" in reqs
    dockerfile = (out / "Dockerfile").read_text()
    assert "requirements.txt" in dockerfile
    deployment = yaml.safe_load((out / "k8s" / "deployment.yaml").read_text())
    assert deployment["kind"] == "Deployment" and deployment["spec"]["replicas"] == 3
    text = json.dumps(deployment)
    assert "churn" in text and "/readyz" in text
    r = invoke("build", "churn", "-o", str(out), code=1)  # not over an existing bundle
    assert "overwrite" in r.stderr.lower()
    r = invoke("build", "nope", "-o", str(tmp_path / "b2"), code=3)
    assert not (tmp_path / "b2").exists()


def test_sample_size_plans_an_ab_test() -> None:
    from keel.serving import sample_size

    plan = as_json("deploy", "sample-size", "0.10", "0.02", "--json")
    assert plan["control"] == plan["treatment"] == sample_size(0.10, 0.02).control
    uneven = as_json("deploy", "sample-size", "0.10", "0.02", "--split", "20", "--json")
    assert uneven["treatment"] < uneven["control"] and uneven["total"] > plan["total"]
    out = invoke("deploy", "sample-size", "0.10", "0.02").stdout
    assert f"{plan['control']:,}" in out
    invoke("deploy", "sample-size", "0.10", "0.02", "--split", "100", code=2)
