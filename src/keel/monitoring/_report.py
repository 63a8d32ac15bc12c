"""Drift reports: per-column results, the dataset verdict, JSON and one self-contained HTML file.

The HTML has no external resources (no scripts, stylesheets, fonts or images
fetched from anywhere): styles are inline and every plot is an inline SVG drawn
here from the binned distributions, so the file can be mailed or archived as is
and renders inline in Jupyter (:meth:`DriftReport._repr_html_`).
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["ColumnDrift", "DriftReport", "SchemaIssue"]

Status = Literal["ok", "drift", "insufficient", "skipped"]


@dataclass
class SchemaIssue:
    """A column missing from the window, added to it, or of another type family."""

    column: str
    issue: Literal["missing", "added", "type_changed"]
    reference_type: str | None
    current_type: str | None

    @property
    def message(self) -> str:
        """A one-line description."""
        if self.issue == "missing":
            return f"column '{self.column}' ({self.reference_type}) is missing from the window"
        if self.issue == "added":
            return f"column '{self.column}' ({self.current_type}) is not in the reference"
        return (
            f"column '{self.column}' changed type: {self.reference_type} -> "
            f"{self.current_type} (not compared)"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "column": self.column,
            "issue": self.issue,
            "reference_type": self.reference_type,
            "current_type": self.current_type,
            "message": self.message,
        }


@dataclass
class ColumnDrift:
    """The result for one column.

    ``test`` is the deciding test, ``statistic`` its value and ``threshold`` its
    effect-size threshold; ``p_value``/``p_adjusted`` belong to the column's
    significance test (KS for numeric, chi-square for categorical; adjusted by
    Benjamini-Hochberg across every test of the report). ``statistics`` holds every
    statistic computed for the column, ``quality`` the data-quality figures, and
    ``reasons`` why it drifted.
    """

    name: str
    family: str
    reference_type: str
    current_type: str
    status: Status
    test: str
    statistic: float | None = None
    threshold: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    drifted: bool = False
    statistics: dict[str, float | int | None] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)
    summary: dict[str, dict[str, float | None]] = field(default_factory=dict)
    plot: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        stat = "-" if self.statistic is None else f"{self.statistic:.4g}"
        return f"<ColumnDrift {self.name!r} {self.status}: {self.test} {stat}>"

    @property
    def kind(self) -> str:
        """``"numeric"`` or ``"categorical"`` (how the column was tested)."""
        return self.family

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (non-finite numbers become ``None``)."""
        out: dict[str, Any] = _clean(
            {
                "name": self.name,
                "kind": self.family,
                "family": self.family,
                "reference_type": self.reference_type,
                "current_type": self.current_type,
                "status": self.status,
                "drifted": self.drifted,
                "test": self.test,
                "statistic": self.statistic,
                "threshold": self.threshold,
                "p_value": self.p_value,
                "p_adjusted": self.p_adjusted,
                "statistics": self.statistics,
                "quality": self.quality,
                "reasons": self.reasons,
                "issues": self.issues,
                "summary": self.summary,
                "plot": self.plot,
            }
        )
        return out


@dataclass
class DriftReport:
    """The result of :func:`keel.monitoring.check`.

    ``drifted`` is the dataset verdict: at least one column drifted and the share
    of drifted columns reached ``thresholds["share"]``. It is never true when
    ``insufficient`` (the window is too small to say anything).
    """

    reference: str
    reference_source: str
    current: str
    rows_reference: int
    rows_current: int
    columns: dict[str, ColumnDrift]
    schema_issues: list[SchemaIssue]
    thresholds: dict[str, float]
    min_rows: int
    drifted: bool
    share_drifted: float
    insufficient: bool
    message: str
    prediction_column: str | None = None
    created_at: str = ""
    elapsed_s: float = 0.0

    def __repr__(self) -> str:
        return f"<DriftReport {self.summary()}>"

    @property
    def drifted_columns(self) -> list[str]:
        """Names of the drifted columns."""
        return [c.name for c in self.columns.values() if c.drifted]

    @property
    def prediction_drift(self) -> ColumnDrift | None:
        """The prediction column's result, when ``prediction_column`` was given."""
        if self.prediction_column is None:
            return None
        return self.columns.get(self.prediction_column)

    @property
    def issues(self) -> list[str]:
        """Every schema and data-quality issue, one line each."""
        out = [s.message for s in self.schema_issues]
        for c in self.columns.values():
            out.extend(f"{c.name}: {i}" for i in c.issues)
        return out

    def summary(self) -> str:
        """A one-line human summary."""
        if self.insufficient:
            return f"insufficient data: {self.message}"
        tested = sum(1 for c in self.columns.values() if c.status in ("ok", "drift"))
        verdict = "DRIFT" if self.drifted else "no drift"
        names = ", ".join(self.drifted_columns[:8])
        more = "..." if len(self.drifted_columns) > 8 else ""
        tail = f" ({names}{more})" if names else ""
        schema = f"; {len(self.schema_issues)} schema issue(s)" if self.schema_issues else ""
        return (
            f"{verdict}: {len(self.drifted_columns)} of {tested} columns drifted "
            f"({self.share_drifted:.0%}){tail}{schema}"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of everything in the report."""
        out: dict[str, Any] = _clean(
            {
                "keel_drift_report": 1,
                "reference": self.reference,
                "reference_source": self.reference_source,
                "current": self.current,
                "rows_reference": self.rows_reference,
                "rows_current": self.rows_current,
                "drifted": self.drifted,
                "share_drifted": self.share_drifted,
                "drifted_columns": self.drifted_columns,
                "insufficient": self.insufficient,
                "message": self.message,
                "summary": self.summary(),
                "prediction_column": self.prediction_column,
                "thresholds": self.thresholds,
                "min_rows": self.min_rows,
                "schema_issues": [s.to_dict() for s in self.schema_issues],
                "columns": [c.to_dict() for c in self.columns.values()],
                "created_at": self.created_at,
                "elapsed_s": self.elapsed_s,
            }
        )
        return out

    def to_json(self, path: str | os.PathLike[str] | None = None, *, indent: int = 2) -> str:
        """The report as JSON text; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            _write(Path(path), text)
        return text

    def to_html(self, path: str | os.PathLike[str] | None = None) -> str:
        """One self-contained HTML page; also written to ``path`` when given."""
        page = (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>keel drift report: {html.escape(self.reference)}</title>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"</head><body style='margin:0;background:#fff'>{self._body()}</body></html>\n"
        )
        if path is not None:
            _write(Path(path), page)
        return page

    def _repr_html_(self) -> str:
        return self._body()

    # -- rendering ------------------------------------------------------------------------
    def _body(self) -> str:
        e = html.escape
        if self.insufficient:
            verdict, colour = "Insufficient data", "#8a6d00"
        elif self.drifted:
            verdict, colour = "Drift detected", "#b00020"
        else:
            verdict, colour = "No drift", "#1b7f3b"
        parts = [f"<div class='keel-drift' style='{_FONT}'>", f"<style>{_CSS}</style>"]
        parts.append(
            f"<h1>Drift report <span style='color:{colour}'>{verdict}</span></h1>"
            f"<p class='sub'>{e(self.summary())}</p>"
            "<table class='kv'>"
            f"<tr><th>Reference</th><td>{e(self.reference)} ({e(self.reference_source)}), "
            f"{self.rows_reference:,} rows</td></tr>"
            f"<tr><th>Current</th><td>{e(self.current)}, {self.rows_current:,} rows</td></tr>"
            f"<tr><th>Drifted share</th><td>{self.share_drifted:.1%} "
            f"(dataset threshold {self.thresholds.get('share', 0):.0%}, FDR "
            f"{self.thresholds.get('alpha', 0.05):g})</td></tr>"
            f"<tr><th>Created</th><td>{e(self.created_at)} ({self.elapsed_s:.2f} s)</td></tr>"
            "</table>"
        )
        if self.insufficient:
            parts.append(f"<p class='warn'>{e(self.message)}</p>")
        if self.schema_issues:
            items = "".join(f"<li>{e(s.message)}</li>" for s in self.schema_issues)
            parts.append(f"<h2>Schema issues</h2><ul class='warn'>{items}</ul>")
        parts.append(self._table())
        parts.append("<h2>Columns</h2>")
        for c in _ordered(self.columns.values()):
            parts.append(_card(c))
        parts.append("</div>")
        return "".join(parts)

    def _table(self) -> str:
        e = html.escape
        rows = []
        for c in _ordered(self.columns.values()):
            badge = {
                "drift": "<b style='color:#b00020'>drift</b>",
                "ok": "<span style='color:#1b7f3b'>ok</span>",
                "insufficient": "<span style='color:#8a6d00'>insufficient</span>",
                "skipped": "<span style='color:#666'>skipped</span>",
            }[c.status]
            miss_r = c.quality.get("missing_reference")
            miss_c = c.quality.get("missing_current")
            rows.append(
                f"<tr><td><a href='#col-{_anchor(c.name)}'>{e(c.name)}</a></td>"
                f"<td>{e(c.family)}</td><td>{e(c.test)}</td><td>{_num(c.statistic)}</td>"
                f"<td>{_num(c.threshold)}</td><td>{_num(c.p_adjusted)}</td><td>{badge}</td>"
                f"<td>{_pct(miss_r)} &rarr; {_pct(miss_c)}</td>"
                f"<td>{e('; '.join(c.issues))}</td></tr>"
            )
        return (
            "<h2>Summary</h2><table class='grid'><tr><th>column</th><th>type</th><th>test</th>"
            "<th>statistic</th><th>threshold</th><th>p (BH)</th><th>status</th>"
            "<th>missing ref &rarr; cur</th><th>issues</th></tr>" + "".join(rows) + "</table>"
        )


_FONT = "font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#222;padding:16px"
_CSS = (
    ".keel-drift h1{font-size:22px;margin:0 0 4px}.keel-drift h2{font-size:17px;margin:20px 0 8px}"
    ".keel-drift .sub{color:#444;margin:0 0 10px}.keel-drift table{border-collapse:collapse;"
    "font-size:13px}.keel-drift .kv th{text-align:left;padding:2px 12px 2px 0;color:#555}"
    ".keel-drift .grid th,.keel-drift .grid td{border:1px solid #ddd;padding:3px 7px;"
    "text-align:left}.keel-drift .grid th{background:#f4f4f4}.keel-drift .warn{color:#8a4b00}"
    ".keel-drift .card{display:inline-block;vertical-align:top;border:1px solid #ddd;"
    "border-radius:6px;padding:8px;margin:0 10px 10px 0;width:380px;font-size:12px}"
    ".keel-drift .card h3{font-size:14px;margin:0 0 4px}.keel-drift .muted{color:#666}"
)


def _ordered(cols: Any) -> list[ColumnDrift]:
    rank = {"drift": 0, "insufficient": 1, "skipped": 2, "ok": 3}
    return sorted(cols, key=lambda c: rank[c.status])


def _anchor(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name)


def _num(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "&ndash;"
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.2e}"
    return f"{v:.4g}"


def _pct(v: Any) -> str:
    return "&ndash;" if v is None else f"{float(v):.1%}"


def _card(c: ColumnDrift) -> str:
    e = html.escape
    colour = "#b00020" if c.drifted else "#222"
    stats = ", ".join(
        f"{k} {_num(float(v))}" for k, v in c.statistics.items() if isinstance(v, int | float)
    )
    lines = [
        f"<div class='card' id='col-{_anchor(c.name)}'>",
        f"<h3 style='color:{colour}'>{e(c.name)} <span class='muted'>({e(c.family)}, "
        f"{e(c.status)})</span></h3>",
        _svg(c),
    ]
    if c.plot:
        lines.append(
            "<div><span style='color:#4c78a8'>&#9632; reference</span> "
            "<span style='color:#f58518'>&#9632; current</span></div>"
        )
    if stats:
        lines.append(f"<div class='muted'>{e(stats)}</div>")
    for r in c.reasons:
        lines.append(f"<div style='color:#b00020'>{e(r)}</div>")
    for i in c.issues:
        lines.append(f"<div class='warn'>{e(i)}</div>")
    lines.append("</div>")
    return "".join(lines)


def _svg(c: ColumnDrift) -> str:
    """Reference vs current shares as an inline SVG bar chart."""
    ref = [float(v) for v in c.plot.get("reference", [])]
    cur = [float(v) for v in c.plot.get("current", [])]
    if not ref or len(ref) != len(cur):
        return "<div class='muted'>no distribution to plot</div>"
    w, h, pad = 370, 150, 18
    top = max(max(ref), max(cur), 1e-12)
    n = len(ref)
    bw = (w - 2) / n
    bars = []
    for i, (r, k) in enumerate(zip(ref, cur, strict=True)):
        x = 1 + i * bw
        hr, hc = (h - pad) * r / top, (h - pad) * k / top
        bars.append(
            f"<rect x='{x:.1f}' y='{h - pad - hr:.1f}' width='{max(bw * 0.48, 0.6):.1f}' "
            f"height='{hr:.1f}' fill='#4c78a8'/>"
            f"<rect x='{x + bw * 0.5:.1f}' y='{h - pad - hc:.1f}' "
            f"width='{max(bw * 0.48, 0.6):.1f}' height='{hc:.1f}' fill='#f58518'/>"
        )
    labels = c.plot.get("labels")
    axis = ""
    if labels and c.family == "categorical":
        step = max(1, n // 8)
        axis = "".join(
            f"<text x='{1 + i * bw + bw / 2:.1f}' y='{h - 4}' font-size='9' "
            f"text-anchor='middle'>{html.escape(str(lab)[:10])}</text>"
            for i, lab in enumerate(labels)
            if i % step == 0
        )
    elif c.plot.get("edges"):
        edges = c.plot["edges"]
        axis = (
            f"<text x='2' y='{h - 4}' font-size='9'>{_num(float(edges[0]))}</text>"
            f"<text x='{w - 2}' y='{h - 4}' font-size='9' text-anchor='end'>"
            f"{_num(float(edges[-1]))}</text>"
        )
    return (
        f"<svg width='{w}' height='{h}' "
        f"viewBox='0 0 {w} {h}' role='img' aria-label='{html.escape(c.name)} distribution'>"
        f"<line x1='0' y1='{h - pad}' x2='{w}' y2='{h - pad}' stroke='#999'/>"
        + "".join(bars)
        + axis
        + "</svg>"
    )


def _clean(value: Any) -> Any:
    """Replace non-finite floats by ``None`` and NumPy scalars by Python ones, recursively."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    item = getattr(value, "item", None)
    if callable(item):
        return _clean(item())
    return str(value)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
