"""The data of the monitoring benchmark: 50 columns with known drift, and the truth.

Imported by the orchestrator (``run.py``, keel's venv) and by both workers (the
Evidently worker runs in its own pinned venv), so the top level needs only the
standard library; :func:`generate` imports NumPy and pyarrow when called, and is
only called by the orchestrator.

Columns (the same in the reference and the current table, ``rows`` rows each):

- 40 numeric ``n00``..``n39`` drawn from normal, log-normal, exponential,
  uniform, gamma, Student-t, bimodal and Poisson distributions (``n11`` and
  ``n12`` hold ~1% NaN in both tables);
- 10 categorical ``c00``..``c09`` (strings, 2 to 40 categories, Zipf-like mix).

Drift is planted only in the current table, per column:

- **strong** (10): a mean shift of 0.5-1 standard deviation (7 numeric columns;
  one of them a 1.5x wider spread instead) or a clearly changed category mix
  (3 categorical columns);
- **weak** (6): a mean shift of 0.05-0.08 sd, a 1.1x wider spread, or a
  category mix moved by 2-3 percentage points;
- **none** (34): the same distribution, new random draws.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Bump when the data below changes, so cached Parquet files are not reused.
DATA_VERSION = 1
SEED = 20_261_125
#: Rows generated (and written as one Parquet row group) at a time.
CHUNK_ROWS = 1_000_000

HERE = Path(__file__).resolve().parent
CACHE_DIR = HERE.parent / ".cache"


@dataclass(frozen=True)
class NumericColumn:
    """A numeric column: its distribution, and the drift planted in the current table.

    ``shift`` moves the current values by ``shift`` standard deviations of the
    distribution; ``scale`` widens their spread around the mean by that factor.
    """

    name: str
    dist: str
    params: tuple[float, ...]
    strength: str = "none"  # none / weak / strong
    shift: float = 0.0
    scale: float = 1.0
    nan_rate: float = 0.0


@dataclass(frozen=True)
class CategoricalColumn:
    """A categorical column: reference probabilities and the current ones."""

    name: str
    reference: tuple[float, ...]
    current: tuple[float, ...]
    strength: str = "none"

    @property
    def categories(self) -> list[str]:
        """The category labels, ``v00``, ``v01``, ..."""
        return [f"v{k:02d}" for k in range(len(self.reference))]


def zipf(n: int, a: float = 0.8) -> tuple[float, ...]:
    """A Zipf-like mix over ``n`` categories (first the most frequent)."""
    weights = [1.0 / (k + 1) ** a for k in range(n)]
    total = sum(weights)
    return tuple(w / total for w in weights)


def moved(probs: tuple[float, ...], moves: list[tuple[int, int, float]]) -> tuple[float, ...]:
    """``probs`` with ``amount`` of probability moved from category ``src`` to ``dst``."""
    out = list(probs)
    for src, dst, amount in moves:
        if out[src] < amount:
            raise ValueError(f"cannot move {amount} from category {src} holding {out[src]}")
        out[src] -= amount
        out[dst] += amount
    return tuple(out)


# Distributions: name -> (mean, sd) as functions of the parameters.
def dist_moments(dist: str, params: tuple[float, ...]) -> tuple[float, float]:
    """The population mean and standard deviation of a column's distribution."""
    if dist == "normal":
        return params[0], params[1]
    if dist == "lognormal":
        mu, sigma = params
        mean = math.exp(mu + sigma**2 / 2)
        return mean, math.sqrt((math.exp(sigma**2) - 1) * math.exp(2 * mu + sigma**2))
    if dist == "exponential":
        return params[0], params[0]
    if dist == "uniform":
        low, high = params
        return (low + high) / 2, (high - low) / math.sqrt(12)
    if dist == "gamma":
        shape, scale = params
        return shape * scale, math.sqrt(shape) * scale
    if dist == "student_t":
        df, loc = params
        return loc, math.sqrt(df / (df - 2))
    if dist == "bimodal":  # equal mixture of N(-d, 1) and N(+d, 1)
        return 0.0, math.sqrt(1 + params[0] ** 2)
    if dist == "poisson":
        return params[0], math.sqrt(params[0])
    raise ValueError(f"unknown distribution {dist!r}")


def _numeric_columns() -> list[NumericColumn]:
    strong = [
        NumericColumn("n00", "normal", (10.0, 2.0), "strong", shift=0.5),
        NumericColumn("n01", "normal", (0.0, 1.0), "strong", shift=-0.75),
        NumericColumn("n02", "lognormal", (0.0, 0.5), "strong", shift=0.5),
        NumericColumn("n03", "exponential", (3.0,), "strong", shift=1.0),
        NumericColumn("n04", "uniform", (0.0, 100.0), "strong", shift=0.5),
        NumericColumn("n05", "normal", (50.0, 5.0), "strong", scale=1.5),
        NumericColumn("n06", "gamma", (2.0, 1.5), "strong", shift=0.6),
    ]
    weak = [
        NumericColumn("n07", "normal", (0.0, 1.0), "weak", shift=0.08),
        NumericColumn("n08", "lognormal", (1.0, 0.4), "weak", shift=0.07),
        NumericColumn("n09", "normal", (100.0, 15.0), "weak", shift=0.05),
        NumericColumn("n10", "normal", (0.0, 3.0), "weak", scale=1.1),
    ]
    families: list[tuple[str, tuple[float, ...]]] = [
        ("normal", (0.0, 1.0)),
        ("lognormal", (0.5, 0.6)),
        ("exponential", (2.0,)),
        ("uniform", (-1.0, 1.0)),
        ("gamma", (3.0, 2.0)),
        ("student_t", (5.0, 0.0)),
        ("bimodal", (2.0,)),
        ("poisson", (4.0,)),
    ]
    none = []
    for i in range(11, 40):
        dist, params = families[(i - 11) % len(families)]
        nan_rate = 0.01 if i in (11, 12) else 0.0
        none.append(NumericColumn(f"n{i:02d}", dist, params, nan_rate=nan_rate))
    return strong + weak + none


def _categorical_columns() -> list[CategoricalColumn]:
    cols: list[CategoricalColumn] = []
    p = zipf(4)
    cols.append(CategoricalColumn("c00", p, tuple(reversed(p)), "strong"))
    p = zipf(8)
    cols.append(CategoricalColumn("c01", p, moved(p, [(0, 7, 0.15), (1, 6, 0.08)]), "strong"))
    p = zipf(25)
    cols.append(CategoricalColumn("c02", p, tuple(reversed(p)), "strong"))
    p = zipf(5)
    cols.append(CategoricalColumn("c03", p, moved(p, [(0, 4, 0.03)]), "weak"))
    p = zipf(12)
    cols.append(CategoricalColumn("c04", p, moved(p, [(1, 5, 0.02), (0, 8, 0.015)]), "weak"))
    for name, n in (("c05", 3), ("c06", 6), ("c07", 10), ("c08", 40), ("c09", 2)):
        p = zipf(n)
        cols.append(CategoricalColumn(name, p, p))
    return cols


@dataclass(frozen=True)
class Spec:
    """All columns of the benchmark tables."""

    numeric: list[NumericColumn] = field(default_factory=_numeric_columns)
    categorical: list[CategoricalColumn] = field(default_factory=_categorical_columns)

    @property
    def numeric_names(self) -> list[str]:
        """Names of the numeric columns."""
        return [c.name for c in self.numeric]

    @property
    def categorical_names(self) -> list[str]:
        """Names of the categorical columns."""
        return [c.name for c in self.categorical]

    def truth(self) -> dict[str, str]:
        """Column name -> ``strong`` / ``weak`` / ``none``."""
        out = {c.name: c.strength for c in self.numeric}
        out.update({c.name: c.strength for c in self.categorical})
        return out

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON (recorded in results.json)."""
        return {
            "data_version": DATA_VERSION,
            "seed": SEED,
            "numeric": [asdict(c) for c in self.numeric],
            "categorical": [asdict(c) for c in self.categorical],
        }

    def digest(self) -> str:
        """A short hash of the spec (part of the cached files' names)."""
        text = json.dumps(self.to_json(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]


SPEC = Spec()


def data_paths(rows: int) -> tuple[Path, Path]:
    """The cached reference and current Parquet files for ``rows`` rows."""
    stem = f"monitoring-v{DATA_VERSION}-{SPEC.digest()}-{rows}"
    return CACHE_DIR / f"{stem}-reference.parquet", CACHE_DIR / f"{stem}-current.parquet"


def accuracy(flags: dict[str, bool], truth: dict[str, str] | None = None) -> dict[str, Any]:
    """Detection accuracy of per-column ``drifted`` flags against the truth."""
    truth = truth or SPEC.truth()
    missing = sorted(set(truth) - set(flags))
    found = {
        s: sorted(n for n, t in truth.items() if t == s and flags.get(n)) for s in truth.values()
    }
    return {
        "strong_found": len(found.get("strong", [])),
        "strong_total": sum(t == "strong" for t in truth.values()),
        "weak_found": len(found.get("weak", [])),
        "weak_total": sum(t == "weak" for t in truth.values()),
        "false_alarms": len(found.get("none", [])),
        "undrifted_total": sum(t == "none" for t in truth.values()),
        "strong_missed": sorted(n for n, t in truth.items() if t == "strong" and not flags.get(n)),
        "weak_found_names": found.get("weak", []),
        "false_alarm_names": found.get("none", []),
        "columns_without_result": missing,
    }


# ------------------------------------------------------------------ generation


def _draw(rng: Any, col: NumericColumn, n: int, current: bool) -> Any:
    """``n`` values of a numeric column (NumPy array), drift applied when ``current``."""
    import numpy as np

    p = col.params
    if col.dist == "normal":
        x = rng.normal(p[0], p[1], n)
    elif col.dist == "lognormal":
        x = rng.lognormal(p[0], p[1], n)
    elif col.dist == "exponential":
        x = rng.exponential(p[0], n)
    elif col.dist == "uniform":
        x = rng.uniform(p[0], p[1], n)
    elif col.dist == "gamma":
        x = rng.gamma(p[0], p[1], n)
    elif col.dist == "student_t":
        x = rng.standard_t(p[0], n) + p[1]
    elif col.dist == "bimodal":
        x = rng.normal(0.0, 1.0, n) + np.where(rng.random(n) < 0.5, -p[0], p[0])
    elif col.dist == "poisson":
        x = rng.poisson(p[0], n).astype(np.int64)
    else:
        raise ValueError(f"unknown distribution {col.dist!r}")
    if current and (col.shift or col.scale != 1.0):
        mean, sd = dist_moments(col.dist, p)
        x = mean + (x - mean) * col.scale + col.shift * sd
    if col.nan_rate:
        x = x.astype(np.float64)
        x[rng.random(n) < col.nan_rate] = np.nan
    return x


def _chunk(rows: int, start: int, current: bool) -> Any:
    """Rows ``start``..``start+rows`` of one table as a pyarrow Table."""
    import numpy as np
    import pyarrow as pa

    # One seed per (table, chunk): the files do not depend on the chunk order.
    rng = np.random.default_rng([SEED, int(current), start // CHUNK_ROWS])
    data: dict[str, Any] = {}
    for col in SPEC.numeric:
        data[col.name] = _draw(rng, col, rows, current)
    for cat in SPEC.categorical:
        probs = np.asarray(cat.current if current else cat.reference)
        codes = rng.choice(len(probs), size=rows, p=probs / probs.sum())
        data[cat.name] = pa.array(cat.categories).take(pa.array(codes))
    return pa.table(data)


def generate(rows: int, log: Any = print) -> tuple[Path, Path]:
    """Write (once) the reference and current tables of ``rows`` rows; return their paths."""
    import pyarrow.parquet as pq

    if rows < 1:
        raise ValueError(f"--rows must be positive, got {rows}")
    paths = data_paths(rows)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    for path, current in zip(paths, (False, True), strict=True):
        if path.exists():
            continue
        log(f"generating {path.name} ({rows:,} rows x 50 columns) ...")
        tmp = path.with_suffix(".tmp")
        writer = None
        for start in range(0, rows, CHUNK_ROWS):
            table = _chunk(min(CHUNK_ROWS, rows - start), start, current)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table, row_group_size=CHUNK_ROWS)
        assert writer is not None
        writer.close()
        tmp.replace(path)
        log(f"  wrote {path.stat().st_size / 1e6:,.0f} MB")
    return paths
