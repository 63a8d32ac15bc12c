"""A/B statistics: sample sizes against an independent power search, the sequential test's
false-positive rate under peeking (A/A simulations), its power, and edge cases."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
from scipy import stats as sps

from keel.exceptions import InvalidSpecError
from keel.serving._stats import ABReport, ArmStats, SampleSize, analyze, sample_size

# -- ArmStats ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(1).normal(3.0, 2.0, size=1_000),
        np.random.default_rng(2).exponential(5.0, size=37),
        [0.0, 1.0, 1.0, 0.0, 1.0],
        [4.25, 4.25, 4.25],
    ],
)
def test_from_values_matches_numpy(values: object) -> None:
    arr = np.asarray(values, dtype=float)
    arm = ArmStats.from_values(values)  # type: ignore[arg-type]
    assert arm.n == arr.size
    assert arm.total == pytest.approx(arr.sum(), rel=1e-12)
    assert arm.total_sq == pytest.approx((arr**2).sum(), rel=1e-12)
    assert arm.mean == pytest.approx(arr.mean(), rel=1e-12)
    assert arm.variance == pytest.approx(arr.var(ddof=1), rel=1e-9, abs=1e-12)


def test_armstats_small_and_empty() -> None:
    empty = ArmStats(0, 0.0, 0.0)
    assert math.isnan(empty.mean) and empty.variance == 0.0
    assert empty.to_dict()["mean"] is None
    one = ArmStats.from_values([2.5])
    assert one.mean == 2.5 and one.variance == 0.0
    assert ArmStats.from_values([]) == empty
    assert ArmStats(np.int64(3), 1, 1).n == 3  # SQL drivers / numpy hand out numpy ints


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((-1, 0.0, 0.0), "n must be >= 0"),
        ((1.5, 1.0, 1.0), "integer count"),
        ((True, 1.0, 1.0), "integer count"),
        ((0, 1.0, 1.0), "n=0 must have total=0"),
        ((10, 5.0, 1.0), "variance"),  # 10 * 1 < 25
        ((10, 0.0, -1.0), "variance"),
        ((10, math.nan, 1.0), "finite"),
        ((10, 1.0, math.inf), "finite"),
    ],
)
def test_armstats_rejects_inconsistent_stats(args: tuple[object, ...], match: str) -> None:
    with pytest.raises(InvalidSpecError, match=match):
        ArmStats(*args)  # type: ignore[arg-type]


def test_armstats_tolerates_float_rounding() -> None:
    # Constant outcomes summed in float: n * total_sq may fall a hair below total**2.
    values = np.full(1_000, 0.1)
    arm = ArmStats(1_000, float(np.sum(values)), float(np.sum(values * values)))
    assert arm.variance == pytest.approx(0.0, abs=1e-12)


def test_from_values_rejects_bad_input() -> None:
    with pytest.raises(InvalidSpecError, match="1-D"):
        ArmStats.from_values([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(InvalidSpecError, match="non-finite"):
        ArmStats.from_values([1.0, math.nan])


# -- sample size ------------------------------------------------------------------------------


def _search_n(
    var_c: float,
    var_t: float,
    effect: float,
    alpha: float,
    power: float,
    ratio: float,
    two_sided: bool,
) -> int:
    """Smallest n_control whose z-test power reaches ``power``: an independent scipy search."""
    z = sps.norm.ppf(1 - alpha / 2) if two_sided else sps.norm.ppf(1 - alpha)
    n = 2
    while True:
        n_t = max(math.ceil(ratio * n - 1e-9), 1)
        se = math.sqrt(var_c / n + var_t / n_t)
        achieved = sps.norm.sf(z - effect / se)
        if two_sided:
            achieved += sps.norm.cdf(-z - effect / se)
        if achieved >= power:
            return n
        n += 1 if n < 1_000 else max(n // 1_000, 1)


@pytest.mark.parametrize(
    ("p", "mde", "alpha", "power", "ratio", "two_sided"),
    [
        (0.10, 0.02, 0.05, 0.80, 1.0, True),
        (0.30, 0.05, 0.05, 0.90, 1.0, True),
        (0.05, 0.01, 0.01, 0.80, 1.0, True),
        (0.50, 0.10, 0.05, 0.80, 0.25, True),
        (0.20, 0.03, 0.05, 0.80, 1.0, False),
    ],
)
def test_binary_sample_size_matches_power_search(
    p: float, mde: float, alpha: float, power: float, ratio: float, two_sided: bool
) -> None:
    got = sample_size(p, mde, alpha=alpha, power=power, ratio=ratio, two_sided=two_sided)
    q = p + mde
    want = _search_n(p * (1 - p), q * (1 - q), mde, alpha, power, ratio, two_sided)
    step = 1 if want < 1_000 else want // 1_000  # the search strides above 1,000
    assert abs(got.control - want) <= step
    assert got.treatment == math.ceil(ratio * got.control - 1e-9)
    assert got.total == got.control + got.treatment


def test_sample_size_textbook_values() -> None:
    # Two proportions 0.65 vs 0.85, alpha 0.05 two-sided, power 0.8: the unpooled formula
    # (1.96 + 0.84)^2 (0.65 * 0.35 + 0.85 * 0.15) / 0.2^2 = 69.6 -> 70 per group.
    assert sample_size(0.65, 0.20).control == 70
    # Continuous, effect 0.5 SD: 2 (1.96 + 0.84)^2 / 0.25 = 62.8 -> 63 per group (z test;
    # the t test's often quoted 64 is one more).
    planned = sample_size(10.0, 0.5, std=1.0, metric="continuous")
    assert (planned.control, planned.treatment, planned.total) == (63, 63, 126)
    # Relative mde: 5 % of a 10.0 baseline is the same 0.5 absolute effect.
    rel = sample_size(10.0, 0.05, std=1.0, metric="continuous", relative=True)
    assert rel.control == 63 and rel.effect == pytest.approx(0.5)
    json.dumps(planned.to_dict())


def test_continuous_sample_size_matches_power_search() -> None:
    got = sample_size(100.0, 2.0, std=15.0, metric="continuous", power=0.9, ratio=2.0)
    want = _search_n(225.0, 225.0, 2.0, 0.05, 0.9, 2.0, True)
    assert abs(got.control - want) <= 1


def test_sample_size_monotonic_in_mde_and_power() -> None:
    sizes = [sample_size(0.2, m).control for m in (0.005, 0.01, 0.02, 0.04, 0.08)]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)
    assert sample_size(0.2, 0.02, power=0.9).control > sample_size(0.2, 0.02).control
    assert sample_size(0.2, 0.02, alpha=0.01).control > sample_size(0.2, 0.02).control
    assert sample_size(0.2, 0.02, two_sided=False).control < sample_size(0.2, 0.02).control


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((0.0, 0.01), {}, "strictly between 0 and 1"),
        ((1.2, 0.01), {}, "strictly between 0 and 1"),
        ((0.95, 0.1), {}, "reaches"),
        ((0.1, 0.0), {}, "mde must be > 0"),
        ((0.1, -0.02), {}, "mde must be > 0"),
        ((0.1, 0.02), {"alpha": 0.0}, "alpha"),
        ((0.1, 0.02), {"alpha": 1.0}, "alpha"),
        ((0.1, 0.02), {"power": 1.0}, "power"),
        ((0.1, 0.02), {"ratio": 0.0}, "ratio"),
        ((0.1, 0.02), {"std": 1.0}, "std is implied"),
        ((0.1, 0.02), {"metric": "count"}, "metric must be"),
        ((5.0, 1.0), {"metric": "continuous"}, "std > 0"),
        ((0.0, 0.1), {"metric": "continuous", "std": 1.0, "relative": True}, "non-zero"),
    ],
)
def test_sample_size_errors(
    args: tuple[float, float], kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(InvalidSpecError, match=match):
        sample_size(*args, **kwargs)  # type: ignore[arg-type]


# -- analysis: the sequential test under peeking ----------------------------------------------

SIMS, STEP, HORIZON, ALPHA = 400, 200, 5_000, 0.05
LOOKS = np.arange(STEP, HORIZON + 1, STEP)


def _peeks(c: np.ndarray, t: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Decisions of analyze() and of a naive fixed-horizon z test at every look.

    ``c`` and ``t`` are (simulations, HORIZON) outcome arrays; returns the decisions
    (strings, shape (simulations, looks)) and whether the naive test rejected at each look.
    Sufficient statistics at every look come from cumulative sums (one pass per array).
    """
    idx = LOOKS - 1
    sc, st = np.cumsum(c, axis=1)[:, idx], np.cumsum(t, axis=1)[:, idx]
    qc, qt = np.cumsum(c * c, axis=1)[:, idx], np.cumsum(t * t, axis=1)[:, idx]
    decisions = np.empty((c.shape[0], LOOKS.size), dtype=object)
    naive = np.zeros(decisions.shape, dtype=bool)
    z = sps.norm.ppf(1 - ALPHA / 2)
    for i in range(c.shape[0]):
        for j, n in enumerate(LOOKS):
            ctl, trt = ArmStats(int(n), sc[i, j], qc[i, j]), ArmStats(int(n), st[i, j], qt[i, j])
            rep = analyze(ctl, trt, alpha=ALPHA, metric=metric)  # type: ignore[arg-type]
            decisions[i, j] = rep.decision
            se = math.sqrt(ctl.variance / n + trt.variance / n)
            naive[i, j] = se > 0 and abs(trt.mean - ctl.mean) / se > z
    return decisions, naive


def _declared(decisions: np.ndarray) -> np.ndarray:
    return np.isin(decisions, ["treatment better", "control better"])


@pytest.mark.parametrize("metric", ["binary", "continuous"])
def test_aa_peeking_keeps_false_positives_below_alpha(metric: str) -> None:
    rng = np.random.default_rng(20171 if metric == "binary" else 20172)
    shape = (SIMS, HORIZON)
    if metric == "binary":
        c, t = (rng.random(shape) < 0.1).astype(float), (rng.random(shape) < 0.1).astype(float)
    else:  # skewed, like revenue: exponential outcomes
        c, t = rng.exponential(20.0, shape), rng.exponential(20.0, shape)
    decisions, naive = _peeks(c, t, metric)
    seq_rate = _declared(decisions).any(axis=1).mean()
    naive_rate = naive.any(axis=1).mean()
    # Ville: P(ever LR >= 1/alpha) <= alpha; 400 sims give a binomial SD of ~0.011.
    assert seq_rate <= ALPHA + 0.02, (seq_rate, naive_rate)
    # The contrast: re-running a fixed-horizon z test at 25 looks inflates the error a lot,
    # while a single look at the horizon stays near alpha.
    assert naive_rate >= 3 * ALPHA, (seq_rate, naive_rate)
    assert naive[:, -1].mean() <= ALPHA + 0.03


def test_sequential_test_detects_a_real_effect_binary() -> None:
    rng = np.random.default_rng(7)
    sims = 100
    c = (rng.random((sims, HORIZON)) < 0.10).astype(float)
    t = (rng.random((sims, HORIZON)) < 0.13).astype(float)
    decisions, _ = _peeks(c, t, "binary")
    declared = _declared(decisions)
    # The first decision is the one acted on (the test stops there).
    first = [decisions[i, np.argmax(declared[i])] for i in range(sims) if declared[i].any()]
    assert len(first) >= 0.8 * sims  # fixed-horizon power at 5,000/arm is ~99.6 %
    assert all(w == "treatment better" for w in first)


def test_sequential_test_detects_a_real_effect_continuous_lower_is_better() -> None:
    rng = np.random.default_rng(8)
    sims = 60
    c = rng.normal(10.0, 4.0, (sims, HORIZON))
    t = rng.normal(9.6, 4.0, (sims, HORIZON))  # treatment lowers e.g. latency by 0.1 SD
    idx = HORIZON - 1
    decisions = [
        analyze(
            ArmStats.from_values(c[i, : idx + 1]),
            ArmStats.from_values(t[i, : idx + 1]),
            metric="continuous",
            higher_is_better=False,
        ).decision
        for i in range(sims)
    ]
    assert decisions.count("treatment better") >= 0.8 * sims
    assert "control better" not in decisions


def test_always_valid_ci_covers_the_truth_at_every_look() -> None:
    rng = np.random.default_rng(11)
    sims, true_lift = 200, 0.02
    c = (rng.random((sims, HORIZON)) < 0.20).astype(float)
    t = (rng.random((sims, HORIZON)) < 0.20 + true_lift).astype(float)
    missed_seq = missed_fixed = 0
    for i in range(sims):
        sc, st = np.cumsum(c[i])[LOOKS - 1], np.cumsum(t[i])[LOOKS - 1]
        seq_miss = fixed_miss = False
        for j, n in enumerate(LOOKS):
            rep = analyze(ArmStats(int(n), sc[j], sc[j]), ArmStats(int(n), st[j], st[j]))
            assert rep.sequential_ci is not None and rep.fixed_ci is not None
            lo, hi = rep.sequential_ci
            seq_miss |= not lo <= true_lift <= hi
            flo, fhi = rep.fixed_ci
            fixed_miss |= not flo <= true_lift <= fhi
            # The always-valid interval is wider than the fixed-horizon one.
            assert lo < flo and hi > fhi
        missed_seq += seq_miss
        missed_fixed += fixed_miss
    assert missed_seq / sims <= ALPHA + 0.02
    assert missed_fixed / sims >= 2 * ALPHA  # the fixed CI fails when watched


# -- analysis: report contents and edge cases -------------------------------------------------


def test_report_numbers_binary() -> None:
    ctl, trt = ArmStats(5_000, 500, 500), ArmStats(5_000, 600, 600)
    rep = analyze(ctl, trt)
    assert rep.control_mean == 0.1 and rep.treatment_mean == 0.12
    assert rep.lift == pytest.approx(0.02)
    assert rep.relative_lift == pytest.approx(0.2)
    # Agresti-Caffo rates for the standard error.
    pc, pt = 501 / 5002, 601 / 5002
    se = math.sqrt(pc * (1 - pc) / 5000 + pt * (1 - pt) / 5000)
    assert rep.std_error == pytest.approx(se)
    assert rep.fixed_ci == pytest.approx((0.02 - 1.959964 * se, 0.02 + 1.959964 * se), rel=1e-6)
    # The mSPRT statistic, recomputed from the published formula.
    tau2 = rep.tau**2  # type: ignore[operator]
    v = se**2
    lr = math.sqrt(v / (v + tau2)) * math.exp(0.02**2 * tau2 / (2 * v * (v + tau2)))
    assert rep.likelihood_ratio == pytest.approx(lr, rel=1e-9)
    assert rep.p_value == pytest.approx(min(1.0, 1 / lr), rel=1e-9)
    # The always-valid CI's ends are exactly where the LR against theta0 crosses 1/alpha.
    assert rep.sequential_ci is not None
    for end in rep.sequential_ci:
        d = 0.02 - end
        lr_end = math.sqrt(v / (v + tau2)) * math.exp(d**2 * tau2 / (2 * v * (v + tau2)))
        assert lr_end == pytest.approx(1 / 0.05, rel=1e-6)
    assert rep.decision == ("treatment better" if lr >= 20 else "continue")
    json.dumps(rep.to_dict(), allow_nan=False)
    assert "always-valid CI" in rep.summary() and "n=5000/5000" in rep.summary()


def test_decision_directions_and_tau() -> None:
    ctl, trt = ArmStats(20_000, 2_000, 2_000), ArmStats(20_000, 2_400, 2_400)
    assert analyze(ctl, trt).decision == "treatment better"
    assert analyze(trt, ctl).decision == "control better"
    assert analyze(ctl, trt, higher_is_better=False).decision == "control better"
    # A tiny tau makes the mixture nearly the null: no evidence can accumulate yet.
    assert analyze(ctl, trt, tau=1e-6).decision == "continue"
    assert analyze(ctl, trt, tau=0.02).tau == 0.02


def test_same_data_not_enough_for_the_sequential_test_but_fixed_ci_excludes_zero() -> None:
    # z ~ 2.3: a fixed-horizon test would "win", the sequential one asks for more data.
    ctl, trt = ArmStats(4_000, 400, 400), ArmStats(4_000, 470, 470)
    rep = analyze(ctl, trt)
    assert rep.fixed_ci is not None and rep.fixed_ci[0] > 0
    assert rep.decision == "continue"
    assert rep.sequential_ci is not None and rep.sequential_ci[0] < 0 < rep.sequential_ci[1]
    assert "valid only" in rep.note


@pytest.mark.parametrize(
    ("ctl", "trt"),
    [
        (ArmStats(0, 0.0, 0.0), ArmStats(0, 0.0, 0.0)),
        (ArmStats(0, 0.0, 0.0), ArmStats(500, 50.0, 50.0)),
        (ArmStats(1, 1.0, 1.0), ArmStats(500, 50.0, 50.0)),
        (ArmStats(99, 10.0, 10.0), ArmStats(500, 50.0, 50.0)),
    ],
)
def test_insufficient_data(ctl: ArmStats, trt: ArmStats) -> None:
    rep = analyze(ctl, trt)
    assert rep.decision == "insufficient data"
    assert "needs 100 outcomes per arm" in rep.note
    json.dumps(rep.to_dict(), allow_nan=False)
    assert rep.summary().startswith("insufficient data")


def test_zero_variance_and_all_success_arms() -> None:
    # All successes in both arms: no difference, positive (smoothed) variance, no crash.
    same = analyze(ArmStats(200, 200, 200), ArmStats(200, 200, 200))
    assert same.decision == "continue" and same.lift == 0.0
    assert same.std_error is not None and same.std_error > 0
    # None vs all: overwhelming evidence, a finite log LR even though the LR overflows.
    split = analyze(ArmStats(200, 0, 0), ArmStats(200, 200, 200))
    assert split.decision == "treatment better" and split.relative_lift is None
    assert split.p_value is not None and split.p_value < 1e-12
    json.dumps(split.to_dict(), allow_nan=False)
    # Constant continuous outcomes: equal -> continue, different -> decided, JSON still clean.
    flat = analyze(ArmStats(150, 300.0, 600.0), ArmStats(150, 300.0, 600.0), metric="continuous")
    assert flat.decision == "continue" and flat.p_value == 1.0
    step = analyze(ArmStats(150, 300.0, 600.0), ArmStats(150, 450.0, 1350.0), metric="continuous")
    assert step.decision == "treatment better" and step.sequential_ci == (1.0, 1.0)
    assert step.to_dict()["likelihood_ratio"] is None  # infinite: not JSON
    json.dumps(step.to_dict(), allow_nan=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"metric": "ratio"}, "metric must be"),
        ({"tau": 0.0}, "tau must be > 0"),
        ({"tau": math.nan}, "tau must be > 0"),
        ({"min_samples": 1}, "min_samples"),
    ],
)
def test_analyze_rejects_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidSpecError, match=match):
        analyze(ArmStats(10, 5, 5), ArmStats(10, 5, 5), **kwargs)  # type: ignore[arg-type]


def test_binary_metric_rejects_non_binary_outcomes() -> None:
    with pytest.raises(InvalidSpecError, match=r"not 0/1 outcomes.*metric='continuous'"):
        analyze(ArmStats(100, 250.0, 900.0), ArmStats(100, 10.0, 10.0))
    with pytest.raises(InvalidSpecError, match="two ArmStats"):
        analyze((100, 10.0, 10.0), ArmStats(100, 10.0, 10.0))  # type: ignore[arg-type]


def test_report_is_frozen_and_picklable() -> None:
    rep = analyze(ArmStats(300, 30, 30), ArmStats(300, 36, 36))
    assert isinstance(rep, ABReport)
    assert pickle.loads(pickle.dumps(rep)) == rep
    with pytest.raises(AttributeError):
        rep.decision = "continue"  # type: ignore[misc]
    planned = sample_size(0.1, 0.01)
    assert isinstance(planned, SampleSize) and pickle.loads(pickle.dumps(planned)) == planned
