"""Chart data for the browser (uPlot) and small SVG drawings made on the server.

Metric charts are drawn in the browser from JSON built here; the
parallel-coordinates plot and the lineage graph are SVG strings (every label
escaped), so they need no script at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

from markupsafe import Markup

from keel.entities import Metric

__all__ = [
    "MAX_POINTS",
    "PALETTE",
    "lineage_svg",
    "overlay_chart",
    "parallel_coordinates",
    "single_chart",
]

#: Series colours (Okabe-Ito-like, readable on white).
PALETTE = [
    "#2563eb",
    "#e8590c",
    "#2f9e44",
    "#c2255c",
    "#7048e8",
    "#0c8599",
    "#a61e4d",
    "#5c940d",
    "#495057",
    "#d9480f",
]
#: Points sent to the browser per series; longer histories are thinned evenly.
MAX_POINTS = 2000


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _thin(points: Sequence[Metric]) -> list[Metric]:
    if len(points) <= MAX_POINTS:
        return list(points)
    stride = len(points) / MAX_POINTS
    picked = [points[int(i * stride)] for i in range(MAX_POINTS - 1)]
    return [*picked, points[-1]]


def _x_of(points: Sequence[Metric]) -> tuple[list[float], str]:
    """Steps as the x axis, or the point's index when every point has the same step."""
    if len(points) > 1 and len({p.step for p in points}) == 1:
        return [float(i) for i in range(len(points))], "point"
    return [float(p.step) for p in points], "step"


def single_chart(key: str, history: Sequence[Metric]) -> dict[str, Any]:
    """One metric of one run: ``{key, xlabel, x, series: [{label, color, y}]}``."""
    points = _thin(history)
    x, xlabel = _x_of(points)
    return {
        "key": key,
        "xlabel": xlabel,
        "x": x,
        "series": [{"label": key, "color": PALETTE[0], "y": [_finite(p.value) for p in points]}],
        "n": len(history),
    }


def overlay_chart(key: str, histories: Sequence[tuple[str, Sequence[Metric]]]) -> dict[str, Any]:
    """One metric of several runs on shared x values (gaps where a run has no point)."""
    per_run: list[dict[float, float | None]] = []
    xs: set[float] = set()
    for _, history in histories:
        points = _thin(history)
        x, _ = _x_of(points)
        values = {xi: _finite(p.value) for xi, p in zip(x, points, strict=True)}
        per_run.append(values)
        xs.update(values)
    x_sorted = sorted(xs)
    if len(x_sorted) > MAX_POINTS * 2:  # thin the union too
        stride = len(x_sorted) / (MAX_POINTS * 2)
        x_sorted = [x_sorted[int(i * stride)] for i in range(MAX_POINTS * 2)]
    series = [
        {
            "label": label,
            "color": PALETTE[i % len(PALETTE)],
            "y": [values.get(x) for x in x_sorted],
        }
        for i, ((label, _), values) in enumerate(zip(histories, per_run, strict=True))
    ]
    return {"key": key, "xlabel": "step", "x": x_sorted, "series": series}


# -- parallel coordinates ------------------------------------------------------------------------
def _number(value: Any) -> float | None:
    if isinstance(value, int | float):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, str):
        try:
            out = float(value)
        except ValueError:
            return None
        return out if math.isfinite(out) else None
    return None


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def parallel_coordinates(
    lines: Sequence[tuple[str, str]], axes: Sequence[tuple[str, Sequence[Any]]]
) -> Markup:
    """An SVG parallel-coordinates plot.

    Args:
        lines: (label, colour) of each run.
        axes: (name, one value per run); numeric axes are scaled linearly,
            others place their distinct values evenly.
    """
    if not axes or not lines:
        return Markup("")
    gap, top, bottom, left = 130, 46, 30, 70
    height = 280
    width = left * 2 + gap * (len(axes) - 1)
    plot_h = height - top - bottom
    positions: list[list[float | None]] = []
    ticks: list[list[tuple[float, str]]] = []
    labels: list[tuple[float, str]]
    for _, values in axes:
        nums = [_number(v) for v in values]
        present = [v for v in values if v is not None]
        if present and all(
            n is not None for n, v in zip(nums, values, strict=True) if v is not None
        ):
            finite = [n for n in nums if n is not None]
            lo, hi = min(finite), max(finite)
            span = hi - lo or 1.0
            ys: list[float | None] = [
                None if n is None else top + plot_h * (1 - (n - lo) / span) for n in nums
            ]
            labels = [(top + plot_h, f"{lo:.4g}"), (top, f"{hi:.4g}")]
            if hi == lo:
                ys = [None if n is None else top + plot_h / 2 for n in nums]
                labels = [(top + plot_h / 2, f"{lo:.4g}")]
        else:
            cats = sorted({str(v) for v in present})
            step = plot_h / max(1, len(cats) - 1)
            where = {c: top + plot_h - i * step for i, c in enumerate(cats)}
            if len(cats) == 1:
                where = {cats[0]: top + plot_h / 2}
            ys = [None if v is None else where[str(v)] for v in values]
            labels = [(y, _short(c, 14)) for c, y in where.items()]
        positions.append(ys)
        ticks.append(labels)
    out = [
        f'<svg class="parcoords" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Parallel coordinates of params and metrics">'
    ]
    for i, (name, _) in enumerate(axes):
        x = left + i * gap
        out.append(
            f'<line x1="{x}" y1="{top}" x2="{x}" y2="{top + plot_h}" class="axis"/>'
            f'<text x="{x}" y="{top - 22}" class="axis-name" text-anchor="middle">'
            f"<title>{escape(name)}</title>{escape(_short(name, 18))}</text>"
        )
        for y, label in ticks[i]:
            out.append(
                f'<text x="{x - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">'
                f"{escape(label)}</text>"
            )
    for r, (label, color) in enumerate(lines):
        pts = [(left + i * gap, ys[r]) for i, ys in enumerate(positions) if ys[r] is not None]
        if not pts:
            continue
        d = " ".join(f"{'M' if j == 0 else 'L'}{x:.1f},{y:.1f}" for j, (x, y) in enumerate(pts))
        out.append(
            f'<path d="{d}" class="pc-line" stroke="{escape(color)}">'
            f"<title>{escape(label)}</title></path>"
        )
        out.extend(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{escape(color)}"/>' for x, y in pts
        )
    out.append("</svg>")
    return Markup("".join(out))


# -- lineage graph ------------------------------------------------------------------------------
_KIND_LABEL = {"run": "run", "model_version": "model version", "dataset": "dataset"}


def _layers(nodes: Sequence[str], edges: Sequence[tuple[str, str, str]]) -> dict[str, int]:
    """Longest-path layering from the sources (cycles are cut where they close)."""
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    for src, dst, _ in edges:
        if src in preds and dst in preds and src != dst:
            preds[dst].append(src)
    layer: dict[str, int] = {}
    visiting: set[str] = set()

    def depth(node: str) -> int:
        if node in layer:
            return layer[node]
        visiting.add(node)
        best = 0
        for p in preds[node]:
            if p not in visiting:
                best = max(best, depth(p) + 1)
        visiting.discard(node)
        layer[node] = best
        return best

    for n in nodes:
        depth(n)
    return layer


def lineage_svg(
    start: str,
    nodes: Sequence[str],
    edges: Sequence[tuple[str, str, str]],
    href: Any,
    labels: dict[str, str] | None = None,
) -> Markup:
    """A layered drawing of a lineage walk, sources on the left.

    ``href(node)`` links a node; ``labels`` names nodes (e.g. runs by their name).
    """
    if not nodes:
        return Markup("")
    uniq_edges = sorted(set(edges))
    layer = _layers(nodes, uniq_edges)
    columns: dict[int, list[str]] = {}
    for n in nodes:
        columns.setdefault(layer[n], []).append(n)
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    pred: dict[str, list[str]] = {n: [] for n in nodes}
    for src, dst, _ in uniq_edges:
        if src in succ and dst in pred:
            succ[src].append(dst)
            pred[dst].append(src)
    order = {n: float(i) for col in columns.values() for i, n in enumerate(col)}
    keys = sorted(columns)
    for _ in range(4):  # barycentre sweeps, left to right then right to left
        for sweep, neighbours in ((keys[1:], pred), (list(reversed(keys[:-1])), succ)):
            for k in sweep:
                col = columns[k]

                def bary(n: str, nb: dict[str, list[str]] = neighbours) -> float:
                    near = [order[m] for m in nb[n]]
                    return sum(near) / len(near) if near else order[n]

                col.sort(key=bary)
                for i, n in enumerate(col):
                    order[n] = float(i)
    box_w, box_h, col_gap, row_gap, pad = 230, 46, 96, 22, 16
    # edges that skip a column arc over the nodes between (room is kept above them)
    long_edges = any(layer[d] - layer[s] > 1 for s, d, _ in uniq_edges if s in layer and d in layer)
    arc = box_h + 14
    top = pad + (arc if long_edges else 0)
    tallest = max(len(c) for c in columns.values())
    body_h = tallest * box_h + (tallest - 1) * row_gap
    height = top + body_h + pad
    width = pad * 2 + len(keys) * box_w + (len(keys) - 1) * col_gap
    pos: dict[str, tuple[float, float]] = {}
    for ci, k in enumerate(keys):
        col = columns[k]
        col_h = len(col) * box_h + (len(col) - 1) * row_gap
        y0 = top + (body_h - col_h) / 2
        for i, n in enumerate(col):
            pos[n] = (pad + ci * (box_w + col_gap), y0 + i * (box_h + row_gap))
    out = [
        f'<svg class="lineage" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Lineage graph">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'class="arrowhead"/></marker></defs>'
    ]
    for src, dst, relation in uniq_edges:
        if src not in pos or dst not in pos:
            continue
        (x1, y1), (x2, y2) = pos[src], pos[dst]
        mid = (x1 + box_w + x2) / 2
        if layer[dst] - layer[src] > 1:  # over the columns in between, top to top
            sx, sy, tx, ty = x1 + box_w * 0.75, y1, x2 + box_w * 0.25, y2
            peak = min(sy, ty) - arc * 4 / 3
            path = (
                f"M{sx:.1f},{sy:.1f} C{sx:.1f},{peak:.1f} {tx:.1f},{peak:.1f} {tx:.1f},{ty - 2:.1f}"
            )
            label_y = min(sy, ty) - arc - 4
        else:
            sx, sy, tx, ty = x1 + box_w, y1 + box_h / 2, x2, y2 + box_h / 2
            path = (
                f"M{sx:.1f},{sy:.1f} C{mid:.1f},{sy:.1f} {mid:.1f},{ty:.1f} {tx - 2:.1f},{ty:.1f}"
            )
            label_y = (sy + ty) / 2 - 5
        out.append(
            f'<path class="edge" d="{path}" marker-end="url(#arrow)"/>'
            f'<text class="edge-label" x="{(sx + tx) / 2:.1f}" y="{label_y:.1f}" '
            f'text-anchor="middle">{escape(relation)}</text>'
        )
    for n in nodes:
        x, y = pos[n]
        kind, _, ident = n.partition(":")
        cls = "node" + (" start" if n == start else "") + f" kind-{escape(kind)}"
        out.append(
            f'<a href="{escape(str(href(n)))}" class="node-link" data-node="{escape(n)}">'
            f'<g class="{cls}"><title>{escape(n)}</title>'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{box_w}" height="{box_h}" rx="7"/>'
            f'<text x="{x + 10:.1f}" y="{y + 17:.1f}" class="node-kind">'
            f"{escape(_KIND_LABEL.get(kind, kind))}</text>"
            f'<text x="{x + 10:.1f}" y="{y + 35:.1f}" class="node-id">'
            f"{escape(_short((labels or {}).get(n) or ident or n, 27))}</text></g></a>"
        )
    out.append("</svg>")
    return Markup("".join(out))
