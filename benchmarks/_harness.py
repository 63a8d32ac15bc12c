"""Shared plumbing of the side-by-side benchmarks (tracking, registry, server, data).

Standard library only at import time, so it serves both sides of a benchmark:
the orchestrator (``run.py``, keel's venv, which has Rich for the table) and the
workers, some of which run in the pinned MLflow venv. Import it after putting
``benchmarks/`` on ``sys.path``::

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import _harness as h

What it offers:

- venvs: :func:`ensure_mlflow_venv` (the pinned ``MLFLOW_VERSION`` under
  ``benchmarks/.venvs/``, created with uv on first use) or :func:`ensure_venv` for
  any pinned requirements; :func:`worker_env` for a worker's environment;
- timing: :func:`now`, :func:`repeat`, :func:`summarize` (median/min/max), :func:`percentile`;
- workers: :func:`json_stdout` and :func:`emit` (a worker prints one JSON line),
  :func:`run_worker` (the orchestrator's side: run, time, parse, report failures);
- the table: :class:`Row` (values, ``keel adv.`` ratio, target, met), :func:`fmt_number`,
  :func:`fmt_ratio`, :func:`lookup`, :func:`print_table` (Rich), :func:`markdown_table`;
- the report: :func:`machine_info`, :func:`load_average`, :func:`load_note`,
  :func:`write_outputs` (``results.json`` and the optional Markdown table).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

BENCHMARKS = Path(__file__).resolve().parent
VENVS_DIR = BENCHMARKS / ".venvs"
MLFLOW_VERSION = "3.17.2"
MLFLOW_VENV = VENVS_DIR / f"mlflow-{MLFLOW_VERSION}"


def log(message: str) -> None:
    """Progress for the reader, on stderr (stdout carries results)."""
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------- timing


def now() -> float:
    """A monotonic clock in seconds."""
    return time.perf_counter()


def summarize(samples: list[float]) -> dict[str, Any]:
    """Median, min and max of wall times, samples included."""
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "samples": samples,
    }


def repeat(fn: Callable[[], Any], times: int) -> tuple[list[float], Any]:
    """Call ``fn`` ``times`` times; return the wall times (s) and the last result."""
    samples: list[float] = []
    result: Any = None
    for _ in range(times):
        t0 = now()
        result = fn()
        samples.append(now() - t0)
    return samples, result


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 200 samples is the 3rd largest; of 50, the largest)."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


# -------------------------------------------------------------------- worker side


@contextmanager
def json_stdout() -> Iterator[IO[str]]:
    """Reserve the real stdout for the worker's single JSON line.

    File descriptor 1 is pointed at stderr for the duration, so chatty
    libraries (MLflow's alembic migrations, progress bars, prints) cannot
    corrupt the result; the yielded stream writes to the original stdout.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    out = os.fdopen(saved, "w", encoding="utf-8")
    try:
        yield out
    finally:
        sys.stdout.flush()
        out.flush()


def emit(out: IO[str], result: dict[str, Any]) -> None:
    """Write a worker's result as its one JSON line."""
    out.write(json.dumps(result) + "\n")
    out.flush()


# ---------------------------------------------------------------------- venvs


def venv_python(venv: Path) -> Path:
    """The interpreter of a venv."""
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def installed_version(python: Path, dist: str = "mlflow") -> str | None:
    """The version of ``dist`` installed for ``python``, or None."""
    if not python.exists():
        return None
    proc = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_venv(
    venv: Path, dist: str, version: str, label: str | None = None
) -> tuple[Path, dict[str, Any]]:
    """The python of a venv with ``dist==version``, creating or repairing the venv if needed.

    Returns the interpreter and what to record in results.json (path, whether it
    was created, setup seconds).
    """
    python = venv_python(venv)
    name = f"{label or dist} {version}"
    if installed_version(python, dist) == version:
        log(f"{name}: reusing {venv}")
        return python, {"path": str(venv), "created": False, "setup_seconds": 0.0}

    log(f"{name}: creating {venv} ...")
    t0 = now()
    venv.parent.mkdir(parents=True, exist_ok=True)
    uv = shutil.which("uv")
    if uv:
        # Same interpreter as keel's side, so Python and SQLite versions match.
        subprocess.run([uv, "venv", "--clear", "--python", sys.executable, str(venv)], check=True)
        subprocess.run(
            [uv, "pip", "install", "--python", str(python), f"{dist}=={version}"], check=True
        )
    else:  # pragma: no cover - uv is the documented way; plain venv + pip as a fallback
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"{dist}=={version}"], check=True
        )
    found = installed_version(python, dist)
    if found != version:
        raise SystemExit(f"expected {dist} {version} in {venv}, found {found}")
    elapsed = now() - t0
    log(f"{name}: ready in {elapsed:.1f} s")
    return python, {"path": str(venv), "created": True, "setup_seconds": elapsed}


def ensure_mlflow_venv() -> tuple[Path, dict[str, Any]]:
    """The pinned MLflow venv's python (shared by every benchmark and the compat test)."""
    return ensure_venv(MLFLOW_VENV, "mlflow", MLFLOW_VERSION, "MLflow")


def worker_env(tool: str, workdir: Path) -> dict[str, str]:
    """A worker's environment: no MLFLOW_*/KEEL_* of the caller, no telemetry.

    keel gets its own ``KEEL_HOME`` in ``workdir``; other tools lose ``PYTHONPATH``
    so the project's sources stay out of their venv.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "KEEL_")) and k not in ("VIRTUAL_ENV", "PYTHONHOME")
    }
    # No network during the benchmark and the same for both tools.
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["DO_NOT_TRACK"] = "true"
    if tool == "keel":
        env["KEEL_HOME"] = str(workdir / ".keel")
    else:
        env.pop("PYTHONPATH", None)  # keep the project's sources out of MLflow's venv
    return env


# -------------------------------------------------------------- orchestrator side


def run_worker(
    python: Path,
    script: Path,
    argv: Callable[[Path], str],
    *,
    tag: str,
    prefix: str,
    timeout_s: float,
    env: Callable[[Path], dict[str, str]],
    start: str | None = None,
) -> dict[str, Any]:
    """Run one worker process in a fresh temporary directory; return its JSON result.

    ``argv(workdir)`` is the worker's one argument (its JSON request), ``env(workdir)``
    its environment; ``tag`` prefixes the progress lines (``start`` replaces the
    first one). A timeout, a failed exit or no output gives ``{"error": ...}``
    (with the stderr tail logged); otherwise the result gains
    ``process_wall_seconds``.
    """
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    log(start or f"{tag} ...")
    t0 = now()
    try:
        proc = subprocess.run(
            [str(python), str(script), argv(workdir)],
            cwd=workdir,
            env=env(workdir),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        log(f"{tag} timed out after {timeout_s:g} s")
        return {"error": f"timed out after {timeout_s:g} s"}
    finally:
        wall = now() - t0
        shutil.rmtree(workdir, ignore_errors=True)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
        log(f"{tag} FAILED (exit {proc.returncode}):\n{tail}")
        return {"error": f"exit {proc.returncode}: {tail.splitlines()[-1] if tail else ''}"}
    result: dict[str, Any] = json.loads(lines[-1])
    result["process_wall_seconds"] = wall
    log(f"{tag} done in {wall:.1f} s")
    return result


# ------------------------------------------------------------------------- table


@dataclass
class Row:
    """One line of a comparison table: MLflow's and keel's value, ratio, target, met.

    Benchmarks subclass it for extra cells (minimum, p99, process counts) and
    other kinds of targets (override :attr:`met`).
    """

    label: str
    unit: str
    mlflow: float | None
    keel: float | None
    higher_is_better: bool
    target: str
    target_ratio: float | None = None  # keel advantage needed vs MLflow

    @property
    def advantage(self) -> float | None:
        """> 1 means keel is better (throughput keel/MLflow, latency and size MLflow/keel)."""
        if not self.mlflow or not self.keel:
            return None
        return self.keel / self.mlflow if self.higher_is_better else self.mlflow / self.keel

    @property
    def met(self) -> bool | None:
        """Whether keel reaches the target ratio (None: no target or no value)."""
        if self.target_ratio is None or self.advantage is None:
            return None
        return self.advantage >= self.target_ratio

    def met_text(self) -> str:
        """The Met cell."""
        if self.met is None:
            return "-" if self.target == "-" else "n/a"
        return "yes" if self.met else "NO"

    def json_extra(self) -> dict[str, Any]:
        """Subclass values for results.json, written after ``keel``."""
        return {}

    def to_json(self) -> dict[str, Any]:
        """The row in results.json."""
        return {
            "workload": self.label,
            "unit": self.unit,
            "mlflow": self.mlflow,
            "keel": self.keel,
            **self.json_extra(),
            "keel_advantage": self.advantage,
            "target": self.target,
            "met": self.met,
        }


def lookup(res: dict[str, Any] | None, *path: str) -> float | None:
    """The number at ``path`` in a nested result, or None when absent or not a number."""
    cur: Any = res
    for part in path:
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return float(cur) if isinstance(cur, int | float) else None


def fmt_number(value: float) -> str:
    """Three significant-ish digits: 1,234 / 12.3 / 1.23."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_ratio(value: float | None) -> str:
    """A ``keel adv.`` cell."""
    if value is None:
        return "n/a"
    return f"{value:,.0f}x" if value >= 100 else f"{value:.1f}x" if value >= 10 else f"{value:.2f}x"


#: Left-aligned columns of the standard table (label, unit, target).
LEFT_COLUMNS = (0, 1, 5)


def print_table(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Row],
    cells: Callable[[Any], list[str]],
    notes: Sequence[str],
    *,
    width: int = 140,
) -> None:
    """Print the table with Rich (Met in green/red), notes as its caption.

    Without Rich, plain aligned columns and the notes.
    """
    note = "\n".join(notes)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        body = [cells(r) for r in rows]
        widths = [max(len(h), *(len(c[i]) for c in body)) for i, h in enumerate(headers)]
        print(title)
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
        print("  ".join("-" * w for w in widths))
        for c in body:
            print("  ".join(x.ljust(w) for x, w in zip(c, widths, strict=True)))
        print(note)
        return
    table = Table(title=title, caption=note, show_lines=False)
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i in LEFT_COLUMNS else "right", overflow="fold")
    for r in rows:
        row = cells(r)
        if r.met is False:
            row[-1] = f"[bold red]{row[-1]}[/]"
        elif r.met:
            row[-1] = f"[green]{row[-1]}[/]"
        table.add_row(*row)
    Console(width=max(width, shutil.get_terminal_size().columns)).print(table)


def markdown_table(
    headers: Sequence[str],
    rows: Sequence[Row],
    cells: Callable[[Any], list[str]],
    notes: Sequence[str],
) -> str:
    """The table as Markdown, notes as a list below it."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    lines += ["", *(f"- {n}" for n in notes)]
    return "\n".join(lines) + "\n"


def print_checks(failures: list[str], passed: Sequence[str]) -> None:
    """The correctness verdict below the table."""
    if failures:
        print("\nCorrectness checks FAILED:")
        for failure in failures:
            print(f"  - {failure}")
        return
    print("\n" + "\n".join(passed))


# ------------------------------------------------------------------------ report


def parser(doc: str | None, results_path: Path, *, tools: bool = True) -> argparse.ArgumentParser:
    """The options every runner has: --quick, --tools (if ``tools``), --output, --markdown."""
    found = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    found.add_argument(
        "--quick",
        action="store_true",
        help="tiny workloads for a smoke test (numbers meaningless; results.json not written)",
    )
    if tools:
        found.add_argument(
            "--tools",
            default="mlflow,keel",
            help="comma-separated subset of mlflow,keel to run (default: both)",
        )
    found.add_argument("--output", type=Path, help=f"results file (default {results_path})")
    found.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    return found


def load_average() -> list[float] | None:
    """1/5/15-minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def load_note(start: list[float] | None, end: list[float] | None) -> str:
    """A sentence on the machine's load during the run."""
    if start is None or end is None:
        return ""
    text = f"Load average (1 min) at start {start[0]:.2f}, at end {end[0]:.2f}"
    cpus = os.cpu_count() or 1
    # The benchmark itself keeps about one CPU busy, which the end figure includes.
    if start[0] > cpus / 2 or end[0] > cpus / 2 + 1:
        text += f" on {cpus} CPUs: other work was running, numbers are noisier than usual"
    return text + "."


def machine_info() -> dict[str, Any]:
    """CPU, memory, Python and the temporary directory's file system."""
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            models = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        info["cpu_model"] = models[0] if models else None
        with open("/proc/meminfo", encoding="utf-8") as fh:
            total_kb = int(next(ln for ln in fh if ln.startswith("MemTotal")).split()[1])
        info["memory_gib"] = round(total_kb / 2**20, 1)
        tmp = os.path.realpath(tempfile.gettempdir())
        with open("/proc/mounts", encoding="utf-8") as fh:
            mounts = [ln.split()[:3] for ln in fh]
        best = max(
            (mt for mt in mounts if tmp == mt[1] or tmp.startswith(mt[1].rstrip("/") + "/")),
            key=lambda mt: len(mt[1]),
        )
        info["tmp_dir"] = tmp
        info["tmp_filesystem"] = f"{best[2]} ({best[0]} on {best[1]})"
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    return info


def write_outputs(
    report: dict[str, Any], output: Path | None, markdown: Path | None, markdown_text: str
) -> None:
    """Write ``results.json`` (when ``output``) and the Markdown table (when ``markdown``)."""
    if output:
        output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        log(f"wrote {output}")
    if markdown:
        markdown.write_text(markdown_text, encoding="utf-8")
        log(f"wrote {markdown}")
