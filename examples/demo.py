"""keel demo: version and validate data, train churn models with tracking, register the best,
serve it, and roll out the runner-up as a canary guarded by live feedback.

Run with ``make demo`` (or ``python examples/demo.py``). Everything lands in the
embedded store (``.keel/`` here: SQLite + a local object folder); the model server
runs on 127.0.0.1. Later issues grow this into the whole loop: monitor, retrain.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score, roc_curve
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import keel

EXPERIMENT = "churn-demo"
MODEL = "churn"
DATASET = "churn-customers"
console = Console()


def make_churn(n: int = 20_000, seed: int = 7) -> pd.DataFrame:
    """A churn-like customer table with a known, non-linear churn mechanism."""
    rng = np.random.default_rng(seed)
    tenure = rng.gamma(2.0, 12.0, n).clip(0, 72)
    monthly = rng.normal(65, 25, n).clip(15, 150)
    support_calls = rng.poisson(1.5, n)
    contract = rng.choice(["month-to-month", "one-year", "two-year"], n, p=[0.55, 0.25, 0.2])
    plan = rng.choice(["basic", "plus", "premium"], n, p=[0.5, 0.35, 0.15])
    autopay = rng.random(n) < 0.45
    logit = (
        -1.2
        - 0.05 * tenure
        + 0.02 * (monthly - 65)
        + 0.45 * support_calls
        + np.where(contract == "month-to-month", 1.3, np.where(contract == "one-year", 0.0, -1.1))
        - 0.6 * autopay
        + 0.3 * (plan == "premium") * (support_calls > 2)
    )
    churn = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {
            "tenure_months": tenure.round(1),
            "monthly_charges": monthly.round(2),
            "support_calls": support_calls,
            "contract": contract,
            "plan": plan,
            "autopay": autopay,
            "churned": churn.astype(int),
        }
    )


def features(df: pd.DataFrame) -> pd.DataFrame:
    """One-hot encode the categorical columns."""
    return pd.get_dummies(df.drop(columns="churned"), columns=["contract", "plan"], dtype=float)


def _logreg(c: float) -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500))


def _forest(n: int, depth: int) -> Any:
    return RandomForestClassifier(n_estimators=n, max_depth=depth, n_jobs=2, random_state=0)


def _hgb(**kw: Any) -> Any:
    return HistGradientBoostingClassifier(max_iter=200, random_state=0, **kw)


#: (run name, model factory, params to log)
CANDIDATES: list[tuple[str, Callable[[], Any], dict[str, Any]]] = [
    ("logreg", lambda: _logreg(1.0), {"C": 1.0}),
    ("logreg-strong-l2", lambda: _logreg(0.01), {"C": 0.01}),
    ("random-forest", lambda: _forest(150, 8), {"n_estimators": 150, "max_depth": 8}),
    ("hist-gbm", lambda: _hgb(learning_rate=0.08), {"max_iter": 200, "learning_rate": 0.08}),
    (
        "hist-gbm-shallow",
        lambda: _hgb(max_depth=3, learning_rate=0.1),
        {"max_iter": 200, "max_depth": 3, "learning_rate": 0.1},
    ),
]


def version_and_validate(df: pd.DataFrame) -> str:
    """Version the table (Parquet + schema + profile); stop a bad export at the gate."""
    v = keel.data.log_table(df, name=DATASET, message="January export (seed 7)")
    profile = keel.data.get_profile(v.uri)
    tenure = profile.column("tenure_months")
    console.print(
        f"Versioned [bold]{v.uri}[/]: {profile.rows:,} rows, {len(profile.names)} columns, "
        f"{v.total_bytes / 1e6:.1f} MB Parquet; profile e.g. tenure_months mean "
        f"{tenure.mean:.1f}, range {tenure.min}..{tenure.max}."
    )
    schema = keel.data.get_schema(v.uri)  # inferred from the reference: edit it as YAML
    bad = make_churn(n=5_000, seed=8)
    bad.loc[:40, "tenure_months"] = 999.0  # a broken export: 83-year tenures ...
    bad.loc[41:60, "plan"] = "platinum"  # ... and a plan nobody sells
    report = keel.data.validate(bad, schema)
    console.print(report)
    try:
        keel.data.require_valid(bad, schema)
    except keel.data.DataValidationError:
        console.print("[yellow]The February export failed validation: it will not train.[/]")
    return v.uri


def train_all(ref: str) -> str:
    """Train every candidate in a parent run on dataset version ``ref``; return its id."""
    df = keel.data.get_table(ref).to_pandas()  # verified against its hash
    X = features(df)
    y = df["churned"].to_numpy()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=0, stratify=y
    )
    with keel.start_run(experiment=EXPERIMENT, run_name="model-selection") as parent:
        keel.seed_everything(0)
        keel.log_params({"rows": len(df), "features": X.shape[1], "test_size": 0.25})
        keel.log_table(df.head(1000), "data/sample.parquet")
        for name, build, params in CANDIDATES:
            with keel.start_run(run_name=name, nested=True):
                keel.data.get_table(ref)  # read inside the run: lineage dataset -> run
                model = build()
                keel.log_params({"model": name, **params})
                t0 = time.perf_counter()
                model.fit(X_train, y_train)
                keel.log_metric("fit_seconds", time.perf_counter() - t0)
                if isinstance(model, HistGradientBoostingClassifier):
                    # a learning curve: test log-loss after every boosting iteration
                    for step, proba in enumerate(model.staged_predict_proba(X_test)):
                        keel.log_metric("test_log_loss", log_loss(y_test, proba), step=step)
                proba = model.predict_proba(X_test)[:, 1]
                pred = (proba >= 0.5).astype(int)
                keel.log_metrics(
                    {
                        "auc": roc_auc_score(y_test, proba),
                        "accuracy": accuracy_score(y_test, pred),
                        "f1": f1_score(y_test, pred),
                        "log_loss": log_loss(y_test, proba),
                    }
                )
                fpr, tpr, _ = roc_curve(y_test, proba)
                fig, ax = plt.subplots(figsize=(4, 4))
                ax.plot(fpr, tpr, label=name)
                ax.plot([0, 1], [0, 1], "--", color="grey")
                ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
                keel.log_figure(fig, "plots/roc.png")
                plt.close(fig)
                # skops format (no pickle), signature inferred from the example rows
                keel.log_model(model, "model", input_example=X_test.head(5))
        return parent.run_id


def show(parent_id: str) -> keel.Run:
    """Print the comparison table of the child runs, best AUC first; return the best."""
    runs = keel.search_runs(
        EXPERIMENT,
        filter=f"parent_run_id = '{parent_id}'",
        order_by=["metrics.auc DESC"],
    )
    table = Table(title=f"churn models (experiment '{EXPERIMENT}', parent run {parent_id[:8]})")
    for col in ("model", "AUC", "accuracy", "F1", "log-loss", "fit s", "run id"):
        table.add_column(col, justify="left" if col in ("model", "run id") else "right")
    for i, r in enumerate(runs):
        m = r.metrics
        table.add_row(
            ("[bold green]" if i == 0 else "") + r.name,
            f"{m['auc']:.4f}",
            f"{m['accuracy']:.4f}",
            f"{m['f1']:.4f}",
            f"{m['log_loss']:.4f}",
            f"{m['fit_seconds']:.2f}",
            r.run_id[:8],
        )
    console.print(table)
    best = runs[0]
    console.print(
        f"Best: [bold]{best.name}[/] (AUC {best.metrics['auc']:.4f}). Store: "
        f"{keel.get_client().settings.store_uri}\n"
        "Look deeper:\n"
        f"  keel runs list -e {EXPERIMENT} -o 'metrics.auc DESC'\n"
        f"  keel runs show {best.run_id[:8]}\n"
        f"  keel runs compare {' '.join(r.run_id[:8] for r in runs[:3])}\n"
        f"  keel artifacts ls {best.run_id[:8]}\n"
        f"  keel data versions {DATASET}"
    )
    return best


def register(best: keel.Run, X_check: pd.DataFrame) -> None:
    """Register the best model, make it the champion, load it back, write its card."""
    import keel.registry as registry

    mv = registry.register_model(
        f"runs:/{best.run_id}/model",
        MODEL,
        description=f"{best.name} selected by test AUC in the demo",
    )
    registry.update_model(
        MODEL,
        purpose="Rank customers by churn risk for retention offers.",
        limitations="Trained on synthetic data; not calibrated for other markets.",
    )
    registry.set_alias(MODEL, "champion", mv.version, reason="best test AUC")
    registry.set_stage(MODEL, mv.version, "Production", reason="demo promotion")
    model = registry.load(f"models:/{MODEL}@champion")  # every file hash-verified
    scores = model.predict_proba(X_check)[:, 1]
    card = keel.get_client().settings.home / "cards" / f"{MODEL}-v{mv.version}.html"
    card.parent.mkdir(parents=True, exist_ok=True)
    card.write_text(registry.card(MODEL, mv.version, "html"))
    lineage = keel.lineage(mv)
    checked, problem = registry.verify_audit()
    console.print(
        f"Registered [bold]{MODEL} v{mv.version}[/] ({mv.flavor}/{mv.format}), alias "
        f"'champion', stage Production; loaded back by URI and scored "
        f"{len(scores)} customers (first: {scores[0]:.3f}).\n"
        f"Trained on: {', '.join(lineage.of_kind('dataset'))} via run "
        f"{lineage.of_kind('run')[0].split(':')[1][:8]}.\n"
        f"Model card: {card}\n"
        f"Audit log: {checked} events, "
        + ("chain intact." if problem is None else f"[red]BROKEN: {problem}[/]")
        + f"\n  keel models show {MODEL}\n  keel lineage models:/{MODEL}/{mv.version}\n"
        "  keel audit log"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _deploy_champion() -> None:
    """Deployment ``churn`` serving the champion (re-runs switch it to the new champion)."""
    from keel import serving
    from keel.exceptions import AlreadyExistsError

    try:
        serving.create_deployment(MODEL, f"models:/{MODEL}@champion", reason="demo: champion")
    except AlreadyExistsError:
        dep = serving.get_deployment(MODEL)
        if dep.policy.kind != "single":
            dep = serving.rollback(MODEL, reason="demo re-run")
        champion = serving.Deployments().pin(f"models:/{MODEL}@champion")
        if dep.policy.primary != champion:
            serving.bluegreen(MODEL, f"models:/{MODEL}@champion", reason="demo re-run")
            serving.switch(MODEL, reason="demo re-run: serve the new champion")


def serve_and_canary(runner_up: keel.Run, df: pd.DataFrame) -> None:
    """Serve the champion, send traffic with feedback, then canary the runner-up."""
    import httpx

    import keel.registry as registry
    from keel import serving

    challenger = registry.register_model(
        f"runs:/{runner_up.run_id}/model", MODEL, description=f"{runner_up.name} (runner-up)"
    )
    _deploy_champion()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = keel.get_client().settings.home / "serve.log"
    env = {**os.environ, "KEEL_FLUSH_INTERVAL": "0.2"}
    cmd = [sys.executable, "-m", "keel", "serve", "--port", str(port), "--deployment", MODEL]
    with log.open("ab") as out:
        server = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            else:
                raise RuntimeError(f"keel serve did not start; see {log}")
            X, y = features(df), df["churned"].to_numpy()
            rows = X.to_dict(orient="records")

            def traffic(n: int, start: int) -> None:
                for i in range(start, start + n):
                    j = i % len(rows)
                    r = http.post(f"/v1/deployments/{MODEL}/predict", json={"records": [rows[j]]})
                    r.raise_for_status()
                    rid = r.json()["request_id"]
                    http.post("/v1/feedback", json={"request_id": rid, "labels": [int(y[j])]})

            t0 = time.perf_counter()
            traffic(300, 0)
            console.print(
                f"Serving [bold]{MODEL}[/] at {url}: 300 requests with feedback in "
                f"{time.perf_counter() - t0:.1f} s."
            )
            serving.canary(
                MODEL,
                f"models:/{MODEL}/{challenger.version}",
                steps=(0.25, 0.5, 1.0),
                step_seconds=2.0,
                guards=serving.Guards(
                    max_error_rate=0.02, max_quality_drop=0.03, min_requests=40, min_feedback=40
                ),
                reason=f"demo: try the runner-up {runner_up.name}",
            )
            sent = 300
            while serving.get_deployment(MODEL).policy.kind == "canary" and sent < 5_000:
                traffic(50, sent)
                sent += 50
    finally:
        server.terminate()
        server.wait(timeout=30)
    status = serving.status(MODEL)
    table = Table(title=f"deployment {MODEL}: revision {status['revision']}")
    for col in ("revision", "action", "serving", "why"):
        table.add_column(col)
    for rev in serving.history(MODEL):
        p = rev.policy
        cand = f" + {p['candidate']} ({p['kind']} {p['weight']:.0%})" if p.get("candidate") else ""
        table.add_row(str(rev.revision), rev.action, p["primary"] + cand, rev.reason or "")
    console.print(table)
    console.print(
        f"Now serving {status['policy']['primary']}.\n"
        f"  keel deploy status {MODEL}\n  keel deploy history {MODEL}\n"
        f"  keel serve --deployment {MODEL}   # then POST /v1/deployments/{MODEL}/predict"
    )


def main() -> None:
    """Generate and version data, validate, train, compare, register, serve, canary."""
    t0 = time.perf_counter()
    with console.status("generating a churn dataset"):
        df = make_churn()
    console.print(f"{len(df):,} customers, churn rate {df['churned'].mean():.1%}")
    with console.status("versioning and validating the data"):
        ref = version_and_validate(df)
    with console.status("training 5 candidate models with tracking"):
        parent_id = train_all(ref)
    best = show(parent_id)
    with console.status("registering the best model"):
        register(best, features(df).head(100))
    runner_up = keel.search_runs(
        EXPERIMENT, filter=f"parent_run_id = '{parent_id}'", order_by=["metrics.auc DESC"]
    )[1]
    with console.status("serving the champion, then a canary of the runner-up"):
        serve_and_canary(runner_up, make_churn(n=5_000, seed=11))
    console.print(f"[dim]done in {time.perf_counter() - t0:.1f} s[/]")


if __name__ == "__main__":
    main()
