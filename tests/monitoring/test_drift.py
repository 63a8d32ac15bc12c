"""keel.monitoring drift and data quality: detection, no false alarms, inputs, reports, scipy."""

from __future__ import annotations

import json
import re
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats as sps

from keel import monitoring
from keel.exceptions import InvalidSpecError, NotFoundError
from keel.monitoring import _reference, _stats

N = 20_000


def make_frame(n: int = N, seed: int = 0, **changes: Any) -> pd.DataFrame:
    """Eight numeric and three categorical columns; ``changes`` inject known drifts."""
    rng = np.random.default_rng(seed)
    d: dict[str, Any] = {
        "age": rng.normal(40, 10, n),
        "income": rng.lognormal(10, 0.5, n),
        "score": rng.uniform(0, 1, n),
        "visits": rng.poisson(3, n).astype(np.int64),
        "tenure": rng.exponential(5, n),
        "balance": rng.normal(1_000, 300, n),
        "clicks": rng.normal(0, 1, n),
        "rate": rng.beta(2, 5, n),
    }
    mix = changes.get("mix", [0.5, 0.3, 0.2])
    d["plan"] = rng.choice(["basic", "plus", "pro"], n, p=mix)
    d["region"] = rng.choice(["n", "s", "e", "w"], n)
    d["device"] = rng.choice(["ios", "android", "web"], n, p=[0.3, 0.3, 0.4])
    if "shift" in changes:
        d["age"] = d["age"] + changes["shift"] * 10
    if "scale" in changes:
        d["balance"] = 1_000 + (d["balance"] - 1_000) * changes["scale"]
    if "new_category" in changes:
        idx = rng.random(n) < changes["new_category"]
        d["region"] = np.where(idx, "mars", d["region"])
    if "missing" in changes:
        clicks = d["clicks"].copy()
        clicks[rng.random(n) < changes["missing"]] = np.nan
        d["clicks"] = clicks
    return pd.DataFrame(d)


@pytest.fixture(scope="module")
def ref() -> monitoring.Reference:
    return monitoring.reference(make_frame(seed=0), name="churn")


# -- detection -------------------------------------------------------------------------------
def test_known_drifts_are_detected(ref: monitoring.Reference) -> None:
    cur = make_frame(
        seed=1, shift=0.3, scale=1.5, mix=[0.3, 0.3, 0.4], new_category=0.05, missing=0.2
    )
    report = monitoring.check(ref, cur)
    assert report.drifted and not report.insufficient
    drifted = set(report.drifted_columns)
    assert drifted == {"age", "balance", "plan", "region", "clicks"}, report.summary()
    assert report.share_drifted == pytest.approx(5 / 11)
    age = report.columns["age"]
    assert age.test == "ks" and age.status == "drift" and age.statistic is not None
    assert age.statistic > 0.1 and age.p_adjusted is not None and age.p_adjusted < 1e-6
    assert age.statistics["wasserstein"] == pytest.approx(0.3, abs=0.03)
    region = report.columns["region"]
    assert region.quality["new_categories"][0][0] == "mars"
    assert region.quality["new_category_share"] == pytest.approx(0.05, abs=0.01)
    assert any("new categor" in i for i in region.issues)
    clicks = report.columns["clicks"]
    assert clicks.quality["missing_current"] == pytest.approx(0.2, abs=0.02)
    # pandas NaN becomes an Arrow null on the way in (as everywhere in keel)
    assert clicks.quality["nulls_current"] > 3_000 and clicks.quality["missing_reference"] == 0
    assert any(r.startswith("missing") for r in clicks.reasons)
    # the undrifted columns stay quiet
    for name in ("income", "score", "visits", "tenure", "rate", "device"):
        assert report.columns[name].status == "ok", report.columns[name].reasons


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_identical_distributions_give_no_drift(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_cols, n = 40, 5_000

    def frame() -> pd.DataFrame:
        cols: dict[str, Any] = {f"n{i}": rng.normal(i, 1 + i % 3, n) for i in range(n_cols)}
        cols.update({f"k{i}": rng.integers(0, 6, n) for i in range(5)})
        cols.update({f"c{i}": rng.choice(list("abcdefgh"), n) for i in range(10)})
        return pd.DataFrame(cols)

    ref = monitoring.reference(frame(), categorical=["k0"])
    for _ in range(2):
        report = monitoring.check(ref, frame())
        assert not report.drifted, report.summary()
        assert report.drifted_columns == [] and report.share_drifted == 0
        assert report.columns["k0"].family == "categorical"


def test_large_window_trivial_difference_is_not_drift() -> None:
    """With 400k rows a 0.005 sd shift is significant, yet below the effect-size floor."""
    rng = np.random.default_rng(5)
    n = 400_000
    ref = monitoring.reference(pa.table({"x": rng.normal(0, 1, n)}))
    report = monitoring.check(ref, pa.table({"x": rng.normal(0.01, 1, n)}))
    col = report.columns["x"]
    assert col.p_adjusted is not None and col.p_adjusted < 0.05  # significant ...
    assert col.statistic is not None and col.statistic < 0.015  # ... but tiny
    assert not report.drifted
    strong = monitoring.check(ref, pa.table({"x": rng.normal(0.05, 1, n)}))
    assert strong.drifted  # a 0.05 sd shift is found


def test_prediction_drift(ref: monitoring.Reference) -> None:
    base = make_frame(seed=0)
    base["prediction"] = (base["age"] > 45).astype(np.int64)
    pref = monitoring.reference(base, categorical=["prediction"])
    cur = make_frame(seed=3, shift=0.5)
    cur["prediction"] = (cur["age"] > 45).astype(np.int64)
    report = monitoring.check(pref, cur, prediction_column="prediction", columns=["income"])
    pred = report.prediction_drift
    assert pred is not None and pred.drifted and pred.test == "chi2"
    assert set(report.columns) == {"income", "prediction"}


def test_tests_and_thresholds_overrides(ref: monitoring.Reference) -> None:
    cur = make_frame(seed=4, shift=0.05, mix=[0.45, 0.3, 0.25])
    default = monitoring.check(ref, cur)
    assert default.columns["age"].drifted  # KS D about 0.02 > 0.015
    psi = monitoring.check(ref, cur, tests={"age": "psi", "categorical": "js"})
    assert psi.columns["age"].test == "psi" and not psi.columns["age"].drifted  # PSI ~0.005
    assert psi.columns["plan"].test == "js"
    assert psi.columns["age"].statistic == pytest.approx(default.columns["age"].statistics["psi"])
    both = monitoring.check(ref, cur, tests={"age": ["wasserstein", "ks"]})
    assert both.columns["age"].test == "wasserstein+ks" and both.columns["age"].drifted
    strict = monitoring.check(ref, cur, thresholds={"ks": 0.2, "chi2": 0.2})
    assert not strict.columns["age"].drifted and not strict.columns["plan"].drifted
    assert monitoring.check(ref, cur, tests="wasserstein").columns["plan"].test == "chi2"
    share = monitoring.check(ref, cur, thresholds={"share": 0.9})
    assert share.drifted_columns and not share.drifted
    with pytest.raises(InvalidSpecError, match="choose from chi2, psi, js"):
        monitoring.check(ref, cur, tests={"plan": "ks"})
    with pytest.raises(InvalidSpecError, match="not in the reference"):
        monitoring.check(ref, cur, tests={"nope": "ks"})
    with pytest.raises(InvalidSpecError, match="Unknown threshold 'kss'"):
        monitoring.check(ref, cur, thresholds={"kss": 0.1})
    with pytest.raises(InvalidSpecError, match="finite number"):
        monitoring.check(ref, cur, thresholds={"ks": float("nan")})
    with pytest.raises(InvalidSpecError, match="not in the reference"):
        monitoring.check(ref, cur, columns=["age", "agee"])


# -- bad input -------------------------------------------------------------------------------
def test_small_and_empty_windows_are_insufficient(ref: monitoring.Reference) -> None:
    tiny = make_frame(n=60, seed=5, shift=3.0)  # a huge shift, but only 60 rows
    report = monitoring.check(ref, tiny)
    assert report.insufficient and not report.drifted and report.drifted_columns == []
    assert "fewer than min_rows=100" in report.message
    assert all(c.status == "insufficient" for c in report.columns.values())
    assert report.summary().startswith("insufficient data")
    empty = monitoring.check(ref, make_frame(seed=5).iloc[:0])
    assert empty.insufficient and not empty.drifted and empty.rows_current == 0
    # enough rows, but a column with too few values: that column only is insufficient
    cur = make_frame(n=2_000, seed=6)
    cur["clicks"] = np.nan
    cur.loc[:49, "clicks"] = 0.5
    report = monitoring.check(ref, cur)
    assert not report.insufficient
    clicks = report.columns["clicks"]
    assert clicks.p_value is None and clicks.drifted  # 97.5% missing: a quality drift
    assert any(r.startswith("missing") for r in clicks.reasons)
    assert monitoring.check(ref, cur, min_rows=5_000).insufficient
    with pytest.raises(InvalidSpecError, match="min_rows"):
        monitoring.check(ref, cur, min_rows=0)


def test_schema_differences_are_reported(ref: monitoring.Reference) -> None:
    cur = make_frame(seed=7).drop(columns=["income"])
    cur["plan"] = np.arange(len(cur))  # was a string column
    cur["extra"] = 1.0
    cur["visits"] = cur["visits"].astype(np.float64)  # same family: still compared
    report = monitoring.check(ref, cur)
    issues = {(i.column, i.issue) for i in report.schema_issues}
    assert issues == {("income", "missing"), ("plan", "type_changed"), ("extra", "added")}
    assert report.columns["income"].status == "skipped"
    assert report.columns["plan"].status == "skipped"
    assert report.columns["visits"].status == "ok"
    assert any("int64 -> double" in i for i in report.columns["visits"].issues)
    assert not report.drifted
    assert any("missing from the window" in i for i in report.issues)
    d = report.to_dict()
    assert {s["column"] for s in d["schema_issues"]} == {"income", "plan", "extra"}


def test_nan_and_inf_are_counted() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(0, 1, 5_000)
    x[:10] = np.nan
    x[10:13] = np.inf
    x[13:14] = -np.inf
    ref = monitoring.reference(pa.table({"x": x}))  # Arrow keeps NaN as NaN
    col = ref.column("x")
    assert (col.nan, col.posinf, col.neginf, col.finite) == (10, 3, 1, 4_986)
    assert col.counts.sum() == 4_986 and np.isfinite(col.mean or np.nan)
    y = rng.normal(0, 1, 5_000)
    y[:300] = np.nan
    y[300:400] = np.inf
    arrow = pa.table({"x": pa.array(y, mask=(np.arange(5_000) >= 400) & (np.arange(5_000) < 450))})
    report = monitoring.check(ref, arrow)
    q = report.columns["x"].quality
    assert (q["nan_current"], q["inf_current"], q["nulls_current"]) == (300, 100, 50)
    assert q["missing_current"] == pytest.approx(450 / 5_000)
    assert q["missing_reference"] == pytest.approx(14 / 5_000)
    assert report.columns["x"].drifted  # 9% invalid vs 0.3%
    no_nan = monitoring.reference(pa.table({"x": y[450:]}))
    issues = monitoring.check(no_nan, arrow).columns["x"].issues
    assert any("300 NaN values (none in the reference)" in i for i in issues)
    assert any("100 infinite values (none in the reference)" in i for i in issues)
    json.loads(report.to_json())  # no NaN/inf leaks into JSON


# -- inputs ----------------------------------------------------------------------------------
def _figures(report: monitoring.DriftReport) -> dict[str, Any]:
    return {
        name: (c.status, c.drifted, {k: round(float(v), 9) for k, v in c.statistics.items()})
        for name, c in report.columns.items()
    }


def test_pandas_polars_arrow_parquet_agree(tmp_path: Path, ref: monitoring.Reference) -> None:
    cur = make_frame(seed=9, shift=0.2, new_category=0.02)
    path = tmp_path / "cur.parquet"
    cur.to_parquet(path, row_group_size=3_000)  # several row groups
    want = _figures(monitoring.check(ref, cur))
    for data in (pl.from_pandas(cur), pa.Table.from_pandas(cur), path, str(path)):
        assert _figures(monitoring.check(ref, data)) == want
    # the reference built from each input kind is identical too
    ref_path = tmp_path / "ref.parquet"
    make_frame(seed=0).to_parquet(ref_path, row_group_size=7_000)
    from_parquet = monitoring.reference(ref_path, name="churn")
    from_polars = monitoring.reference(pl.from_pandas(make_frame(seed=0)), name="churn")
    assert _strip(from_parquet.to_dict()) == _strip(ref.to_dict())
    assert _strip(from_polars.to_dict()) == _strip(ref.to_dict())


def _strip(d: dict[str, Any]) -> Any:
    """A reference dict without provenance, floats to 9 digits (batching reorders sums)."""
    out = {k: v for k, v in d.items() if k not in ("created_at", "source")}
    out["columns"] = [{k: v for k, v in c.items() if k != "type"} for c in d["columns"]]
    return _round(out)


def _round(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_round(x) for x in v]
    if isinstance(v, float):
        return float(f"{v:.9g}") if abs(v) > 1e-6 else 0.0
    return v


def test_streaming_in_small_batches_is_exact_and_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parquet streamed by row groups and column groups gives the same reference and report
    as the table in one batch, and NumPy memory follows the batch, not the table."""
    rng = np.random.default_rng(10)
    n = 1_000_000
    table = pa.table(
        {
            "a": rng.normal(0, 1, n),
            "b": rng.uniform(0, 1, n),
            "c": rng.integers(0, 1_000, n),
            "d": pa.array(rng.choice(["x", "y", "z"], n)).dictionary_encode(),
        }
    )
    path = tmp_path / "big.parquet"
    pq.write_table(table, path, row_group_size=50_000)
    cur = tmp_path / "cur.parquet"
    pq.write_table(table.slice(0, 300_000), cur, row_group_size=50_000)
    whole = monitoring.reference(table)  # in memory: one batch of every column
    whole_report = monitoring.check(whole, table.slice(0, 300_000))
    monkeypatch.setattr(_reference, "BATCH_ROWS", 50_000)
    monkeypatch.setattr(_reference, "PARQUET_COLUMNS", 2)
    tracemalloc.start()
    streamed = monitoring.reference(path)
    report = monitoring.check(streamed, cur)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # 1M rows x 4 columns is 32 MB of values; NumPy never holds more than a few batches
    assert peak < 16e6, f"peak {peak / 1e6:.1f} MB"
    assert streamed.rows == n and streamed.column("a").counts.sum() == n
    for name in "abcd":
        a, b = streamed.column(name), whole.column(name)
        assert np.array_equal(a.counts, b.counts) and np.array_equal(a.edges, b.edges)
    assert _figures(report) == _figures(whole_report)
    assert not report.drifted


def test_dataset_version_reference(ref: monitoring.Reference) -> None:
    import keel

    keel.data.log_table(make_frame(seed=0), name="churn")
    from_dataset = monitoring.reference("dataset:churn@1", name="churn")
    assert from_dataset.source == "dataset:churn@1"
    assert _strip(from_dataset.to_dict()) == _strip(ref.to_dict())
    short = monitoring.reference("churn@latest")
    assert short.rows == N
    report = monitoring.check(from_dataset, "churn@1")
    assert not report.drifted and report.current == "dataset:churn@1"
    with pytest.raises(NotFoundError):
        monitoring.reference("dataset:nope@1")


def test_bad_inputs() -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        monitoring.reference("missing.parquet")
    with pytest.raises(InvalidSpecError, match=r"Cannot use a builtins\.list"):
        monitoring.reference([1, 2, 3])
    with pytest.raises(InvalidSpecError, match=r"not in pandas\.DataFrame"):
        monitoring.reference(make_frame(n=10), columns=["agee"])
    with pytest.raises(InvalidSpecError, match=r"must be a keel\.monitoring\.Reference"):
        monitoring.check({"columns": []}, make_frame(n=10))  # type: ignore[arg-type]
    with pytest.raises(InvalidSpecError, match="bins must be"):
        monitoring.reference(make_frame(n=10), bins=1)


# -- serialisation and reports ---------------------------------------------------------------
def test_reference_round_trip(tmp_path: Path, ref: monitoring.Reference) -> None:
    back = monitoring.Reference.from_dict(json.loads(json.dumps(ref.to_dict())))
    assert back.to_dict() == ref.to_dict()
    for name in ("ref.json", "ref.json.gz"):
        p = ref.save(tmp_path / name)
        loaded = monitoring.Reference.load(p)
        assert loaded.to_dict() == ref.to_dict()
    assert (tmp_path / "ref.json.gz").stat().st_size < (tmp_path / "ref.json").stat().st_size
    cur = make_frame(seed=2, shift=0.2)
    assert _figures(monitoring.check(loaded, cur)) == _figures(monitoring.check(ref, cur))
    with pytest.raises(InvalidSpecError, match="Not a keel monitoring reference"):
        monitoring.Reference.from_dict({"rows": 1})
    bad = ref.to_dict()
    bad["columns"][0]["counts"] = [1, 2]
    with pytest.raises(InvalidSpecError, match="Corrupted"):
        monitoring.Reference.from_dict(bad)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(InvalidSpecError, match="is not JSON"):
        monitoring.Reference.load(tmp_path / "junk.json")


def test_html_report_is_self_contained(tmp_path: Path, ref: monitoring.Reference) -> None:
    cur = make_frame(seed=3, shift=0.3, new_category=0.05).drop(columns=["rate"])
    report = monitoring.check(ref, cur)
    out = tmp_path / "report.html"
    page = report.to_html(out)
    assert out.read_text(encoding="utf-8") == page
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") >= 10
    assert not re.search(r"(src|href)\s*=\s*['\"]?\s*(https?:)?//", page, re.I)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page
    for name in ref.names:
        assert f"id='col-{name}'" in page
    assert "Drift detected" in page and "mars" in page
    assert "<html" not in report._repr_html_() and "<svg" in report._repr_html_()
    d = json.loads(report.to_json(tmp_path / "report.json"))
    assert d["drifted"] is True and d["drifted_columns"] == report.drifted_columns
    assert len(d["columns"]) == len(ref.names)
    assert json.loads((tmp_path / "report.json").read_text())["summary"] == report.summary()


# -- agreement with scipy --------------------------------------------------------------------
@pytest.mark.parametrize("shift", [0.0, 0.1, 0.4])
def test_numeric_statistics_agree_with_scipy(shift: float) -> None:
    rng = np.random.default_rng(int(shift * 10))
    a = rng.gamma(2.0, 3.0, 30_000)
    b = rng.gamma(2.0, 3.0, 20_000) + shift * a.std()
    ref = monitoring.reference(pa.table({"x": a}))
    col = monitoring.check(ref, pa.table({"x": b})).columns["x"]
    ks = sps.ks_2samp(a, b)
    rc = ref.column("x")
    max_mass = max(rc.counts.max() / rc.counts.sum(), 2 / len(rc.counts))  # documented bound
    d = float(col.statistics["ks"] or 0)
    assert ks.statistic - max_mass - 1e-9 <= d <= ks.statistic + 1e-9
    p = float(col.statistics["ks_p"] or 0)
    want_p = sps.ks_2samp(a, b, method="asymp").pvalue
    assert p == pytest.approx(want_p, rel=0.5, abs=1e-3) or (p < 1e-12 and want_p < 1e-12)
    w_exact = sps.wasserstein_distance(a, b) / a.std(ddof=1)
    widths = np.diff(rc.edges)
    bound = float(np.sum(widths * rc.counts[1:-1]) / rc.counts.sum()) / a.std(ddof=1)
    w = float(col.statistics["wasserstein"] or 0)
    assert abs(w - w_exact) <= bound and abs(w - w_exact) < 0.01


def test_discrete_numeric_is_exact() -> None:
    """Fewer distinct values than bins: every value has its own bin, KS and W are exact."""
    rng = np.random.default_rng(21)
    a = rng.poisson(4, 10_000).astype(float)
    b = rng.poisson(4.4, 8_000).astype(float)
    ref = monitoring.reference(pa.table({"x": a}))
    col = monitoring.check(ref, pa.table({"x": b})).columns["x"]
    assert col.statistics["ks"] == pytest.approx(sps.ks_2samp(a, b).statistic, abs=1e-12)
    assert col.statistics["wasserstein_raw"] == pytest.approx(
        sps.wasserstein_distance(a, b), rel=1e-9
    )


def test_categorical_statistics_agree_with_scipy() -> None:
    rng = np.random.default_rng(22)
    cats = list("abcdef")
    a = rng.choice(cats, 12_000, p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.1])
    b = rng.choice(cats, 9_000, p=[0.25, 0.25, 0.2, 0.1, 0.1, 0.1])
    ref = monitoring.reference(pa.table({"c": a}))
    col = monitoring.check(ref, pa.table({"c": b})).columns["c"]
    table = np.array([[np.sum(a == c) for c in cats], [np.sum(b == c) for c in cats]])
    chi2, p, dof, _ = sps.chi2_contingency(table, correction=False)
    assert col.statistics["chi2"] == pytest.approx(chi2, rel=1e-9)
    assert col.statistics["chi2_p"] == pytest.approx(p, rel=1e-6)
    assert col.statistics["chi2_dof"] == dof == 5
    pa_, pb = table[0] / table[0].sum(), table[1] / table[1].sum()
    from scipy.spatial.distance import jensenshannon

    assert col.statistics["js"] == pytest.approx(jensenshannon(pa_, pb, base=2), rel=1e-9)
    assert col.statistics["tv"] == pytest.approx(0.5 * np.abs(pa_ - pb).sum(), rel=1e-9)
    want_psi = np.sum((pb - pa_) * np.log(pb / pa_))
    assert col.statistics["psi"] == pytest.approx(want_psi, rel=1e-9)
    assert col.drifted  # 5 points moved between two categories


def test_benjamini_hochberg_matches_scipy() -> None:
    rng = np.random.default_rng(23)
    p = list(rng.uniform(0, 0.2, 30))
    assert _stats.benjamini_hochberg(p) == pytest.approx(list(sps.false_discovery_control(p)))
    assert _stats.benjamini_hochberg([]) == []


def test_one_pass_grid_matches_two_pass_sample_edges(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the sample size, bounds known up front give a one-pass reference on a grid;
    heavy tails fall back to sample quantiles. Both have ~1,000 bins of ~0.1% each."""
    rng = np.random.default_rng(30)
    n = 300_000
    table = pa.table({"normal": rng.normal(5, 2, n), "pareto": rng.pareto(0.7, n)})
    one_pass = monitoring.reference(table)
    monkeypatch.setattr(_reference, "_bounds", lambda *args: None)
    two_pass = monitoring.reference(table)
    cur = pa.table({"normal": rng.normal(5.1, 2, 50_000), "pareto": rng.pareto(0.75, 50_000)})
    for name in ("normal", "pareto"):
        for ref in (one_pass, two_pass):
            col = ref.column(name)
            assert col.counts.sum() == n and col.counts[0] == col.counts[-1] == 0
            assert 900 <= len(col.counts) - 2 <= 1_000
            assert col.counts.max() / n < 0.0025  # about 1/1,000 each
        a = monitoring.check(one_pass, cur).columns[name].statistics
        b = monitoring.check(two_pass, cur).columns[name].statistics
        assert a["ks"] == pytest.approx(b["ks"], abs=0.003)
        assert a["psi"] == pytest.approx(b["psi"], abs=0.003)
    a = monitoring.check(one_pass, cur).columns["normal"].statistics
    b = monitoring.check(two_pass, cur).columns["normal"].statistics
    assert a["wasserstein"] == pytest.approx(b["wasserstein"], abs=0.003)
    assert a["wasserstein"] == pytest.approx(0.05, abs=0.01)


def test_booleans_dates_timestamps_and_pandas_categoricals() -> None:
    def frame(seed: int, shift_days: int = 0, unit: str = "us") -> pd.DataFrame:
        r = np.random.default_rng(seed)
        n = 5_000
        seconds = r.integers(0, 86_400 * 30, n) + shift_days * 86_400
        return pd.DataFrame(
            {
                "flag": r.random(n) < 0.3,
                "when": (pd.Timestamp("2026-01-01") + pd.to_timedelta(seconds, unit="s")).astype(
                    f"datetime64[{unit}]"
                ),
                "kind": pd.Categorical(r.choice(["a", "b", "c"], n)),
            }
        )

    ref = monitoring.reference(frame(0))
    assert ref.column("flag").family == "categorical" and ref.column("flag").categories == [
        False,
        True,
    ]
    assert ref.column("when").family == "numeric" and ref.column("kind").family == "categorical"
    assert not monitoring.check(ref, frame(1)).drifted
    assert not monitoring.check(ref, frame(2, unit="ms")).drifted  # units do not matter
    shifted = monitoring.check(ref, frame(3, shift_days=5))
    assert shifted.drifted_columns == ["when"]
    words = frame(4)
    words["flag"] = np.where(words["flag"], "yes", "no")  # same family, other values
    report = monitoring.check(ref, words)
    assert report.columns["flag"].drifted
    assert report.columns["flag"].quality["new_category_share"] == 1.0


def test_many_categories_keep_the_most_frequent() -> None:
    rng = np.random.default_rng(31)
    n = 20_000
    p = 1 / np.arange(1, 201)
    p /= p.sum()
    names = np.array([f"id{i}" for i in range(200)])
    ref = monitoring.reference(pa.table({"c": names[rng.choice(200, n, p=p)]}), max_categories=50)
    col = ref.column("c")
    assert len(col.categories) == 50 and not col.complete and col.categories[0] == "id0"
    assert col.counts.sum() + col.other == n
    same = monitoring.check(ref, pa.table({"c": names[rng.choice(200, n, p=p)]}))
    assert not same.drifted and same.columns["c"].quality["new_category_count"] == 0
    flat = monitoring.check(ref, pa.table({"c": names[rng.integers(0, 200, n)]}))
    assert flat.columns["c"].drifted  # mass moved from the kept categories to "other"
    with pytest.raises(NotFoundError, match="Did you mean 'c'"):
        ref.column("cc")


def test_distribution_functions_match_scipy() -> None:
    """keel.monitoring needs no SciPy: its survival functions agree with SciPy's."""
    from scipy import special

    for lam in np.concatenate([np.linspace(0.02, 3.0, 150), [5.0]]):
        assert _stats.kolmogorov_sf(float(lam)) == pytest.approx(
            special.kolmogorov(lam), rel=1e-9, abs=1e-14
        )
    for dof in (1, 2, 7, 60, 999):
        for x in np.linspace(0.01, 3 * dof + 40, 60):
            assert _stats.chi2_sf(float(x), dof) == pytest.approx(
                sps.chi2.sf(x, dof), rel=1e-9, abs=1e-300
            )
    assert _stats.proportion_test(10, 1_000, 30, 1_000) == pytest.approx(
        2 * sps.norm.sf(abs(30 / 1_000 - 10 / 1_000) / np.sqrt(0.02 * 0.98 * 2 / 1_000))
    )


def test_check_never_reads_the_reference_data(tmp_path: Path) -> None:
    path = tmp_path / "train.parquet"
    make_frame(seed=0).to_parquet(path)
    ref = monitoring.reference(path, name="train")
    path.unlink()  # gone: only the summary is needed from now on
    report = monitoring.check(ref, make_frame(seed=8, shift=0.4))
    assert report.drifted_columns == ["age"] and report.reference == "train"
