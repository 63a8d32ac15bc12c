"""Two-sample statistics computed from binned counts (reference bins, current counts).

All functions take counts over the same bins for the reference and the current
window and never see the raw values. Approximation errors against the exact
two-sample statistics (on raw values) are stated in ``docs/monitoring.md``:

* KS: evaluated at the bin edges, so ``D_binned <= D_exact <= D_binned + max bin mass``.
* Wasserstein-1: each bin's mass sits at its exact mean (bins carry sums), so the
  error is at most half the bin width times its mass, summed over bins; exact when
  every distinct value has its own bin.
* PSI and Jensen-Shannon: on :data:`COARSE_BINS` reference-quantile groups of the
  fine bins (PSI's usual deciles); with 1,000 bins both would measure sampling noise.
* Chi-square: a 2 x K homogeneity test on category counts, equal to
  ``scipy.stats.chi2_contingency(..., correction=False)`` when no cell is pooled.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from keel.monitoring._columns import FloatArray, IntArray

__all__ = [
    "COARSE_BINS",
    "PSI_EPS",
    "benjamini_hochberg",
    "chi2_homogeneity",
    "chi2_sf",
    "coarse_groups",
    "jensen_shannon",
    "kolmogorov_sf",
    "ks_pvalue",
    "ks_statistic",
    "proportion_test",
    "psi",
    "total_variation",
    "wasserstein_points",
]

#: Reference-quantile groups PSI and Jensen-Shannon are computed on (numeric columns).
COARSE_BINS = 10
#: Floor of a bin's share in PSI (an empty bin would make it infinite).
PSI_EPS = 1e-4
#: Expected count below which chi-square cells are pooled together.
MIN_EXPECTED = 5.0


def kolmogorov_sf(lam: float) -> float:
    """``P(K > lam)`` for Kolmogorov's distribution (``scipy.special.kolmogorov``)."""
    if lam <= 0:
        return 1.0
    if lam < 1.18:  # the theta-function form converges fast for small lambda
        c = math.pi**2 / (8 * lam * lam)
        total = sum(math.exp(-((2 * k - 1) ** 2) * c) for k in range(1, 8))
        return max(0.0, min(1.0, 1.0 - math.sqrt(2 * math.pi) / lam * total))
    total = sum((1.0 if k % 2 else -1.0) * math.exp(-2 * k * k * lam * lam) for k in range(1, 8))
    return max(0.0, min(1.0, 2 * total))


def chi2_sf(stat: float, dof: int) -> float:
    """``P(X > stat)`` for a chi-square variable with ``dof`` degrees of freedom."""
    if stat <= 0:
        return 1.0
    return _gammaincc(dof / 2.0, stat / 2.0)


def _gammaincc(a: float, x: float) -> float:
    """The regularised upper incomplete gamma function Q(a, x) (series or Lentz fraction)."""
    log_prefix = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:  # series for P(a, x)
        term = total = 1.0 / a
        ap = a
        for _ in range(10_000):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    tiny = 1e-300  # continued fraction for Q(a, x) (modified Lentz)
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return min(1.0, math.exp(log_prefix) * h)


def _shares(counts: IntArray | FloatArray) -> FloatArray:
    total = float(np.sum(counts))
    if total <= 0:
        return np.zeros(len(counts))
    return np.asarray(counts, dtype=np.float64) / total


def ks_statistic(ref: IntArray, cur: IntArray) -> float:
    """Largest CDF gap at the bin boundaries (the two-sample KS ``D``)."""
    cr = np.cumsum(_shares(ref))
    cc = np.cumsum(_shares(cur))
    return float(np.max(np.abs(cr - cc))) if cr.size else 0.0


def ks_pvalue(d: float, n_ref: int, n_cur: int) -> float:
    """Two-sample KS p-value: Kolmogorov's limit with Stephens' small-sample correction.

    ``Q(lambda)`` with ``lambda = (sqrt(en) + 0.12 + 0.11 / sqrt(en)) * d`` and
    ``en = n_ref * n_cur / (n_ref + n_cur)`` (Stephens 1970; Numerical Recipes 14.3);
    within a few percent of ``scipy.stats.ks_2samp(method="asymp")`` and cheap
    (no SciPy needed).
    """
    if n_ref == 0 or n_cur == 0:
        return 1.0
    en = math.sqrt(n_ref * n_cur / (n_ref + n_cur))
    return kolmogorov_sf((en + 0.12 + 0.11 / en) * d)


def wasserstein_points(
    ref_pos: FloatArray, ref_w: FloatArray, cur_pos: FloatArray, cur_w: FloatArray
) -> float:
    """Wasserstein-1 distance between two weighted point sets (weights sum to 1 each)."""
    pos = np.concatenate([ref_pos, cur_pos])
    w = np.concatenate([ref_w, -cur_w])
    order = np.argsort(pos, kind="stable")
    pos, w = pos[order], w[order]
    gap = np.cumsum(w)[:-1]
    return float(np.sum(np.abs(gap) * np.diff(pos)))


def coarse_groups(ref: IntArray, groups: int = COARSE_BINS) -> np.ndarray[Any, Any]:
    """Map each fine bin to one of ``groups`` reference-quantile groups."""
    share = _shares(ref)
    start = np.concatenate([[0.0], np.cumsum(share)[:-1]])
    g = np.floor(start * groups + 1e-9).astype(np.intp)
    return np.clip(g, 0, groups - 1)


def regroup(counts: IntArray, groups: np.ndarray[Any, Any], n: int) -> IntArray:
    """Sum fine-bin ``counts`` into ``n`` groups."""
    out: IntArray = np.bincount(groups, weights=counts, minlength=n).astype(np.int64)
    return out


def psi(ref: IntArray, cur: IntArray) -> float:
    """Population stability index ``sum((c - r) * ln(c / r))`` with shares floored at 1e-4."""
    r = np.maximum(_shares(ref), PSI_EPS)
    c = np.maximum(_shares(cur), PSI_EPS)
    return float(np.sum((c - r) * np.log(c / r)))


def jensen_shannon(ref: IntArray, cur: IntArray) -> float:
    """Jensen-Shannon distance, base 2 (0 = identical, 1 = disjoint)."""
    p, q = _shares(ref), _shares(cur)
    m = 0.5 * (p + q)

    def kl(a: FloatArray) -> float:
        ok = a > 0
        return float(np.sum(a[ok] * np.log2(a[ok] / m[ok])))

    return math.sqrt(max(0.0, 0.5 * kl(p) + 0.5 * kl(q)))


def total_variation(ref: IntArray, cur: IntArray) -> float:
    """Total variation distance: the share of the mass that sits in different cells."""
    return float(0.5 * np.sum(np.abs(_shares(ref) - _shares(cur))))


def chi2_homogeneity(ref: IntArray, cur: IntArray) -> tuple[float, float, int]:
    """Chi-square test that two count vectors come from one distribution: (chi2, p, dof).

    Cells empty in both are dropped; cells whose expected count is below 5 in
    either row are pooled into one cell (the usual validity rule).
    """
    r = np.asarray(ref, dtype=np.float64)
    c = np.asarray(cur, dtype=np.float64)
    keep = (r + c) > 0
    r, c = r[keep], c[keep]
    nr, nc = r.sum(), c.sum()
    if nr == 0 or nc == 0 or r.size < 2:
        return 0.0, 1.0, 0
    col = r + c
    er, ec = col * nr / (nr + nc), col * nc / (nr + nc)
    small = (er < MIN_EXPECTED) | (ec < MIN_EXPECTED)
    if small.any():
        r = np.append(r[~small], r[small].sum())
        c = np.append(c[~small], c[small].sum())
        col = r + c
        er, ec = col * nr / (nr + nc), col * nc / (nr + nc)
    if r.size < 2:
        return 0.0, 1.0, 0
    stat = float(np.sum((r - er) ** 2 / er) + np.sum((c - ec) ** 2 / ec))
    dof = int(r.size - 1)
    return stat, chi2_sf(stat, dof), dof


def proportion_test(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test (``k/n`` vs ``k/n``)."""
    if n1 == 0 or n2 == 0:
        return 1.0
    p = (k1 + k2) / (n1 + n2)
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    diff = k2 / n2 - k1 / n1
    if se == 0:
        return 1.0 if diff == 0 else 0.0
    return math.erfc(abs(diff) / se / math.sqrt(2))


def benjamini_hochberg(pvalues: list[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), in input order."""
    m = len(pvalues)
    if m == 0:
        return []
    p = np.asarray(pvalues, dtype=np.float64)
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return [float(v) for v in out]
