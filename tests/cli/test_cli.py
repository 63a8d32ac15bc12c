"""The ``keel`` command line, end to end against a real SQLite store and object store.

Data is created with the Python API first; every command is then run through
Typer's ``CliRunner`` (in-process, stdout and stderr captured separately) and,
once, as a real subprocess to prove the console-script entry point.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import keel
from keel.cli import main as cli
from keel.exceptions import InvalidSpecError, KeelError, NotFoundError
from keel.store.sql import HEAD_REVISION
from keel.tracking.client import Client
from tests.cli._helpers import invoke, plain_consoles


@pytest.fixture(autouse=True)
def plain_console(monkeypatch: pytest.MonkeyPatch) -> None:
    plain_consoles(monkeypatch, width=120)


def strict_json(text: str) -> Any:
    """Parse JSON, failing on the non-standard NaN / Infinity literals."""

    def reject(constant: str) -> Any:
        raise AssertionError(f"non-standard JSON constant {constant} in output")

    return json.loads(text, parse_constant=reject)


@pytest.fixture
def runs() -> Iterator[dict[str, str]]:
    """Four runs in two experiments (one failed); returns run ids by name."""
    ids: dict[str, str] = {}
    with keel.start_run(experiment="churn", run_name="rf") as run:
        keel.log_params({"model": "rf", "depth": 8})
        for step in range(3):
            keel.log_metric("auc", 0.89 + step / 100, step=step)
        keel.log_metrics({"loss": math.nan, "big": math.inf, "small": -math.inf})
        keel.log_text("hello", "notes/readme.txt")
        keel.log_dict({"lr": 0.1}, "config.json")
        ids["rf"] = run.run_id
    with keel.start_run(experiment="churn", run_name="gb") as run:
        keel.log_params({"model": "gb", "depth": 8})
        keel.log_metrics({"auc": 0.88, "loss": 0.3})
        ids["gb"] = run.run_id
    with pytest.raises(RuntimeError), keel.start_run(experiment="churn", run_name="broken") as run:
        ids["broken"] = run.run_id
        keel.log_param("model", "mlp")
        raise RuntimeError("boom: out of memory")
    with keel.start_run(experiment="fraud", run_name="base") as run:
        keel.log_metric("auc", 0.5)
        ids["base"] = run.run_id
    yield ids


# -- root -----------------------------------------------------------------------------------------
def test_version() -> None:
    assert invoke("--version").stdout.strip() == f"keel {keel.__version__}"


def test_help_lists_every_command_group() -> None:
    out = invoke("--help").stdout
    for name in ("config", "db", "experiments", "runs", "artifacts"):
        assert name in out
    runs_help = invoke("runs", "--help").stdout
    for name in ("list", "show", "compare", "delete", "restore", "reap"):
        assert name in runs_help


def test_unknown_command_is_a_usage_error() -> None:
    assert "No such command" in invoke("nonsense", code=2).stderr


def test_exit_code_for_each_error_family() -> None:
    from keel.store._filter import parse_filter

    with pytest.raises(ValueError) as bad_filter:
        parse_filter("metrics.auc >")
    assert cli.exit_code_for(NotFoundError("x")) == 3
    assert cli.exit_code_for(InvalidSpecError("x")) == 2
    assert cli.exit_code_for(bad_filter.value) == 2
    assert cli.exit_code_for(KeelError("x")) == 1
    assert cli.exit_code_for(ValueError("x")) is None  # a bug: traceback, not "Error:"


# -- config ---------------------------------------------------------------------------------------
def test_config_table_shows_values_and_sources(keel_home: Path) -> None:
    out = invoke("config").stdout
    assert str(keel_home) in out
    assert "env:KEEL_HOME" in out
    assert "heartbeat_timeout" in out


def test_config_json_reads_keel_toml(keel_home: Path, tmp_path: Path) -> None:
    (tmp_path / "keel.toml").write_text('[keel]\nuser = "alice"\nheartbeat_timeout = 30\n')
    data = strict_json(invoke("config", "--json").stdout)
    assert data["home"] == {"value": str(keel_home), "source": "env:KEEL_HOME"}
    assert data["user"] == {"value": "alice", "source": str(tmp_path / "keel.toml")}
    assert data["heartbeat_timeout"]["value"] == 30.0
    assert data["s3_endpoint_url"]["value"] is None


def test_config_error_is_reported_without_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_HEARTBEAT_TIMEOUT", "soon")
    result = invoke("config", code=1)
    assert result.stderr.startswith("Error: Setting 'heartbeat_timeout' must be a number")
    assert "Traceback" not in result.output


# -- db -------------------------------------------------------------------------------------------
def test_db_upgrade_on_a_fresh_home(keel_home: Path) -> None:
    assert not keel_home.exists()
    assert invoke("db", "current").stdout.startswith("none (empty database")
    assert not (keel_home / "keel.db").exists()  # looking does not create the database
    out = invoke("db", "upgrade").stdout
    assert f"upgraded (empty) -> {HEAD_REVISION}" in out
    assert (keel_home / "keel.db").exists()
    assert "nothing to do" in invoke("db", "upgrade").stdout
    assert invoke("db", "current").stdout.strip() == f"{HEAD_REVISION} (head)"


def test_db_unknown_backend_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_STORE_URI", "nosuchdb://host/db")
    assert "No metadata store for 'nosuchdb'" in invoke("db", "upgrade", code=1).stderr


# -- experiments ----------------------------------------------------------------------------------
def test_experiments_lifecycle() -> None:
    assert "Created experiment churn (id 1)" in invoke("experiments", "create", "churn").stdout
    invoke("experiments", "create", "fraud", "--description", "card fraud")
    out = invoke("experiments", "list").stdout
    assert "churn" in out and "fraud" in out and "card fraud" in out

    err = invoke("experiments", "create", "churn", code=1).stderr
    assert "already exists" in err

    assert "Deleted experiment churn" in invoke("experiments", "delete", "churn").stdout
    listed = strict_json(invoke("experiments", "list", "--json").stdout)
    assert [e["name"] for e in listed] == ["fraud"]
    deleted = strict_json(invoke("experiments", "list", "--deleted", "--json").stdout)
    assert [(e["name"], e["lifecycle_stage"]) for e in deleted] == [("churn", "deleted")]
    everything = strict_json(invoke("experiments", "list", "--all", "--json").stdout)
    assert {e["name"] for e in everything} == {"churn", "fraud"}

    assert "already deleted" in invoke("experiments", "delete", "1").stdout
    assert "Restored experiment churn" in invoke("experiments", "restore", "1").stdout
    assert len(strict_json(invoke("experiments", "list", "--json").stdout)) == 2


def test_experiments_errors() -> None:
    invoke("experiments", "create", "churn")
    err = invoke("experiments", "delete", "chrun", code=3).stderr
    assert "Experiment 'chrun' not found" in err and "Did you mean 'churn'?" in err
    assert (
        "--all or --deleted" in invoke("experiments", "list", "--all", "--deleted", code=2).stderr
    )
    assert invoke("experiments", "create", "  ", code=2).stderr.startswith("Error: ")


# -- runs list ------------------------------------------------------------------------------------
def test_runs_list_table(runs: dict[str, str]) -> None:
    out = invoke("runs", "list").stdout
    for name, run_id in runs.items():
        assert run_id[:8] in out
        assert run_id not in out  # the table shows short ids
        assert name in out
    for header in ("ID", "Name", "Experiment", "Status", "Start", "Duration", "m.auc"):
        assert header in out
    assert "FINISHED" in out and "FAILED" in out
    assert "fraud" in out
    assert "NaN" in out  # rf's loss
    assert "4 runs" in out


def test_runs_list_json_has_full_ids_and_encodes_nan(runs: dict[str, str]) -> None:
    data = strict_json(invoke("runs", "list", "--json").stdout)
    assert {r["run_id"] for r in data} == set(runs.values())
    rf = next(r for r in data if r["run_id"] == runs["rf"])
    assert rf["metrics"] == {
        "auc": pytest.approx(0.91),
        "loss": "NaN",
        "big": "Infinity",
        "small": "-Infinity",
    }
    assert rf["params"] == {"model": "rf", "depth": "8"}
    assert rf["status"] == "FINISHED" and rf["name"] == "rf"
    assert rf["start"].endswith("+00:00")
    assert set(rf) >= {"run_id", "experiment_id", "tags", "end_time", "lifecycle_stage"}


def test_runs_list_experiment_filter_order_and_max(runs: dict[str, str]) -> None:
    def ids(*args: str) -> list[str]:
        return [r["run_id"] for r in strict_json(invoke("runs", "list", "--json", *args).stdout)]

    assert set(ids("-e", "fraud")) == {runs["base"]}
    assert set(ids("-e", "churn", "-e", "fraud")) == set(runs.values())
    assert ids("-f", "metrics.auc > 0.9") == [runs["rf"]]
    assert ids("--filter", "params.model = 'gb' or status = 'failed'", "-o", "name") == [
        runs["broken"],
        runs["gb"],
    ]
    assert ids("-o", "metrics.auc DESC", "-e", "churn") == [runs["rf"], runs["gb"], runs["broken"]]
    assert ids("--order-by", "params.depth", "--order-by", "metrics.auc") == [
        runs["gb"],
        runs["rf"],
        runs["base"],
        runs["broken"],
    ]
    assert len(ids("--max", "1")) == 1
    out = invoke("runs", "list", "--max", "2").stdout
    assert "2 runs" in out and "more match: raise --max" in out
    invoke("runs", "list", "--max", "0", code=2)


def test_runs_list_single_experiment_drops_the_experiment_column(runs: dict[str, str]) -> None:
    out = invoke("runs", "list", "-e", "churn").stdout
    assert "Experiment" not in out.splitlines()[0]
    assert "3 runs in experiment churn" in out


def test_runs_list_columns(runs: dict[str, str]) -> None:
    out = invoke("runs", "list", "--columns", "metrics.loss,params.model,tags.keel.python").stdout
    header = out.splitlines()[0]
    assert "m.loss" in header and "p.model" in header and "t.keel.python" in header
    assert "m.auc" not in header
    assert "gb" in out and "0.3" in out
    err = invoke("runs", "list", "--columns", "auc", code=2).stderr
    assert "Unknown column 'auc'" in err


def test_runs_list_puts_queried_metrics_first(runs: dict[str, str]) -> None:
    header = invoke("runs", "list", "-o", "metrics.loss").stdout.splitlines()[0]
    assert header.index("m.loss") < header.index("m.auc")


def test_runs_list_fits_80_columns(runs: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "console", Console(width=80, color_system=None))
    out = invoke("runs", "list").stdout
    assert all(len(line) <= 80 for line in out.splitlines())
    for run_id in runs.values():
        assert run_id[:8] in out  # ids are never squeezed
    assert "FINISHED" in out


def test_runs_list_deleted_and_all(runs: dict[str, str]) -> None:
    invoke("runs", "delete", runs["gb"])
    active = strict_json(invoke("runs", "list", "--json").stdout)
    assert runs["gb"] not in {r["run_id"] for r in active}
    deleted = strict_json(invoke("runs", "list", "--deleted", "--json").stdout)
    assert [r["run_id"] for r in deleted] == [runs["gb"]]
    assert len(strict_json(invoke("runs", "list", "--all", "--json").stdout)) == 4
    assert "(deleted)" in invoke("runs", "list", "--all").stdout
    invoke("runs", "list", "--all", "--deleted", code=2)


def test_runs_list_empty() -> None:
    assert "No runs found" in invoke("runs", "list").stdout
    assert strict_json(invoke("runs", "list", "--json").stdout) == []


def test_bad_filter_is_a_usage_error_with_the_position(runs: dict[str, str]) -> None:
    result = invoke("runs", "list", "-f", "metrics.auc >> 0.9", code=2)
    lines = result.stderr.splitlines()
    assert lines[0] == "Error: Invalid filter at position 13: expected a number or a quoted " + (
        "string, found '>'"
    )
    assert lines[1:3] == ["  metrics.auc >> 0.9", "               ^"]  # the caret stays aligned
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_bad_order_by_and_unknown_experiment(runs: dict[str, str]) -> None:
    err = invoke("runs", "list", "-o", "metrics.auc DOWN", code=2).stderr
    assert "Invalid order_by at position" in err
    err = invoke("runs", "list", "-e", "chrun", code=3).stderr
    assert "Experiment 'chrun' not found" in err


# -- runs show ------------------------------------------------------------------------------------
def test_runs_show_by_prefix(runs: dict[str, str]) -> None:
    out = invoke("runs", "show", runs["rf"][:6]).stdout
    assert "Run rf" in out and runs["rf"] in out
    assert "churn (id 1)" in out and "FINISHED" in out
    assert "Params" in out and "model" in out and "depth" in out
    assert "Metrics (latest values)" in out
    assert "0.91" in out and "NaN" in out and "-inf" in out
    assert "notes/readme.txt" in out and "config.json" in out and "5 B" in out
    assert "keel.python" not in out and "keel.* tags hidden" in out
    assert "Failure" not in out
    assert "keel.python" in invoke("runs", "show", runs["rf"], "--all-tags").stdout


def test_runs_show_failed_run_has_traceback(runs: dict[str, str]) -> None:
    out = invoke("runs", "show", runs["broken"]).stdout
    assert "FAILED" in out and "Failure" in out
    assert "RuntimeError: boom: out of memory" in out
    assert "No metrics." in out and "No artifacts." in out


def test_runs_show_json(runs: dict[str, str]) -> None:
    data = strict_json(invoke("runs", "show", runs["rf"][:10].upper(), "--json").stdout)
    assert data["run_id"] == runs["rf"]
    assert data["experiment_name"] == "churn"
    assert data["metrics"]["loss"] == "NaN" and data["metrics"]["big"] == "Infinity"
    assert "keel.python" in data["tags"]  # JSON always has every tag
    artifacts = {a["path"]: a for a in data["artifacts"]}
    assert set(artifacts) == {"config.json", "notes/readme.txt"}
    assert artifacts["notes/readme.txt"]["size"] == 5
    assert len(artifacts["notes/readme.txt"]["digest"]) == 64


def test_unknown_run_id_exits_3_naming_it(runs: dict[str, str]) -> None:
    missing = "0" * 32
    result = invoke("runs", "show", missing, code=3)
    assert result.stderr.startswith(f"Error: Run '{missing}' not found")
    assert "Traceback" not in result.output
    prefix = next(p for p in ("abcdef", "fedcba", "012345") if not runs["rf"].startswith(p))
    err = invoke("runs", "show", prefix, code=3).stderr
    assert f"No run id starts with '{prefix}'" in err


@pytest.mark.parametrize("bad", ["abc", "not-a-run-id", "g" * 32])
def test_malformed_run_id_is_a_usage_error(bad: str) -> None:
    err = invoke("runs", "show", bad, code=2).stderr
    assert f"'{bad}' is not a run id" in err and "at least 6" in err


def test_ambiguous_prefix_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    real_uuid4 = uuid.uuid4
    fixed = [uuid.UUID("abcdef02" + "0" * 24), uuid.UUID("abcdef01" + "0" * 24)]
    client = Client()
    try:
        with monkeypatch.context() as patch:
            patch.setattr(uuid, "uuid4", lambda: fixed.pop() if fixed else real_uuid4())
            first = client.create_run("clash", name="one").run_id
            second = client.create_run("clash", name="two").run_id
    finally:
        client.close()
    assert (first[:8], second[:8]) == ("abcdef01", "abcdef02")
    err = invoke("runs", "show", "abcdef", code=2).stderr
    assert "ambiguous" in err and first in err and second in err
    assert "Run two" in invoke("runs", "show", "abcdef02").stdout


# -- runs compare ---------------------------------------------------------------------------------
def test_runs_compare_table(runs: dict[str, str]) -> None:
    out = invoke("runs", "compare", runs["rf"][:8], runs["gb"][:8]).stdout
    lines = out.splitlines()
    assert "rf" in lines[0] and "gb" in lines[0]
    assert runs["rf"][:8] in lines[1] and runs["gb"][:8] in lines[1]
    rows = {line.split()[0]: line for line in lines[2:] if line.strip()}
    assert rows["model"].split()[1] == "*"  # differing param marked
    assert rows["depth"].split()[1:] == ["8", "8"]  # same value, not marked
    assert out.index("params") < out.index("metrics")
    assert rows["auc"].split()[1:] == ["0.91", "0.88"]
    assert rows["loss"].split()[1:] == ["NaN", "0.3"]
    assert "params whose values differ" in out


def test_runs_compare_json(runs: dict[str, str]) -> None:
    data = strict_json(
        invoke("runs", "compare", runs["rf"], runs["gb"], runs["base"], "--json").stdout
    )
    assert data["runs"] == [runs["rf"], runs["gb"], runs["base"]]
    assert data["names"] == ["rf", "gb", "base"]
    assert data["differing_params"] == ["depth", "model"]
    assert data["params"]["model"] == ["rf", "gb", None]
    assert data["metrics"]["loss"] == ["NaN", 0.3, None]


def test_runs_compare_needs_two_runs(runs: dict[str, str]) -> None:
    assert "at least two runs" in invoke("runs", "compare", runs["rf"], code=2).stderr
    invoke("runs", "compare", runs["rf"], "0" * 32, code=3)


# -- runs delete / restore / reap -----------------------------------------------------------------
def test_runs_delete_and_restore(runs: dict[str, str]) -> None:
    out = invoke("runs", "delete", runs["rf"][:7], runs["gb"]).stdout
    assert f"Deleted run {runs['rf']} (rf)" in out and f"Deleted run {runs['gb']} (gb)" in out
    remaining = strict_json(invoke("runs", "list", "--json").stdout)
    assert {r["run_id"] for r in remaining} == {runs["broken"], runs["base"]}
    # deleted runs still resolve by prefix, so they can be shown and restored
    assert "(deleted)" in invoke("runs", "show", runs["rf"][:7]).stdout
    assert f"Restored run {runs['rf']}" in invoke("runs", "restore", runs["rf"][:7]).stdout
    assert len(strict_json(invoke("runs", "list", "--json").stdout)) == 3


def test_runs_delete_checks_every_id_first(runs: dict[str, str]) -> None:
    err = invoke("runs", "delete", runs["rf"], "0" * 32, code=3).stderr
    assert "0" * 32 in err
    assert len(strict_json(invoke("runs", "list", "--json").stdout)) == 4  # nothing deleted


def test_runs_reap_marks_silent_runs_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    client = Client()
    try:
        run = client.create_run("jobs", name="crashed", heartbeat=True)
        quiet = client.create_run("jobs", name="no-heartbeat")  # never reaped: no heartbeat
    finally:
        client.close()
    assert "No RUNNING run has missed heartbeats for 60 s" in invoke("runs", "reap").stdout
    monkeypatch.setenv("KEEL_HEARTBEAT_TIMEOUT", "0.05")
    time.sleep(0.2)
    out = invoke("runs", "reap").stdout
    assert "Marked 1 run FAILED (no heartbeat for 0.05 s)" in out
    assert run.run_id[:8] in out and "crashed" in out
    assert strict_json(invoke("runs", "reap", "--json").stdout) == []
    shown = strict_json(invoke("runs", "show", run.run_id, "--json").stdout)
    assert shown["status"] == "FAILED" and "stopped sending heartbeats" in shown["failure"]
    assert strict_json(invoke("runs", "show", quiet.run_id, "--json").stdout)["status"] == "RUNNING"


def test_runs_reap_json_and_timeout_option() -> None:
    client = Client()
    try:
        run = client.create_run("jobs", heartbeat=True)
    finally:
        client.close()
    time.sleep(0.2)
    reaped = strict_json(invoke("runs", "reap", "--timeout", "0.05", "--json").stdout)
    assert [r["run_id"] for r in reaped] == [run.run_id]
    assert reaped[0]["status"] == "FAILED"


# -- artifacts ------------------------------------------------------------------------------------
def test_artifacts_ls(runs: dict[str, str]) -> None:
    out = invoke("artifacts", "ls", runs["rf"][:6]).stdout
    assert "notes/readme.txt" in out and "config.json" in out
    assert "5 B" in out and "2 files" in out
    data = strict_json(invoke("artifacts", "ls", runs["rf"], "notes", "--json").stdout)
    assert [a["path"] for a in data] == ["notes/readme.txt"]
    assert data[0]["size"] == 5 and len(data[0]["digest"]) == 64
    assert "No artifacts." in invoke("artifacts", "ls", runs["gb"]).stdout
    err = invoke("artifacts", "ls", runs["rf"], "nope.txt", code=3).stderr
    assert "has no artifact 'nope.txt'" in err


def test_artifacts_get_file_and_folder(runs: dict[str, str], tmp_path: Path) -> None:
    result = invoke("artifacts", "get", runs["rf"][:6], "notes/readme.txt", "--dest", "out")
    local = Path(result.stdout.strip())
    assert local == tmp_path / "out" / "readme.txt"
    assert local.read_text() == "hello"
    assert "Downloaded 1 file (5 B), verified." in result.stderr

    folder = Path(invoke("artifacts", "get", runs["rf"], "notes", "-d", "tree").stdout.strip())
    assert (folder / "readme.txt").read_text() == "hello"

    everything = Path(invoke("artifacts", "get", runs["rf"], "--dest", "all").stdout.strip())
    assert json.loads((everything / "config.json").read_text()) == {"lr": 0.1}
    assert (everything / "notes" / "readme.txt").is_file()

    default = Path(invoke("artifacts", "get", runs["rf"], "config.json").stdout.strip())
    assert default == tmp_path / "config.json"  # default destination: the current folder


def test_artifacts_get_errors(runs: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    assert "is a file" in invoke("artifacts", "get", runs["rf"], "--dest", "a-file", code=2).stderr
    assert "no artifact 'nope'" in invoke("artifacts", "get", runs["rf"], "nope", code=3).stderr


# -- entry points ---------------------------------------------------------------------------------
def test_main_reports_errors_with_exit_codes(
    runs: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["runs", "show", "0" * 32])
    assert exit_info.value.code == 3
    assert capsys.readouterr().err.startswith(f"Error: Run '{'0' * 32}' not found")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["runs", "list", "--json"])
    assert exit_info.value.code == 0
    assert len(strict_json(capsys.readouterr().out)) == 4


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)


def test_console_script_and_python_m(runs: dict[str, str]) -> None:
    proc = _run([sys.executable, "-m", "keel.cli.main", "runs", "list", "--json"])
    assert proc.returncode == 0, proc.stderr
    assert {r["run_id"] for r in strict_json(proc.stdout)} == set(runs.values())
    assert "RuntimeWarning" not in proc.stderr  # the module runs once

    proc = _run([sys.executable, "-m", "keel", "runs", "show", "0" * 32])
    assert proc.returncode == 3
    assert proc.stderr.startswith("Error: Run '")
    assert "Traceback" not in proc.stderr

    script = Path(sys.executable).with_name("keel")
    if not script.exists():
        pytest.skip(f"no installed console script at {script}")
    proc = _run([str(script), "runs", "list", "--json", "-e", "fraud"])
    assert proc.returncode == 0, proc.stderr
    assert [r["run_id"] for r in strict_json(proc.stdout)] == [runs["base"]]
