"""keel demo: the whole loop on the embedded store.

Generate a churn dataset and version it -> validate -> train and track candidates ->
register the best (card, lineage, audit) -> deploy and serve it -> send traffic with
feedback -> the incoming data shifts -> the monitor detects drift -> alert (a webhook on
127.0.0.1) -> retrain on the new data -> gate against the champion -> canary ->
promote, then a summary of what happened and where to look.

Run with ``make demo`` (or ``python examples/demo.py``; ``KEEL_DEMO_QUICK=1`` for the
shortened loop the tests run). Everything lands in ``.keel/`` here (SQLite + a local
object folder); the model server runs on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
from churn_pipeline import DATASET, features, make_churn
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
console = Console()


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


def train_all(ref: str, *, quick: bool = False) -> str:
    """Train the candidates in a parent run on dataset version ``ref``; return its id."""
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
        for name, build, params in CANDIDATES[:3] if quick else CANDIDATES:
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


class _AlertInbox:
    """A webhook receiver on 127.0.0.1 standing in for Slack: prints what it receives."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        inbox = self
        self.messages: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                inbox.messages.append(body)
                console.print(f"[bold magenta]webhook received:[/] {body['text']}")
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/slack"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class _Server:
    """``keel serve`` in a child process on a free port."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{port}"
        self.log = keel.get_client().settings.home / "serve.log"
        env = {**os.environ, "KEEL_FLUSH_INTERVAL": "0.2"}
        cmd = [sys.executable, "-m", "keel", "serve", "--port", str(port), "--deployment", MODEL]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, http: Any) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if http.get("/readyz").status_code == 200:
                    return
            except Exception:  # not listening yet
                pass
            time.sleep(0.1)
        raise RuntimeError(f"keel serve did not start; see {self.log}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def _traffic(http: Any, df: pd.DataFrame, n: int, offset: int = 0) -> None:
    """``n`` single-row requests, each followed by its true label as feedback."""
    X, y = features(df), df["churned"].to_numpy()
    rows = X.to_dict(orient="records")
    for i in range(offset, offset + n):
        j = i % len(rows)
        r = http.post(f"/v1/deployments/{MODEL}/predict", json={"records": [rows[j]]})
        r.raise_for_status()
        http.post(
            "/v1/feedback", json={"request_id": r.json()["request_id"], "labels": [int(y[j])]}
        )


def serve_monitor_retrain(jan: pd.DataFrame, sizes: dict[str, int]) -> dict[str, Any]:
    """Deploy, serve, monitor; shift the data; let the agent alert, retrain, gate and canary."""
    import httpx

    from keel import serving
    from keel.monitoring import Agent, AlertSpec, Monitors, RetrainSpec

    _deploy_champion()
    inbox = _AlertInbox()
    server = _Server()
    out: dict[str, Any] = {}
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            server.wait_ready(http)
            feb = make_churn(n=sizes["customers"], seed=21, month=1)
            holdout = make_churn(n=sizes["holdout"], seed=22, month=1)
            keel.data.log_table(
                pd.concat([features(holdout), holdout[["churned"]]], axis=1),
                name="churn-holdout",
                message="February holdout (features + label) for the retraining gate",
            )
            Monitors().create(
                "churn-drift",
                replace=True,
                deployment=MODEL,
                reference=features(jan),
                every_seconds=1.0,
                window_seconds=600.0,
                min_rows=100,
                performance_metric="accuracy",
                performance_min=0.7,
                alert=AlertSpec(targets=("log", inbox.url), cooldown_seconds=600),
                retrain=RetrainSpec(
                    entry_point="churn_pipeline:retrain",
                    model=MODEL,
                    gate_dataset="churn-holdout",
                    label="churned",
                    metric="roc_auc",
                    margin=0.01,
                    slices=("autopay",),
                    canary_steps=(0.3, 1.0),
                    canary_step_seconds=2.0,
                    guards={"max_error_rate": 0.02, "min_requests": 30},
                ),
            )
            t0 = time.perf_counter()
            _traffic(http, jan, sizes["traffic"])
            console.print(
                f"Serving [bold]{MODEL}[/] at {server.url}: {sizes['traffic']} January "
                f"requests with feedback in {time.perf_counter() - t0:.1f} s."
            )
            time.sleep(0.5)  # the server flushes its prediction log every 0.2 s
            agent = Agent(poll_interval=1.0)
            first = agent.run_once()
            console.print(f"Monitor on January traffic: {first['evaluated']['churn-drift']}.")
            keel.data.log_table(feb, name=DATASET, message="February export (shifted)")
            _traffic(http, feb, sizes["drifted"], offset=0)
            console.print(
                f"Sent {sizes['drifted']} February requests (newer customers, pricier plans)."
            )
            time.sleep(0.5)  # the server flushes its prediction log every 0.2 s
            with console.status("agent: checking drift, alerting, retraining, gating"):
                second = agent.run_once()
            run = Monitors().runs("churn-drift", limit=1)[0]
            out["monitor"] = run
            retrain = run.summary.get("retrain", {})
            gate = retrain.get("gate", {})
            console.print(
                f"Monitor: [bold red]{run.status}[/] — drifted: "
                f"{', '.join(run.summary.get('drifted_columns', []))}; accuracy "
                f"{(run.summary.get('performance') or {}).get('accuracy', float('nan')):.3f}; "
                f"alerts delivered: {second['delivered']}."
            )
            if gate:
                console.print(
                    f"Retrained in run {retrain['run_id'][:8]}; gate ({gate['metric']} on "
                    f"{gate['rows']} held-out rows): candidate {gate['candidate']:.4f} vs champion "
                    f"{gate['champion']:.4f} -> "
                    + ("[green]passed[/]" if gate["passed"] else "[red]rejected[/]")
                )
            deadline = time.monotonic() + sizes["canary_seconds"]
            sent = sizes["drifted"]
            with console.status("canary of the retrained model: traffic and feedback"):
                while (
                    serving.get_deployment(MODEL).policy.kind == "canary"
                    and time.monotonic() < deadline
                ):
                    _traffic(http, feb, 40, offset=sent)
                    sent += 40
    finally:
        server.stop()
        inbox.server.shutdown()
    out["alerts"] = inbox.messages
    return out


def summary(loop: dict[str, Any]) -> None:
    """What happened, and where to look."""
    import keel.registry as registry
    from keel import serving

    status = serving.status(MODEL)
    table = Table(title=f"deployment {MODEL}: history")
    for col in ("rev", "action", "serving", "why"):
        table.add_column(col)
    for rev in serving.history(MODEL):
        p = rev.policy
        cand = f" + {p['candidate']} ({p['kind']})" if p.get("candidate") else ""
        table.add_row(str(rev.revision), rev.action, p["primary"] + cand, (rev.reason or "")[:70])
    console.print(table)
    serving_now = status["policy"]["primary"]
    report = keel.get_client().settings.home / "reports" / "churn-drift.html"
    report.parent.mkdir(parents=True, exist_ok=True)
    from keel.monitoring import Monitors

    report.write_bytes(Monitors().report("churn-drift", html=True))
    lineage = keel.lineage(f"models:/{serving_now}")
    events = registry.audit()[-10:]
    runs = keel.search_runs(EXPERIMENT) + keel.search_runs(f"retrain-{MODEL}")
    versions = registry.list_versions(MODEL)
    console.print(
        f"Runs: {len(runs)}; versions of {MODEL}: {len(versions)}; now serving "
        f"[bold]{serving_now}[/].\n"
        f"Drift report: {report}\n"
        f"Lineage of {serving_now} (what it came from):\n"
        + "".join(f"  {src} --{rel}--> {dst}\n" for src, dst, rel in lineage.edges)
        + f"Alerts received by the webhook: {len(loop['alerts'])}\n"
        "Audit trail (latest):"
    )
    for e in events:
        console.print(f"  {e.seq:>3} {e.action:<22} {e.object:<34} {e.actor}")
    checked, problem = registry.verify_audit()
    console.print(
        f"Audit chain: {checked} events, {'intact' if problem is None else 'BROKEN: ' + problem}.\n"
        f"Look deeper:\n  keel deploy history {MODEL}\n  keel monitor runs churn-drift\n"
        f"  keel monitor report churn-drift -o drift.html\n  keel monitor alerts\n"
        f"  keel lineage models:/{serving_now}\n  keel audit log"
    )


def main() -> None:
    """The whole loop on the embedded store (KEEL_DEMO_QUICK=1: a shortened loop)."""
    quick = os.environ.get("KEEL_DEMO_QUICK") == "1"
    sizes = (
        {"customers": 6_000, "traffic": 150, "drifted": 300, "holdout": 3_000, "canary_seconds": 60}
        if quick
        else {"customers": 20_000, "traffic": 300, "drifted": 600, "holdout": 6_000,
              "canary_seconds": 120}
    )  # fmt: skip
    t0 = time.perf_counter()
    with console.status("generating a churn dataset"):
        df = make_churn(n=sizes["customers"])
    console.print(f"{len(df):,} customers, churn rate {df['churned'].mean():.1%}")
    with console.status("versioning and validating the data"):
        ref = version_and_validate(df)
    with console.status("training candidate models with tracking"):
        parent_id = train_all(ref, quick=quick)
    best = show(parent_id)
    with console.status("registering the best model"):
        register(best, features(df).head(100))
    loop = serve_monitor_retrain(df, sizes)
    summary(loop)
    console.print(f"[dim]done in {time.perf_counter() - t0:.1f} s[/]")


if __name__ == "__main__":
    main()
