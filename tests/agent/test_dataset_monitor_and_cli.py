"""Dataset monitors (each new version checked once), email alerts through a real SMTP
conversation on loopback, and the `keel monitor` / `keel agent` commands."""

from __future__ import annotations

import json
import socketserver
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import keel
import keel.data
from keel.cli import main as cli
from keel.monitoring import Agent, AlertSpec, Monitors
from tests.serving.conftest import make_data

runner = CliRunner()


class SmtpSink:
    """A minimal SMTP server on 127.0.0.1 that keeps every message it is sent."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.wfile.write(b"220 sink ESMTP\r\n")
                data: list[str] = []
                in_data = False
                for raw in self.rfile:
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if in_data:
                        if line == ".":
                            sink.messages.append("\n".join(data))
                            in_data, data = False, []
                            self.wfile.write(b"250 queued\r\n")
                        else:
                            data.append(line)
                        continue
                    verb = line.split(" ", 1)[0].upper()
                    if verb == "DATA":
                        in_data = True
                        self.wfile.write(b"354 go on\r\n")
                    elif verb == "QUIT":
                        self.wfile.write(b"221 bye\r\n")
                        return
                    elif verb == "EHLO":
                        self.wfile.write(b"250 sink\r\n")
                    else:
                        self.wfile.write(b"250 ok\r\n")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_dataset_monitor_checks_each_new_version_once_and_emails(keel_home: Path) -> None:
    X, _ = make_data(3000, seed=1)
    keel.data.log_table(X, name="features")
    sink = SmtpSink()
    try:
        Monitors().create(
            "features-drift", dataset="features", reference="features@1", every_seconds=0.01,
            min_rows=100,
            alert=AlertSpec(targets=(f"mailto:ops@example.com?smtp=127.0.0.1:{sink.port}",)),
        )  # fmt: skip
        agent = Agent(name="a")
        assert agent.run_once()["evaluated"] == {"features-drift": "ok"}  # v1 vs itself
        assert agent.run_once()["evaluated"] == {"features-drift": "unchanged"}
        shifted, _ = make_data(3000, seed=2)
        shifted["f4"] = shifted["f4"] * 2 + 1
        keel.data.log_table(shifted, name="features")
        result = agent.run_once()
        assert result["evaluated"] == {"features-drift": "drift"} and result["delivered"] == 1
        [run, *_] = Monitors().runs("features-drift")
        assert run.summary["dataset_version"] == "features@2"
        assert "f4" in run.summary["drifted_columns"] and "f0" not in run.summary["drifted_columns"]
        [message] = sink.messages
        assert "To: ops@example.com" in message and "Data drift in dataset features@2" in message
    finally:
        sink.close()


def test_dataset_monitor_cannot_retrain(keel_home: Path) -> None:
    from keel.exceptions import InvalidSpecError
    from keel.monitoring import MonitorSpec, RetrainSpec

    with pytest.raises(InvalidSpecError, match="dataset monitor can only alert"):
        MonitorSpec(
            reference_digest="0" * 64, dataset="features",
            retrain=RetrainSpec(entry_point="m:f", model="x", gate_dataset="h", label="y"),
        )  # fmt: skip
    with pytest.raises(InvalidSpecError, match="either a deployment or a dataset"):
        MonitorSpec(reference_digest="0" * 64)


def _invoke(*args: str, code: int = 0) -> Any:
    result = runner.invoke(cli.app, list(args))
    assert result.exit_code == code, result.output
    return result


def test_monitor_and_agent_commands(keel_home: Path, tmp_path: Path) -> None:
    X, _ = make_data(2000, seed=1)
    keel.data.log_table(X, name="features")
    Y, _ = make_data(2000, seed=5)
    Y["f9"] = Y["f9"] + 2.0
    keel.data.log_table(Y, name="features")
    _invoke(
        "monitor", "create", "fm", "--dataset", "features", "--reference", "features@1",
        "--every", "0.01", "--min-rows", "100",
    )  # fmt: skip
    listed = json.loads(_invoke("monitor", "list", "--json").stdout)
    assert listed[0]["name"] == "fm" and listed[0]["dataset"] == "features"
    once = json.loads(_invoke("agent", "--once").stdout)
    assert once["evaluated"] == {"fm": "drift"}
    runs = json.loads(_invoke("monitor", "runs", "fm", "--json").stdout)
    assert runs[0]["status"] == "drift" and "f9" in runs[0]["summary"]["drifted_columns"]
    out = tmp_path / "r.html"
    _invoke("monitor", "report", "fm", "-o", str(out))
    assert out.read_text().lstrip().lower().startswith("<!doctype html")
    report = json.loads(_invoke("monitor", "report", "fm", "--json").stdout)
    columns = {c["name"]: c for c in report["columns"]}
    assert report["drifted"] is True and columns["f9"]["drifted"] is True
    # an ad-hoc report between two versions, no monitor needed
    adhoc = json.loads(
        _invoke(
            "monitor", "report", "--reference", "features@1", "--current", "features@2", "--json"
        ).stdout
    )
    by_name = {c["name"]: c for c in adhoc["columns"]}
    assert by_name["f9"]["drifted"] is True and by_name["f0"]["drifted"] is False
    alerts = json.loads(_invoke("monitor", "alerts", "--json").stdout)
    assert alerts[0]["state"] == "delivered" and alerts[0]["payload"]["target"] == "log"
    _invoke("monitor", "pause", "fm")
    assert json.loads(_invoke("monitor", "list", "--json").stdout)[0]["enabled"] is False
    _invoke("monitor", "report", code=2)  # neither a name nor --reference/--current
    _invoke("monitor", "runs", "nope", code=3)
