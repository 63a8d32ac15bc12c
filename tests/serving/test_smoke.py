"""One deployment served for real: predict, a canary promoted by the server itself."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from keel import serving
from tests.serving.conftest import ServeProcess, make_data, records


def test_predict_and_canary_promotion(
    registered: dict[int, str], serve: Callable[..., ServeProcess]
) -> None:
    serving.create_deployment("churn", registered[1])
    server = serve()
    X, y = make_data(50, seed=1)
    r = httpx.post(f"{server.url}/v1/deployments/churn/predict", json={"records": records(X)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == "churn/1" and len(body["predictions"]) == 50
    assert (sum(p == t for p, t in zip(body["predictions"], y, strict=True))) >= 45

    serving.canary(
        "churn", registered[2], steps=(0.5, 1.0), step_seconds=0.5,
        guards=serving.Guards(min_requests=5),
    )  # fmt: skip
    served = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and serving.get_deployment("churn").policy.kind != "single":
        one = {"records": records(X.head(1))}
        served.add(
            httpx.post(f"{server.url}/v1/deployments/churn/predict", json=one).json()[
                "model_version"
            ]
        )
        time.sleep(0.02)
    dep = serving.get_deployment("churn")
    assert dep.policy.primary == "churn/2" and dep.policy.fallback == "churn/1"
    assert served == {"churn/1", "churn/2"}
    actions = [r.action for r in serving.history("churn")]
    assert actions[:2] == ["create", "canary"] and actions[-1] == "promote"
