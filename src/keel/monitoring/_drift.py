"""``check``: stream a window through the reference's bins and decide, column by column.

Decision rule (defaults in :data:`DEFAULT_THRESHOLDS`, the reasoning in
``docs/monitoring.md``): a column drifts when its distribution differs
*significantly* (KS for numeric, chi-square for categorical columns; p-values
adjusted by Benjamini-Hochberg over every test in the report, so testing 50
columns does not multiply false alarms) *and* by at least a minimum effect size
(the chosen test's statistic reaches its threshold), so that with millions of
rows a trivially small, significant difference is not an alarm. A change in the
share of null/NaN/inf values is tested the same way (two-proportion z-test +
an absolute change of at least ``thresholds["missing"]``).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from keel.exceptions import InvalidSpecError
from keel.monitoring import _stats
from keel.monitoring._columns import (
    FloatArray,
    bin_sorted,
    category_counts,
    family,
    merge_moments,
    moments_inplace,
    numeric_batch,
)
from keel.monitoring._reference import (
    ColumnReference,
    Reference,
    _check_names,
    numeric_as_category,
    resolve_source,
    stream_batches,
)
from keel.monitoring._report import ColumnDrift, DriftReport, SchemaIssue

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["DEFAULT_MIN_ROWS", "DEFAULT_TESTS", "DEFAULT_THRESHOLDS", "TESTS", "check"]

#: Default effect-size thresholds per test, the FDR level and the dataset share.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "alpha": 0.01,  # false discovery rate (Benjamini-Hochberg) of the significance tests
    "ks": 0.015,  # KS D: largest CDF gap
    "wasserstein": 0.1,  # Wasserstein-1 / reference std
    "psi": 0.1,  # population stability index
    "js": 0.1,  # Jensen-Shannon distance (base 2)
    "chi2": 0.015,  # total variation distance between category shares
    "missing": 0.01,  # absolute change in the share of null/NaN/inf values
    "share": 0.0,  # dataset drifts when >= 1 column drifted and the share reaches this
}
#: Tests available per column family.
TESTS: dict[str, tuple[str, ...]] = {
    "numeric": ("ks", "wasserstein", "psi", "js"),
    "categorical": ("chi2", "psi", "js"),
}
#: The deciding test per family when ``tests`` does not say.
DEFAULT_TESTS = {"numeric": "ks", "categorical": "chi2"}
#: Fewer rows than this (in the window, or non-missing values of a column): insufficient.
DEFAULT_MIN_ROWS = 100
#: New category names remembered per column (their total count is always exact).
_NEW_NAMES = 1000
_PLOT_BINS = 40
#: Share of window values outside the reference's [min, max] reported as an issue (a new
#: sample always has a few values beyond an old sample's extremes).
_OUT_OF_RANGE = 0.005
_PLOT_CATEGORIES = 15


class _Window:
    """The current window of one column, accumulated batch by batch."""

    def __init__(self, ref: ColumnReference, current_type: pa.DataType) -> None:
        self.ref = ref
        self.current_type = current_type
        self.rows = 0
        self.nulls = self.nan = self.posinf = self.neginf = 0
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.lo = math.inf
        self.hi = -math.inf
        if ref.family == "numeric":
            m = ref.edges.size - 1
            self.counts = np.zeros(m + 2, dtype=np.int64)
            self.sums = np.zeros(m + 2)
        else:
            self.counts = np.zeros(len(ref.categories) + 2, dtype=np.int64)  # + other, new
            self.sums = np.zeros(0)
            self.new: dict[Any, int] = {}
            import pyarrow as pa

            cats = ref.categories
            is_bool = bool(cats) and all(isinstance(v, bool) for v in cats)
            self.value_set = pa.array(cats, pa.bool_() if is_bool else pa.string())

    def add(self, arr: pa.Array) -> None:
        self.rows += len(arr)
        if self.ref.family == "numeric":
            self._numeric(arr)
        else:
            self._categorical(arr)

    def _numeric(self, arr: pa.Array) -> None:
        b = numeric_batch(arr)
        self.nulls += b.nulls
        self.nan += b.nan
        self.posinf += b.posinf
        self.neginf += b.neginf
        xs = b.sorted
        if xs.size == 0 or self.ref.mean is None:
            return
        counts, sums = bin_sorted(xs, self.ref.edges, self.ref.mean)
        self.counts += counts
        self.sums += sums
        self.lo = min(self.lo, float(xs[0]))
        self.hi = max(self.hi, float(xs[-1]))
        # xs is this batch's own sorted copy: the moments may overwrite it
        n_b, mean_b, m2_b = moments_inplace(xs)
        self.n, self.mean, self.m2 = merge_moments(self.n, self.mean, self.m2, n_b, mean_b, m2_b)

    def _categorical(self, arr: pa.Array) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        if self.ref.coded:
            arr = numeric_as_category(arr)
        values, counts, nulls = category_counts(arr)
        self.nulls += nulls
        if len(values) == 0:
            return
        self.n += int(counts.sum())
        if values.type != self.value_set.type:
            try:
                values = values.cast(self.value_set.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # e.g. "yes" vs booleans
                values = values.cast(pa.string())
        if values.type != self.value_set.type:
            idx = pa.nulls(len(values), pa.int32())  # nothing matches: all new
        else:
            idx = pc.index_in(values, value_set=self.value_set)
        known = idx.is_valid().to_numpy(zero_copy_only=False)
        k = len(self.ref.categories)
        if known.any():
            pos = idx.filter(pa.array(known)).to_numpy().astype(np.intp)
            np.add.at(self.counts, pos, counts[known])
        unknown = ~known
        if unknown.any():
            total = int(counts[unknown].sum())
            if self.ref.complete:
                self.counts[k + 1] += total
                # names of the most frequent new categories (their total above is exact)
                order = np.argsort(-counts[unknown], kind="stable")[:_NEW_NAMES]
                names = values.filter(pa.array(unknown)).take(pa.array(order)).to_pylist()
                for name, n in zip(names, counts[unknown][order].tolist(), strict=True):
                    if name in self.new or len(self.new) < _NEW_NAMES:
                        self.new[name] = self.new.get(name, 0) + int(n)
            else:
                self.counts[k] += total  # beyond the reference's kept categories

    @property
    def finite(self) -> int:
        return self.rows - self.nulls - self.nan - self.posinf - self.neginf


# -- statistics per column ------------------------------------------------------------------
def _numeric_stats(ref: ColumnReference, win: _Window) -> tuple[dict[str, Any], dict[str, Any]]:
    """Statistics and the plot of a numeric column."""
    rc, cc = ref.counts, win.counts
    d = _stats.ks_statistic(rc, cc)
    p = _stats.ks_pvalue(d, ref.finite, win.finite)
    center = ref.mean or 0.0
    rmask, cmask = rc > 0, cc > 0
    rpos = ref.sums[rmask] / rc[rmask] + center
    cpos = win.sums[cmask] / cc[cmask] + center
    rw = rc[rmask] / rc.sum()
    cw = cc[cmask] / cc.sum()
    w = _stats.wasserstein_points(rpos, rw, cpos, cw)
    scale = ref.std if ref.std else (abs(ref.mean) if ref.mean else 1.0)
    groups = _stats.coarse_groups(rc)
    rg = _stats.regroup(rc, groups, _stats.COARSE_BINS)
    cg = _stats.regroup(cc, groups, _stats.COARSE_BINS)
    both = (rg + cg) > 0
    stats: dict[str, Any] = {
        "ks": d,
        "ks_p": p,
        "wasserstein": w / scale,
        "wasserstein_raw": w,
        "psi": _stats.psi(rg[both], cg[both]),
        "js": _stats.jensen_shannon(rg[both], cg[both]),
    }
    return stats, _numeric_plot(ref, win)


def _cdf_knots(
    edges: FloatArray, counts: np.ndarray[Any, Any], lo: float, hi: float
) -> tuple[FloatArray, FloatArray]:
    """Knots of a piecewise-linear CDF: values spread evenly within each bin.

    ``counts`` has the two outer bins (below ``edges[0]``, above ``edges[-1]``), which
    extend to the window's own extremes ``lo``/``hi``.
    """
    x = np.concatenate([[min(lo, edges[0])], edges, [max(hi, edges[-1])]])
    cum = np.concatenate([[0.0], np.cumsum(counts, dtype=np.float64)])
    total = cum[-1] if cum[-1] > 0 else 1.0
    return x, cum / total


def _numeric_plot(ref: ColumnReference, win: _Window) -> dict[str, Any]:
    """Shares of both tables in 40 equal-width bins over the central 99% of their values."""
    if ref.counts.sum() == 0 or win.counts.sum() == 0:
        return {}
    if ref.edges.size - 1 <= _PLOT_BINS:  # few distinct values: one bar per reference bin
        cur = win.counts[1:-1].astype(np.float64)
        cur[0] += win.counts[0]
        cur[-1] += win.counts[-1]
        return {
            "edges": [float(v) for v in ref.edges],
            "reference": [round(float(v), 6) for v in ref.counts[1:-1] / ref.counts.sum()],
            "current": [round(float(v), 6) for v in cur / cur.sum()],
        }
    rx, rf = _cdf_knots(ref.edges, ref.counts, ref.edges[0], ref.edges[-1])
    cx, cf = _cdf_knots(ref.edges, win.counts, win.lo, win.hi)
    lo = min(float(np.interp(0.005, rf, rx)), float(np.interp(0.005, cf, cx)))
    hi = max(float(np.interp(0.995, rf, rx)), float(np.interp(0.995, cf, cx)))
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    grid = np.linspace(lo, hi, _PLOT_BINS + 1)
    r = np.diff(np.interp(grid, rx, rf))
    c = np.diff(np.interp(grid, cx, cf))
    return {
        "edges": [float(v) for v in grid],
        "reference": [round(float(v), 6) for v in r],
        "current": [round(float(v), 6) for v in c],
    }


def _categorical_stats(ref: ColumnReference, win: _Window) -> tuple[dict[str, Any], dict[str, Any]]:
    rc = np.concatenate([ref.counts, [ref.other, 0]]).astype(np.int64)
    cc = win.counts
    chi2, p, dof = _stats.chi2_homogeneity(rc, cc)
    both = (rc + cc) > 0
    stats: dict[str, Any] = {
        "chi2": chi2,
        "chi2_p": p,
        "chi2_dof": dof,
        "tv": _stats.total_variation(rc, cc),
        "psi": _stats.psi(rc[both], cc[both]),
        "js": _stats.jensen_shannon(rc[both], cc[both]),
    }
    labels = [*ref.categories, "(other)", "(new)"]
    rs, cs = rc / max(rc.sum(), 1), cc / max(cc.sum(), 1)
    order = np.argsort(-(rs + cs), kind="stable")
    order = order[(rs + cs)[order] > 0][:_PLOT_CATEGORIES]
    plot = {
        "labels": [str(labels[i]) for i in order],
        "reference": [round(float(rs[i]), 6) for i in order],
        "current": [round(float(cs[i]), 6) for i in order],
    }
    return stats, plot


# -- check ----------------------------------------------------------------------------------
def _parse_tests(
    tests: str | Mapping[str, str | Sequence[str]] | None,
    ref: Reference,
) -> dict[str, list[str]]:
    """The deciding test(s) per column."""
    out: dict[str, list[str]] = {}
    per: Mapping[str, str | Sequence[str]]
    if tests is None:
        per = {}
    elif isinstance(tests, str):
        per = {"numeric": tests, "categorical": tests}
    elif isinstance(tests, Mapping):
        per = tests
    else:
        raise InvalidSpecError(
            f"tests must be a test name or a dict of column (or 'numeric'/'categorical') to "
            f"test name(s), got {type(tests).__name__}."
        )
    known = set(ref.columns) | {"numeric", "categorical"}
    for key in per:
        if key not in known:
            _check_names([key], list(ref.columns), "the reference", "tests")
    for name, col in ref.columns.items():
        if col.family == "unsupported":
            continue
        chosen = per.get(name, per.get(col.family, DEFAULT_TESTS[col.family]))
        names = [chosen] if isinstance(chosen, str) else list(chosen)
        valid = TESTS[col.family]
        bad = [t for t in names if t not in valid]
        if bad and name not in per and isinstance(tests, str):
            names = [DEFAULT_TESTS[col.family]]  # e.g. tests="ks": categorical keep chi2
        elif bad or not names:
            raise InvalidSpecError(
                f"Test(s) {bad or names!r} for {col.family} column '{name}' unknown; "
                f"choose from {', '.join(valid)}.",
                column=name,
            )
        out[name] = names
    return out


def _parse_thresholds(thresholds: Mapping[str, float] | None) -> dict[str, float]:
    out = dict(DEFAULT_THRESHOLDS)
    for key, value in (thresholds or {}).items():
        if key not in out:
            from keel.exceptions import did_you_mean

            raise InvalidSpecError(
                f"Unknown threshold {key!r}.{did_you_mean(key, out)} Known: {', '.join(out)}.",
                threshold=key,
            )
        if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise InvalidSpecError(
                f"Threshold {key!r} must be a finite number >= 0, got {value!r}.",
                threshold=key,
            )
        out[key] = float(value)
    if not 0 < out["alpha"] <= 1:
        raise InvalidSpecError(f"Threshold 'alpha' must be in (0, 1], got {out['alpha']}.")
    if out["share"] > 1:
        raise InvalidSpecError(f"Threshold 'share' must be in [0, 1], got {out['share']}.")
    return out


def check(
    ref: Reference,
    current: Any,
    *,
    tests: str | Mapping[str, str | Sequence[str]] | None = None,
    thresholds: Mapping[str, float] | None = None,
    columns: Sequence[str] | None = None,
    prediction_column: str | None = None,
    min_rows: int = DEFAULT_MIN_ROWS,
    name: str | None = None,
) -> DriftReport:
    """Compare a window with a reference; the reference data are never re-read.

    Args:
        ref: a :class:`Reference` (from :func:`keel.monitoring.reference` or
            :meth:`Reference.load`).
        current: a pandas or polars DataFrame, an Arrow table, a Parquet path (streamed
            by row groups) or ``"dataset:NAME@V"``.
        tests: the deciding test, for all columns (``"psi"``), or per column or family
            (``{"age": "wasserstein", "categorical": "js"}``). Numeric: ``ks`` (default),
            ``wasserstein``, ``psi``, ``js``; categorical: ``chi2`` (default), ``psi``, ``js``.
        thresholds: overrides of :data:`DEFAULT_THRESHOLDS`.
        columns: compare only these reference columns.
        prediction_column: the model's output column; its result is
            ``report.prediction_drift``.
        min_rows: fewer rows in the window (or non-missing values in a column) are
            "insufficient data", never drift.
        name: a label for the window in the report.

    Raises:
        InvalidSpecError: unknown columns, tests or thresholds; unsupported input.
    """
    from keel.data import _frames

    started = time.perf_counter()
    if not isinstance(ref, Reference):
        raise InvalidSpecError(
            f"ref must be a keel.monitoring.Reference (from monitoring.reference(...) or "
            f"Reference.load(path)), got {type(ref).__name__}."
        )
    if not isinstance(min_rows, int) or min_rows < 1:
        raise InvalidSpecError(f"min_rows must be an integer >= 1, got {min_rows!r}.")
    limits = _parse_thresholds(thresholds)
    chosen = _parse_tests(tests, ref)
    wanted = list(columns) if columns is not None else ref.names
    _check_names(wanted, ref.names, "the reference", "columns")
    if prediction_column is not None:
        _check_names([prediction_column], ref.names, "the reference", "prediction_column")
        if prediction_column not in wanted:
            wanted.append(prediction_column)
    src, source = resolve_source(current)
    schema = _frames.read_schema(src)
    rows = _frames.num_rows(src)

    issues: list[SchemaIssue] = []
    windows: dict[str, _Window] = {}
    for col_name in wanted:
        rc = ref.columns[col_name]
        if col_name not in schema.names:
            issues.append(SchemaIssue(col_name, "missing", rc.type, None))
            continue
        t = schema.field(col_name).type
        native = "numeric" if rc.coded else rc.family
        if rc.family != "unsupported" and family(t) != native:
            issues.append(SchemaIssue(col_name, "type_changed", rc.type, str(t)))
            continue
        if rc.family != "unsupported":
            windows[col_name] = _Window(rc, t)
    for col_name in schema.names:
        if col_name not in ref.columns and columns is None:
            issues.append(SchemaIssue(col_name, "added", None, str(schema.field(col_name).type)))

    names = list(windows)
    if names and rows:
        read_dict = (
            [n for n in names if "string" in str(schema.field(n).type)]
            if _frames._is_path(src)
            else None
        )
        with _frames.column_pool() as pool:
            for batch in stream_batches(src, names, read_dict):
                pairs = zip((windows[n] for n in batch.schema.names), batch.columns, strict=True)
                list(pool.map(lambda p: p[0].add(p[1]), pairs))

    results = _decide(ref, windows, chosen, limits, min_rows, rows, wanted, issues)
    insufficient = rows < min_rows or ref.rows < min_rows
    if insufficient:
        which = "window" if rows < min_rows else "reference"
        count = rows if rows < min_rows else ref.rows
        message = (
            f"the {which} has {count} rows, fewer than min_rows={min_rows}: no verdict "
            "(collect a longer window or lower min_rows)"
        )
        for r in results.values():
            if r.status in ("ok", "drift"):
                r.status, r.drifted, r.reasons = "insufficient", False, []
    else:
        message = ""
    tested = [r for r in results.values() if r.status in ("ok", "drift")]
    n_drift = sum(1 for r in tested if r.drifted)
    share = n_drift / len(tested) if tested else 0.0
    drifted = not insufficient and n_drift > 0 and share >= limits["share"]
    if not insufficient and not tested:
        message = "no column could be compared (see schema issues and column statuses)"
    return DriftReport(
        reference=ref.name or ref.source,
        reference_source=ref.source,
        current=name or source,
        rows_reference=ref.rows,
        rows_current=rows,
        columns=results,
        schema_issues=issues,
        thresholds=limits,
        min_rows=min_rows,
        drifted=drifted,
        share_drifted=share,
        insufficient=insufficient,
        message=message,
        prediction_column=prediction_column,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        elapsed_s=round(time.perf_counter() - started, 4),
    )


def _decide(
    ref: Reference,
    windows: dict[str, _Window],
    chosen: dict[str, list[str]],
    limits: dict[str, float],
    min_rows: int,
    rows: int,
    wanted: list[str],
    issues: list[SchemaIssue],
) -> dict[str, ColumnDrift]:
    """Statistics, multiple-testing correction and the verdict of every column."""
    results: dict[str, ColumnDrift] = {}
    pvals: list[tuple[str, str, float]] = []  # (column, "dist" | "missing", p)
    by_issue = {i.column: i for i in issues}
    for col_name in wanted:
        rc = ref.columns[col_name]
        win = windows.get(col_name)
        test = "+".join(chosen.get(col_name, ["-"]))
        if win is None:
            issue = by_issue.get(col_name)
            why = issue.message if issue else f"type {rc.type} is not compared"
            results[col_name] = ColumnDrift(
                name=col_name,
                family=rc.family,
                reference_type=rc.type,
                current_type=(issue.current_type or "-") if issue else rc.type,
                status="skipped",
                test=test,
                issues=[why],
            )
            continue
        res = ColumnDrift(
            name=col_name,
            family=rc.family,
            reference_type=rc.type,
            current_type=str(win.current_type),
            status="ok",
            test=test,
        )
        res.quality = _quality(rc, win)
        res.issues = _quality_issues(rc, win, res.quality)
        if rc.type != str(win.current_type):
            res.issues.append(f"type {rc.type} -> {win.current_type} (compared as {rc.family})")
        if rows >= min_rows and ref.rows >= min_rows:
            pvals.append(
                (
                    col_name,
                    "missing",
                    _stats.proportion_test(rc.invalid, rc.rows, win.rows - win.finite, win.rows),
                )
            )
        if win.finite < min_rows or rc.finite < min_rows:
            res.status = "insufficient"
            res.issues.append(
                f"{win.finite} values in the window and {rc.finite} in the reference "
                f"(min_rows={min_rows}): distribution not compared"
            )
        else:
            if rc.family == "numeric":
                stats, plot = _numeric_stats(rc, win)
                p = stats["ks_p"]
                res.summary = {
                    "reference": {"mean": rc.mean, "std": rc.std, "min": rc.min, "max": rc.max},
                    "current": {
                        "mean": win.mean if win.n else None,
                        "std": math.sqrt(win.m2 / (win.n - 1)) if win.n > 1 else None,
                        "min": win.lo if win.n else None,
                        "max": win.hi if win.n else None,
                    },
                }
            else:
                stats, plot = _categorical_stats(rc, win)
                p = stats["chi2_p"]
            res.statistics, res.plot, res.p_value = stats, plot, p
            pvals.append((col_name, "dist", p))
        results[col_name] = res

    adjusted = _stats.benjamini_hochberg([p for _, _, p in pvals])
    alpha = limits["alpha"]
    for (col_name, what, _p), p_adj in zip(pvals, adjusted, strict=True):
        res = results[col_name]
        win = windows[col_name]
        rc = ref.columns[col_name]
        if what == "missing":
            before = rc.invalid / rc.rows if rc.rows else 0.0
            after = (win.rows - win.finite) / win.rows if win.rows else 0.0
            res.quality["missing_p_adjusted"] = p_adj
            if p_adj < alpha and abs(after - before) >= limits["missing"]:
                res.drifted = True
                res.reasons.append(
                    f"missing (null/NaN/inf) share {before:.2%} -> {after:.2%} "
                    f"(>= {limits['missing']:.2%} change, p_adj {p_adj:.2g} < {alpha:g})"
                )
            continue
        res.p_adjusted = p_adj
        key_of = {"chi2": "tv"}
        for t in chosen[col_name]:
            value = float(res.statistics[key_of.get(t, t)] or 0.0)
            limit = limits[t]
            if t == chosen[col_name][0]:
                res.statistic, res.threshold = value, limit
            if p_adj < alpha and value >= limit:
                res.drifted = True
                label = "chi2 effect (total variation)" if t == "chi2" else t
                res.reasons.append(
                    f"{label} {value:.4g} >= {limit:g} and p_adj {p_adj:.2g} < {alpha:g}"
                )
    for res in results.values():
        if res.drifted and res.status == "ok":
            res.status = "drift"
        elif res.drifted and res.status == "insufficient":
            res.status = "drift"  # e.g. a column now entirely null
    return results


def _quality(rc: ColumnReference, win: _Window) -> dict[str, Any]:
    q: dict[str, Any] = {
        "rows_reference": rc.rows,
        "rows_current": win.rows,
        "missing_reference": rc.invalid / rc.rows if rc.rows else None,
        "missing_current": (win.rows - win.finite) / win.rows if win.rows else None,
        "nulls_reference": rc.nulls,
        "nulls_current": win.nulls,
    }
    if rc.family == "numeric":
        out = int(win.counts[0] + win.counts[-1])
        q.update(
            nan_reference=rc.nan,
            nan_current=win.nan,
            inf_reference=rc.posinf + rc.neginf,
            inf_current=win.posinf + win.neginf,
            out_of_range=out,
            out_of_range_share=out / win.finite if win.finite else 0.0,
        )
    else:
        new_total = int(win.counts[-1])
        top = sorted(win.new.items(), key=lambda kv: -kv[1])[:10]
        q.update(
            categories_reference=len(rc.categories),
            new_categories=[[str(k), v] for k, v in top],
            new_category_count=len(win.new),
            new_category_share=new_total / win.finite if win.finite else 0.0,
            categories_complete=rc.complete,
        )
    return q


def _quality_issues(rc: ColumnReference, win: _Window, q: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if rc.family == "numeric":
        if q["out_of_range_share"] >= _OUT_OF_RANGE:
            out.append(
                f"{q['out_of_range']} values ({q['out_of_range_share']:.2%}) outside the "
                f"reference range [{rc.min:.6g}, {rc.max:.6g}]"
            )
        if q["nan_current"] and not rc.nan:
            out.append(f"{q['nan_current']} NaN values (none in the reference)")
        if q["inf_current"] and not (rc.posinf + rc.neginf):
            out.append(f"{q['inf_current']} infinite values (none in the reference)")
    elif q["new_category_count"]:
        names = ", ".join(repr(k) for k, _ in q["new_categories"][:5])
        out.append(
            f"{q['new_category_count']} new categor"
            f"{'y' if q['new_category_count'] == 1 else 'ies'} ({q['new_category_share']:.2%} "
            f"of values): {names}"
        )
    if win.rows and win.finite == 0:
        out.append("every value in the window is missing")
    return out
