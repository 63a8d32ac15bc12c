"""The Grafana dashboard only queries metrics keel really exports, and its layout is sound."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "keel-dashboard.json"


def _exported_names(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Every sample name keel serve and keel agent expose, with one sample per metric."""
    from prometheus_client.parser import text_string_to_metric_families

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    from keel.monitoring import _metrics
    from keel.serving._app import _Metrics

    serving = _Metrics()
    labels = ("d", "m/1")
    serving.requests.labels(*labels, "ok").inc()
    serving.latency.labels(*labels).observe(0.01)
    serving.batch_rows.labels(*labels).observe(3)
    serving.fallbacks.labels(*labels).inc()
    serving.shadow.labels(*labels, "agree").inc()
    serving.revision.labels("d").set(2)
    serving.dropped.inc()
    _metrics.record_run(
        "mon", "d", "drift",
        {"share_drifted": 0.5, "rows": 10, "performance": {"accuracy": 0.9}},
        {"columns": {"f0": {"drifted": True, "statistic": 0.3, "test": "ks"}}},
    )  # fmt: skip
    _metrics.record_alert_states({"pending": 1})
    names: set[str] = set()
    for text in (serving.render().decode(), _metrics.render().decode()):
        for family in text_string_to_metric_families(text):
            names |= {s.name for s in family.samples}
    return names


def test_every_query_uses_an_exported_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {m for e in exprs for m in re.findall(r"\bkeel_[a-z_]+\b", e)}
    assert len(used) >= 12
    exported = _exported_names(monkeypatch)
    assert used <= exported, f"not exported: {sorted(used - exported)}"


def test_layout_ids_and_variables() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not (mine & cells), f"panel {p['title']!r} overlaps another"
        cells |= mine
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "deployment", "monitor"}
    for p in panels:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}"
