"""The registry end to end: log_model, register, resolve, load (verified), sign, cards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

import keel
import keel.registry as registry
from keel.exceptions import IntegrityError, InvalidSpecError, NotFoundError


@pytest.fixture
def data() -> tuple[pd.DataFrame, np.ndarray]:
    X, y = make_classification(n_samples=200, n_features=4, random_state=0)
    return pd.DataFrame(X, columns=["a", "b", "c", "d"]), y


def _train(
    data: tuple[pd.DataFrame, np.ndarray], name: str = "churn", seed: int = 0
) -> keel.ModelVersion:
    X, y = data
    model = RandomForestClassifier(n_estimators=5, random_state=seed).fit(X, y)
    with keel.start_run(experiment="reg", run_name=f"rf-{seed}"):
        keel.log_params({"seed": seed})
        keel.log_metric("auc", 0.8 + seed / 100)
        keel.log_metric("slice/region:eu/auc", 0.75)
        logged = keel.log_model(model, "model", input_example=X.head(5), registered_model_name=name)
    assert logged.version is not None
    return logged.version


def test_log_register_resolve_and_load(
    backend_env: str, data: tuple[pd.DataFrame, np.ndarray]
) -> None:
    X, y = data
    v1 = _train(data, seed=0)
    v2 = _train(data, seed=1)
    assert (v1.version, v2.version) == (1, 2)
    assert v2.flavor == "sklearn" and v2.metrics["auc"] == pytest.approx(0.81)
    registry.set_alias("churn", "champion", 1)
    registry.set_stage("churn", 2, "Production")
    for uri, version in [
        ("models:/churn@champion", 1),
        ("models:/churn/2", 2),
        ("models:/churn/Production", 2),
        ("models:/churn/latest", 2),
    ]:
        assert registry.resolve(uri).version.version == version  # type: ignore[union-attr]
    model = registry.load("models:/churn@champion")
    expected = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y).predict(X)
    assert (np.asarray(model.predict(X)) == expected).all()
    run_model = registry.load(f"runs:/{v2.run_id}/model")
    assert run_model.predict(X.head(3)) is not None
    with pytest.raises(InvalidSpecError, match="not a model URI"):
        registry.resolve("churn@champion")
    with pytest.raises(NotFoundError, match="Aliases: champion"):
        registry.resolve("models:/churn@challenger")


def test_tampered_blob_is_refused_before_loading(data: tuple[pd.DataFrame, np.ndarray]) -> None:
    mv = _train(data)
    client = keel.get_client()
    manifest = client.objects.get_manifest(mv.manifest_digest)
    target = next(ref for rel, ref in manifest.entries.items() if rel != "keel-model.json")
    path = client.objects.root / target.digest[:2] / target.digest[2:]  # type: ignore[attr-defined]
    path.chmod(0o644)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match=target.digest):
        registry.load("models:/churn/1")


def test_tampered_cache_is_refused(data: tuple[pd.DataFrame, np.ndarray]) -> None:
    _train(data)
    registry.load("models:/churn/1")  # fills the cache
    cache = next((keel.get_client().settings.home / "cache" / "models").iterdir())
    victim = next(p for p in cache.rglob("*") if p.is_file() and p.name.endswith(".skops"))
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match="Cached model file"):
        registry.load("models:/churn/1")


def test_signing_and_verification(
    data: tuple[pd.DataFrame, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keel.models import generate_signing_key

    private, public = generate_signing_key()
    other_private, _ = generate_signing_key()
    (tmp_path / "pub.pem").write_bytes(public)
    _train(data)
    _train(data, seed=1)
    signed = registry.sign("churn", 1, private)
    assert signed.signature_b64 and signed.signed_by
    registry.sign("churn", 2, other_private)  # signed, but by a key we do not trust
    monkeypatch.setenv("KEEL_VERIFY_KEYS", str(tmp_path / "pub.pem"))
    from keel.tracking import fluent

    fluent._reset()
    assert registry.load("models:/churn/1") is not None
    from keel.models import SignatureVerificationError

    with pytest.raises(SignatureVerificationError):
        registry.load("models:/churn/2")
    _train(data, seed=2)
    with pytest.raises(IntegrityError, match="not signed"):
        registry.load("models:/churn/3")
    X, y = data
    with keel.start_run(experiment="reg"):
        logged = keel.log_model(
            RandomForestClassifier(n_estimators=2).fit(X, y),
            input_example=X.head(2),
            registered_model_name="churn",
            signing_key=private,  # signed at registration
        )
    assert logged.version is not None and logged.version.signature_b64
    assert registry.load("models:/churn/4") is not None
    assert any(e.action == "version.sign" for e in registry.audit())


def test_model_card_markdown_and_html(data: tuple[pd.DataFrame, np.ndarray]) -> None:
    mv = _train(data)
    registry.update_model(
        "churn", purpose="Predict churn for retention offers.", limitations="EU only."
    )
    registry.grant("ann", "approver")
    registry.set_protection("churn", stages=["Production"])
    req = registry.request("churn", mv.version, stage="Production", comment="ready")
    reg2 = registry.Registry(keel.get_client())
    import dataclasses

    ann = dataclasses.replace(reg2.client.settings, user="ann")
    reg_ann = registry.Registry(keel.Client(ann))
    reg_ann.approve(req.id, comment="looks good")
    md = registry.card("churn", 1)
    for text in [
        "# Model card: churn v1",
        "Predict churn",
        "EU only.",
        "| auc |",
        "region:eu",
        "ann",
    ]:
        assert text in md, text
    html_card = registry.card("churn", 1, "html")
    assert html_card.startswith("<!doctype html>") and "Predict churn" in html_card
    assert "<script" not in html_card
    assert "Production" in md


def test_lineage_answers_which_data_trained_this_model(
    data: tuple[pd.DataFrame, np.ndarray],
) -> None:
    X, y = data
    with keel.start_run(experiment="reg") as run:
        keel.log_input("dataset:churn@3")
        logged = keel.log_model(
            RandomForestClassifier(n_estimators=3).fit(X, y),
            input_example=X.head(2),
            registered_model_name="churn",
        )
    assert logged.version is not None
    up = keel.lineage(logged.version)
    assert up.of_kind("dataset") == ["dataset:churn@3"]
    assert up.of_kind("run") == [f"run:{run.run_id}"]
    assert logged.version.datasets == ["dataset:churn@3"]
    down = keel.lineage("dataset:churn@3", direction="down")
    assert "model_version:churn/1" in down.nodes


def test_audit_export_jsonl(data: tuple[pd.DataFrame, np.ndarray], tmp_path: Path) -> None:
    _train(data)
    registry.set_alias("churn", "champion", 1, reason="first")
    n = registry.export_audit(tmp_path / "audit.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert len(lines) == n >= 3
    assert lines[-1]["action"] == "alias.set" and lines[-1]["reason"] == "first"
    assert registry.verify_audit() == (n, None)
