"""A retraining entry point for the monitor tests: fits a small model on fresh data."""

from __future__ import annotations

from typing import Any


def train(ctx: Any) -> Any:
    """Fit a gradient-boosting model on freshly generated data with the true mechanism."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    import keel
    from tests.serving.conftest import make_data

    X, y = make_data(3000, seed=11)
    keel.log_params({"trigger": ctx.reason, "champion": ctx.champion})
    return HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(X, y)
