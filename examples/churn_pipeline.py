"""The churn demo's data and training code, importable so ``keel agent`` can retrain with it.

``make_churn(month=1)`` is the February export: newer customers on pricier plans, and
a changed churn mechanism (support calls and month-to-month contracts matter more),
so a model trained in January both sees drifted inputs and loses accuracy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

DATASET = "churn-customers"


def make_churn(n: int = 20_000, seed: int = 7, month: int = 0) -> pd.DataFrame:
    """A churn-like customer table with a known, non-linear churn mechanism."""
    rng = np.random.default_rng(seed)
    shifted = month >= 1
    tenure = rng.gamma(2.0, 7.0 if shifted else 12.0, n).clip(0, 72)
    monthly = rng.normal(80 if shifted else 65, 25, n).clip(15, 150)
    support_calls = rng.poisson(2.4 if shifted else 1.5, n)
    mix = [0.72, 0.18, 0.10] if shifted else [0.55, 0.25, 0.2]
    contract = rng.choice(["month-to-month", "one-year", "two-year"], n, p=mix)
    plan = rng.choice(["basic", "plus", "premium"], n, p=[0.5, 0.35, 0.15])
    autopay = rng.random(n) < 0.45
    calls_effect = 0.9 if shifted else 0.45
    m2m = 0.4 if shifted else 1.3
    logit = (
        -1.2
        - 0.05 * tenure
        + 0.02 * (monthly - 65)
        + calls_effect * (support_calls - (1.5 if shifted else 0.0))
        + np.where(contract == "month-to-month", m2m, np.where(contract == "one-year", 0.0, -1.1))
        - (1.4 if shifted else 0.6) * autopay
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
    """One-hot encode the categorical columns (every category present, fixed order)."""
    out = df.drop(columns=[c for c in ("churned",) if c in df.columns]).copy()
    for column, values in (
        ("contract", ("month-to-month", "one-year", "two-year")),
        ("plan", ("basic", "plus", "premium")),
    ):
        for value in values:
            out[f"{column}_{value}"] = (out[column] == value).astype(float)
        out = out.drop(columns=column)
    return out


def retrain(ctx: Any) -> Any:
    """The retraining entry point (``churn_pipeline:retrain``): fit on the newest export."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    import keel
    import keel.data

    df = keel.data.get_table(DATASET).to_pandas()  # the latest version: lineage dataset -> run
    keel.log_params({"trigger": ctx.reason, "rows": len(df), "model": "hist-gbm"})
    model = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.08, random_state=0)
    return model.fit(features(df), df["churned"].to_numpy())
