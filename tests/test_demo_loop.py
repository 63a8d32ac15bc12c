"""`make demo`'s loop, shortened (KEEL_DEMO_QUICK=1), run for real and checked afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_shortened_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "PYTEST"))}
    env.update(KEEL_DEMO_QUICK="1", KEEL_HOME=str(tmp_path / ".keel"), KEEL_USER="demo")
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=840,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "Monitor on January traffic: ok" in out
    assert "webhook received: [WARNING] Data drift on deployment 'churn'" in out

    # the stores tell the same story
    monkeypatch.setenv("KEEL_HOME", str(tmp_path / ".keel"))
    from keel.tracking import fluent

    fluent._reset()
    import keel
    import keel.registry
    from keel import serving
    from keel.monitoring._monitors import Monitors

    runs = Monitors().runs("churn-drift")
    assert [r.status for r in reversed(runs)][:2] == ["ok", "drift"]
    retrain = runs[0].summary["retrain"]
    assert retrain["gate"]["passed"] is True
    dep = serving.get_deployment("churn")
    assert (dep.policy.kind, dep.policy.primary) == ("single", f"churn/{retrain['version']}")
    actions = [r.action for r in serving.history("churn")]
    assert actions[0] == "create" and "canary" in actions and actions[-1] == "promote"
    audit = [e.action for e in keel.registry.audit()]
    for action in ("monitor.create", "retrain.passed", "deployment.canary", "deployment.promote"):
        assert action in audit
    _, problem = keel.registry.verify_audit()
    assert problem is None
    lineage = keel.lineage(f"models:/churn/{retrain['version']}")
    assert any(src == "monitor:churn-drift" for src, _, _ in lineage.edges)
    assert (tmp_path / ".keel" / "reports" / "churn-drift.html").is_file()
    fluent._reset()
