"""Reliability on real backends: concurrent writers, SIGKILL, interrupted uploads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import keel
from keel.entities import RunStatus
from keel.objects import open_object_store
from keel.store import SqlStore

CHILD = str(Path(__file__).with_name("_child.py"))
pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(extra)
    return env


def test_eight_processes_log_concurrently_every_point_once(backend_env: str) -> None:
    n, procs = 10_000, 8
    client = keel.get_client()
    exp = client.store.get_or_create_experiment("concurrent")
    shared = client.store.create_run(exp.experiment_id, name="shared").run_id
    own = [client.store.create_run(exp.experiment_id, name=f"p{i}").run_id for i in range(procs)]
    env = _env(KEEL_STORE_URI=backend_env, KEEL_FLUSH_INTERVAL="0.05")
    children = [
        subprocess.Popen(
            [sys.executable, CHILD, "log", own[i], shared, str(i), str(n)],
            env=env,
            stderr=subprocess.PIPE,
        )
        for i in range(procs)
    ]
    for child in children:
        _, err = child.communicate(timeout=240)
        assert child.returncode == 0, err.decode()[-2000:]
    store = SqlStore(backend_env)
    for i, run_id in enumerate(own):
        hist = store.get_metric_history(run_id, "loss")
        assert [m.step for m in hist] == list(range(n)), f"process {i}"
        assert store.get_run(run_id).status is RunStatus.FINISHED
        shared_hist = store.get_metric_history(shared, f"loss_rank{i}")
        assert [m.step for m in shared_hist] == list(range(n))
        assert [m.value for m in shared_hist] == [float(s) for s in range(n)]
    store.close()


def test_sigkill_after_flush_keeps_flushed_points_and_run_is_reaped(backend_env: str) -> None:
    n = 5000
    env = _env(KEEL_STORE_URI=backend_env, KEEL_HEARTBEAT_INTERVAL="0.2", KEEL_FLUSH_INTERVAL="0.2")
    child = subprocess.Popen(
        [sys.executable, CHILD, "hang", "killed", str(n)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    run_id = child.stdout.readline().strip()
    assert len(run_id) == 32
    time.sleep(0.5)  # a few heartbeats and background flushes happen
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    store = SqlStore(backend_env)
    hist = store.get_metric_history(run_id, "m")
    steps = [m.step for m in hist]
    assert steps[:n] == list(range(n))  # every flushed point survived
    assert steps == list(range(len(steps)))  # nothing duplicated or torn
    assert store.get_run(run_id).status is RunStatus.RUNNING  # not yet timed out
    time.sleep(1.2)
    assert store.reap_dead_runs(timeout=1.0) == [run_id]
    run = store.get_run(run_id)
    assert run.status is RunStatus.FAILED
    assert "heartbeat" in (run.failure or "")
    store.close()


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_upload_killed_midway_leaves_no_visible_object(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "local":
        uri, endpoint = str(tmp_path / "objects"), ""
    else:
        uri, endpoint = request.getfixturevalue("s3_bucket"), request.getfixturevalue("s3_endpoint")
    child = subprocess.Popen(
        [sys.executable, CHILD, "upload", uri, endpoint],
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    for _ in range(8):  # several MiB in flight (beyond one multipart part)
        assert child.stdout.readline().strip() == "chunk"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    store = open_object_store(uri, s3_endpoint_url=endpoint or None)
    assert list(store.list_digests()) == []


@pytest.mark.parametrize(
    ("how", "status"), [("crash", RunStatus.FAILED), ("ok", RunStatus.FINISHED)]
)
def test_script_without_with_block_ends_its_run(
    backend_env: str, how: str, status: RunStatus
) -> None:
    out = subprocess.run(
        [sys.executable, CHILD, "script", "scripts", how],
        env=_env(KEEL_STORE_URI=backend_env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (out.returncode != 0) == (how == "crash")
    run_id = out.stdout.strip()
    store = SqlStore(backend_env)
    run = store.get_run(run_id)
    assert run.status is status
    assert run.metrics == {"m": 1.0}  # buffered point flushed on the way out
    if how == "crash":
        assert "boom in the training script" in (run.failure or "")
        assert "boom in the training script" in out.stderr  # the usual traceback still prints
    store.close()
