"""A/B test statistics: sample-size planning and an always-valid sequential analysis.

The deployment layer aggregates, per arm, the sufficient statistics of the outcome
(count, sum, sum of squares) and calls :func:`analyze`. The decision comes only from
a mixture sequential probability ratio test (mSPRT, Johari, Pekelis & Walsh 2017),
so it stays valid however often ``keel deploy ab-status`` is looked at. The
fixed-horizon (Welch) interval is reported for information only. The maths, the
defaults and references are in ``docs/ab-testing.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from keel.exceptions import InvalidSpecError

__all__ = [
    "DECISIONS",
    "DEFAULT_TAU_SD",
    "ABReport",
    "ArmStats",
    "SampleSize",
    "analyze",
    "sample_size",
]

Metric = Literal["binary", "continuous"]
Decision = Literal["insufficient data", "continue", "treatment better", "control better"]

#: The decisions :func:`analyze` can return.
DECISIONS: tuple[Decision, ...] = (
    "insufficient data",
    "continue",
    "treatment better",
    "control better",
)
#: Default mixing standard deviation ``tau`` of the mSPRT, in units of the outcome's pooled
#: standard deviation: the mixture weights standardised effects of the order of 0.1 SD.
DEFAULT_TAU_SD = 0.1
_METRICS = ("binary", "continuous")
_STD_NORMAL = NormalDist()
# Relative tolerance on ``n * total_sq - total**2 >= 0`` (float sums from SQL drift a little).
_VAR_RTOL = 1e-9


def _check_metric(metric: str) -> None:
    if metric not in _METRICS:
        raise InvalidSpecError(f"metric must be 'binary' or 'continuous', got {metric!r}.")


def _check_unit(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and 0.0 < value < 1.0):
        raise InvalidSpecError(f"{name} must be strictly between 0 and 1, got {value!r}.")


# -- sufficient statistics ----------------------------------------------------------------------
@dataclass(frozen=True)
class ArmStats:
    """Sufficient statistics of one arm's outcomes.

    Attributes:
        n: number of outcomes.
        total: their sum (for binary outcomes, the number of successes).
        total_sq: the sum of their squares (equal to ``total`` for 0/1 outcomes).
    """

    n: int
    total: float
    total_sq: float

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int | np.integer):
            raise InvalidSpecError(f"ArmStats.n must be an integer count, got {self.n!r}.")
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "total", float(self.total))
        object.__setattr__(self, "total_sq", float(self.total_sq))
        if self.n < 0:
            raise InvalidSpecError(f"ArmStats.n must be >= 0, got {self.n}.")
        if not (math.isfinite(self.total) and math.isfinite(self.total_sq)):
            raise InvalidSpecError(
                f"ArmStats.total and total_sq must be finite, got {self.total} and "
                f"{self.total_sq}: drop NaN/inf outcomes before aggregating."
            )
        if self.n == 0 and (self.total != 0.0 or self.total_sq != 0.0):
            raise InvalidSpecError(
                f"ArmStats with n=0 must have total=0 and total_sq=0, got {self.total} and "
                f"{self.total_sq}."
            )
        gap = self.n * self.total_sq - self.total * self.total
        if self.total_sq < 0.0 or gap < -_VAR_RTOL * max(self.n * abs(self.total_sq), 1e-300):
            raise InvalidSpecError(
                f"Inconsistent ArmStats(n={self.n}, total={self.total}, "
                f"total_sq={self.total_sq}): n * total_sq must be >= total**2 (a variance "
                "cannot be negative). Pass the sum of squared outcomes as total_sq."
            )

    @classmethod
    def from_values(cls, values: npt.ArrayLike | Iterable[float]) -> ArmStats:
        """Statistics of a 1-D sequence of finite outcomes."""
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim != 1:
            raise InvalidSpecError(
                f"ArmStats.from_values needs a 1-D sequence of outcomes, got shape {arr.shape}."
            )
        if not np.isfinite(arr).all():
            raise InvalidSpecError(
                f"ArmStats.from_values got {int((~np.isfinite(arr)).sum())} non-finite "
                "outcome(s); drop NaN/inf values first."
            )
        return cls(int(arr.size), float(arr.sum()), float(np.dot(arr, arr)))

    @property
    def mean(self) -> float:
        """Mean outcome (NaN when ``n == 0``)."""
        return self.total / self.n if self.n else math.nan

    @property
    def variance(self) -> float:
        """Unbiased sample variance (0 when ``n < 2``)."""
        if self.n < 2:
            return 0.0
        return max(self.total_sq - self.total * self.total / self.n, 0.0) / (self.n - 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form with the derived mean (None when empty) and variance."""
        return {
            "n": self.n,
            "total": self.total,
            "total_sq": self.total_sq,
            "mean": self.mean if self.n else None,
            "variance": self.variance,
        }


# -- planning -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SampleSize:
    """Per-arm sample sizes of a fixed-horizon test, with the inputs that produced them.

    Attributes:
        control: outcomes needed in the control arm.
        treatment: outcomes needed in the treatment arm (about ``ratio * control``).
        total: ``control + treatment``.
        effect: the absolute difference in means the test is powered for.
    """

    control: int
    treatment: int
    total: int
    effect: float
    baseline_mean: float
    mde: float
    std: float | None
    alpha: float
    power: float
    relative: bool
    two_sided: bool
    ratio: float
    metric: Metric

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


def _z_power(effect: float, se: float, alpha: float, two_sided: bool) -> float:
    """Power of the (unpooled) z test of a difference ``effect`` with standard error ``se``."""
    if two_sided:
        z = _STD_NORMAL.inv_cdf(1.0 - alpha / 2.0)
        return _STD_NORMAL.cdf(effect / se - z) + _STD_NORMAL.cdf(-effect / se - z)
    return _STD_NORMAL.cdf(effect / se - _STD_NORMAL.inv_cdf(1.0 - alpha))


def sample_size(
    baseline_mean: float,
    mde: float,
    *,
    std: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    relative: bool = False,
    two_sided: bool = True,
    ratio: float = 1.0,
    metric: Metric = "binary",
) -> SampleSize:
    """Outcomes per arm for a fixed-horizon z test to detect ``mde`` with the given power.

    Binary outcomes use the unpooled variance of both proportions::

        n_control = (z_{1-a/2} + z_{1-b})^2 * (p1 (1 - p1) + p2 (1 - p2) / ratio) / (p2 - p1)^2

    with ``p1 = baseline_mean`` and ``p2 = p1 + effect``; continuous outcomes use a common
    ``std``: ``(z_{1-a/2} + z_{1-b})^2 * std^2 * (1 + 1 / ratio) / effect^2``. The result is
    the smallest ``n_control`` (with ``n_treatment = ceil(ratio * n_control)``) whose exact
    normal-approximation power (both tails when two-sided) reaches ``power``.

    Args:
        baseline_mean: the control arm's expected mean (conversion rate for binary).
        mde: minimum detectable effect, absolute (``0.01`` = one point) or, with
            ``relative=True``, a fraction of ``baseline_mean`` (``0.05`` = +5 %).
        std: the outcome's standard deviation (continuous only; required there).
        alpha: false-positive rate.
        power: probability of detecting an effect of size ``mde``.
        relative: read ``mde`` as relative to ``baseline_mean``.
        two_sided: plan a two-sided test (otherwise one-sided in the effect's direction).
        ratio: ``n_treatment / n_control`` (e.g. ``1/9`` for a 10 % challenger split).
        metric: ``"binary"`` or ``"continuous"``.

    Note: the sequential test :func:`analyze` decides on needs more data than this at the
    planned horizon (see ``docs/ab-testing.md``); plan for this number and read the test at
    any time.
    """
    _check_metric(metric)
    _check_unit("alpha", alpha)
    _check_unit("power", power)
    if not math.isfinite(baseline_mean):
        raise InvalidSpecError(f"baseline_mean must be finite, got {baseline_mean}.")
    if not (math.isfinite(mde) and mde > 0):
        raise InvalidSpecError(
            f"mde must be > 0 (the smallest lift worth detecting), got {mde}; the direction "
            "does not matter for a two-sided test."
        )
    if not (math.isfinite(ratio) and ratio > 0):
        raise InvalidSpecError(f"ratio (n_treatment / n_control) must be > 0, got {ratio}.")
    if relative:
        if baseline_mean == 0:
            raise InvalidSpecError(
                "A relative mde needs a non-zero baseline_mean; pass an absolute mde instead."
            )
        effect = mde * abs(baseline_mean)
    else:
        effect = mde
    if metric == "binary":
        if std is not None:
            raise InvalidSpecError(
                "std is implied by the proportion for binary outcomes; drop std= or use "
                "metric='continuous'."
            )
        if not 0.0 < baseline_mean < 1.0:
            raise InvalidSpecError(
                f"baseline_mean must be a proportion strictly between 0 and 1 for binary "
                f"outcomes, got {baseline_mean}."
            )
        p1, p2 = baseline_mean, baseline_mean + effect
        if not p2 < 1.0:
            raise InvalidSpecError(
                f"baseline {p1} plus the effect {effect:g} reaches {p2:g} >= 1: lower the mde."
            )
        var_c, var_t = p1 * (1.0 - p1), p2 * (1.0 - p2)
    else:
        if std is None or not (math.isfinite(std) and std > 0):
            raise InvalidSpecError(
                f"Continuous outcomes need std > 0 (the outcome's standard deviation, e.g. "
                f"from past data), got {std}."
            )
        var_c = var_t = std * std

    z_a = _STD_NORMAL.inv_cdf(1.0 - (alpha / 2.0 if two_sided else alpha))
    z_b = _STD_NORMAL.inv_cdf(power)
    approx = (z_a + z_b) ** 2 * (var_c + var_t / ratio) / effect**2

    def reaches(n_c: int) -> bool:
        n_t = max(math.ceil(ratio * n_c - 1e-9), 1)
        return _z_power(effect, math.sqrt(var_c / n_c + var_t / n_t), alpha, two_sided) >= power

    n_c = max(math.ceil(approx - 1e-9), 2)
    while n_c > 2 and reaches(n_c - 1):
        n_c -= 1
    while not reaches(n_c):
        n_c += 1
    n_t = max(math.ceil(ratio * n_c - 1e-9), 1)
    return SampleSize(
        control=n_c,
        treatment=n_t,
        total=n_c + n_t,
        effect=effect,
        baseline_mean=baseline_mean,
        mde=mde,
        std=std,
        alpha=alpha,
        power=power,
        relative=relative,
        two_sided=two_sided,
        ratio=ratio,
        metric=metric,
    )


# -- analysis -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ABReport:
    """Result of :func:`analyze`: lift, intervals, the sequential test and its decision.

    Attributes:
        control, treatment: the arms' sufficient statistics.
        control_mean, treatment_mean: the arms' means (None for an empty arm).
        lift: ``treatment_mean - control_mean``.
        relative_lift: ``treatment_mean / control_mean - 1`` (None when the control mean is 0).
        std_error: standard error of ``lift`` (unpooled).
        fixed_ci: Welch/normal ``1 - alpha`` interval for the lift; valid only when read
            once, at the planned sample size.
        sequential_ci: always-valid ``1 - alpha`` interval for the lift (mSPRT): valid at
            every look.
        likelihood_ratio: mSPRT mixture likelihood ratio against "no difference".
        log_likelihood_ratio: its natural log.
        p_value: always-valid p-value ``min(1, 1 / likelihood_ratio)``.
        tau: mixing standard deviation used (in outcome units).
        decision: one of :data:`DECISIONS`, from the sequential test only.
        note: why the decision was taken, in words.
    """

    metric: Metric
    alpha: float
    min_samples: int
    higher_is_better: bool
    control: ArmStats
    treatment: ArmStats
    control_mean: float | None
    treatment_mean: float | None
    lift: float | None
    relative_lift: float | None
    std_error: float | None
    fixed_ci: tuple[float, float] | None
    sequential_ci: tuple[float, float] | None
    likelihood_ratio: float | None
    log_likelihood_ratio: float | None
    p_value: float | None
    tau: float | None
    decision: Decision
    note: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (non-finite numbers, e.g. an infinite likelihood ratio, become None)."""

        def num(x: float | None) -> float | None:
            return x if x is not None and math.isfinite(x) else None

        def pair(ci: tuple[float, float] | None) -> list[float | None] | None:
            return None if ci is None else [num(ci[0]), num(ci[1])]

        return {
            "metric": self.metric,
            "alpha": self.alpha,
            "min_samples": self.min_samples,
            "higher_is_better": self.higher_is_better,
            "control": self.control.to_dict(),
            "treatment": self.treatment.to_dict(),
            "control_mean": num(self.control_mean),
            "treatment_mean": num(self.treatment_mean),
            "lift": num(self.lift),
            "relative_lift": num(self.relative_lift),
            "std_error": num(self.std_error),
            "fixed_ci": pair(self.fixed_ci),
            "sequential_ci": pair(self.sequential_ci),
            "likelihood_ratio": num(self.likelihood_ratio),
            "log_likelihood_ratio": num(self.log_likelihood_ratio),
            "p_value": num(self.p_value),
            "tau": num(self.tau),
            "decision": self.decision,
            "note": self.note,
        }

    def summary(self) -> str:
        """One line for humans: decision, means, lift, always-valid CI, p-value, sizes."""
        sizes = f"n={self.control.n}/{self.treatment.n}"
        if self.lift is None or self.control_mean is None or self.treatment_mean is None:
            return f"{self.decision}: {self.note} ({sizes})"
        rel = "" if self.relative_lift is None else f", {self.relative_lift:+.1%}"
        text = (
            f"{self.decision}: treatment {self.treatment_mean:.4g} vs control "
            f"{self.control_mean:.4g} (lift {self.lift:+.4g}{rel})"
        )
        level = f"{1.0 - self.alpha:.0%}"
        if self.sequential_ci is not None:
            lo, hi = self.sequential_ci
            text += f", {level} always-valid CI [{lo:+.4g}, {hi:+.4g}]"
        if self.p_value is not None:
            text += f", p={self.p_value:.3g}"
        return f"{text}, {sizes}"


def _arm_variance(arm: ArmStats, metric: str) -> float:
    """Plug-in variance of one outcome in ``arm``.

    Binary arms use the add-one (Agresti-Caffo) rate ``(s + 1) / (n + 2)``, so an arm with
    no successes (or only successes) still has a positive variance.
    """
    if metric == "binary":
        p = (arm.total + 1.0) / (arm.n + 2.0)
        return p * (1.0 - p)
    return arm.variance


def _msprt_log_lr(diff: float, var: float, tau2: float) -> float:
    """Log of the normal-mixture likelihood ratio of ``diff ~ N(theta, var)`` with
    ``theta ~ N(0, tau2)`` against ``theta = 0``."""
    if var == 0.0:
        return math.inf if diff != 0.0 else -math.inf
    return 0.5 * math.log(var / (var + tau2)) + diff * diff * tau2 / (2.0 * var * (var + tau2))


def _msprt_half_width(var: float, tau2: float, alpha: float) -> float:
    """Half-width of the always-valid interval: the ``theta0`` whose log LR stays < log(1/alpha)."""
    if var == 0.0:
        return 0.0
    return math.sqrt(
        var * (var + tau2) / tau2 * (2.0 * math.log(1.0 / alpha) + math.log((var + tau2) / var))
    )


def analyze(
    control: ArmStats,
    treatment: ArmStats,
    *,
    alpha: float = 0.05,
    metric: Metric = "binary",
    tau: float | None = None,
    min_samples: int = 100,
    higher_is_better: bool = True,
) -> ABReport:
    """Compare the arms with an always-valid sequential test of the difference in means.

    The mSPRT of Johari, Pekelis & Walsh (2017) mixes the normal likelihood ratio of the
    lift ``d = mean_t - mean_c`` (standard error ``s``) over ``theta ~ N(0, tau^2)``::

        LR = sqrt(s^2 / (s^2 + tau^2)) * exp(d^2 tau^2 / (2 s^2 (s^2 + tau^2)))

    Under "no difference" LR is a martingale, so ``P(LR ever >= 1/alpha) <= alpha``
    (Ville's inequality): the decision may be read at every look without inflating false
    positives. A winner is declared when ``LR >= 1/alpha``; otherwise "continue".

    Args:
        control, treatment: the arms' sufficient statistics.
        alpha: false-positive rate of the sequential test (and level of both intervals).
        metric: ``"binary"`` (0/1 outcomes) or ``"continuous"``.
        tau: mixing standard deviation in outcome units; None uses
            ``DEFAULT_TAU_SD`` (0.1) times the pooled standard deviation of the outcome.
            For the most power, set it to the planned absolute mde.
        min_samples: outcomes each arm needs before any decision ("insufficient data").
        higher_is_better: whether a larger mean is the better arm (False for e.g. churn).
    """
    _check_metric(metric)
    _check_unit("alpha", alpha)
    if not isinstance(control, ArmStats) or not isinstance(treatment, ArmStats):
        raise InvalidSpecError(
            "analyze() takes two ArmStats (control, treatment), e.g. "
            "ArmStats.from_values(outcomes) or ArmStats(n, total, total_sq)."
        )
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 2:
        raise InvalidSpecError(f"min_samples must be an integer >= 2, got {min_samples!r}.")
    if tau is not None and not (math.isfinite(tau) and tau > 0):
        raise InvalidSpecError(f"tau must be > 0 (in the outcome's units) or None, got {tau}.")
    if metric == "binary":
        for label, arm in (("control", control), ("treatment", treatment)):
            tol = 1e-9 * max(arm.n, 1)
            if not (-tol <= arm.total <= arm.n + tol and abs(arm.total_sq - arm.total) <= tol):
                raise InvalidSpecError(
                    f"The {label} arm {arm} is not 0/1 outcomes (binary needs 0 <= total <= n "
                    "and total_sq == total); use metric='continuous' for other outcomes."
                )

    def report(**kw: Any) -> ABReport:
        base: dict[str, Any] = {
            "metric": metric,
            "alpha": alpha,
            "min_samples": min_samples,
            "higher_is_better": higher_is_better,
            "control": control,
            "treatment": treatment,
            "control_mean": None,
            "treatment_mean": None,
            "lift": None,
            "relative_lift": None,
            "std_error": None,
            "fixed_ci": None,
            "sequential_ci": None,
            "likelihood_ratio": None,
            "log_likelihood_ratio": None,
            "p_value": None,
            "tau": None,
        }
        base.update(kw)
        return ABReport(**base)

    too_few = (
        f"needs {min_samples} outcomes per arm, has {control.n} (control) and "
        f"{treatment.n} (treatment)"
    )
    if control.n < 2 or treatment.n < 2:
        means = {
            "control_mean": control.mean if control.n else None,
            "treatment_mean": treatment.mean if treatment.n else None,
        }
        return report(decision="insufficient data", note=too_few, **means)

    c_mean, t_mean = control.mean, treatment.mean
    lift = t_mean - c_mean
    rel = t_mean / c_mean - 1.0 if c_mean != 0.0 else None
    var_c, var_t = _arm_variance(control, metric), _arm_variance(treatment, metric)
    var = var_c / control.n + var_t / treatment.n
    se = math.sqrt(var)
    z = _STD_NORMAL.inv_cdf(1.0 - alpha / 2.0)
    fixed_ci = (lift - z * se, lift + z * se)
    if tau is None:
        dof = control.n + treatment.n - 2
        pooled_sd = math.sqrt(((control.n - 1) * var_c + (treatment.n - 1) * var_t) / dof)
        # Constant outcomes in both arms: any positive tau gives the degenerate limit.
        tau = DEFAULT_TAU_SD * pooled_sd if pooled_sd > 0 else 1.0
    tau2 = tau * tau
    log_lr = _msprt_log_lr(lift, var, tau2)
    lr = math.exp(log_lr) if log_lr < 700.0 else math.inf
    p_value = min(1.0, math.exp(-log_lr)) if log_lr > -700.0 else 1.0
    half = _msprt_half_width(var, tau2, alpha)
    seq_ci = (lift - half, lift + half)

    decision: Decision
    if control.n < min_samples or treatment.n < min_samples:
        decision, note = "insufficient data", too_few
    elif log_lr >= math.log(1.0 / alpha):
        better_t = (lift > 0) == higher_is_better
        decision = "treatment better" if better_t else "control better"
        note = (
            f"sequential test: likelihood ratio {lr:.3g} >= 1/alpha = {1.0 / alpha:.3g} "
            "(valid at any look; stop the test now)"
        )
    else:
        decision = "continue"
        note = (
            f"sequential test: likelihood ratio {lr:.3g} < 1/alpha = {1.0 / alpha:.3g}; "
            "keep collecting (peeking is safe)"
        )
    note += "; the fixed-horizon CI is valid only when read once at the planned sample size"
    return report(
        control_mean=c_mean,
        treatment_mean=t_mean,
        lift=lift,
        relative_lift=rel,
        std_error=se,
        fixed_ci=fixed_ci,
        sequential_ci=seq_ci,
        likelihood_ratio=lr,
        log_likelihood_ratio=log_lr,
        p_value=p_value,
        tau=tau,
        decision=decision,
        note=note,
    )
