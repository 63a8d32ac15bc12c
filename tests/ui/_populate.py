"""Fill a fresh KEEL_HOME with what the UI tests look at (run as a script by the fixture).

Through the public Python API only: experiments with a sweep of runs and metric
histories, a training run with text, JSON, YAML, CSV, image and Parquet
artifacts and a git checkout, a failed run, a parent with a child, a registered
model with two versions (one signed), an alias, protection and two pending
requests (one by "dev" that "ann" can approve, one by "ann" herself).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pandas as pd

from keel.models import PythonModel

SWEEP = 60


class ThresholdModel(PythonModel):
    """Stands in for a trained model (the python flavor saves it by reference, no pickle)."""

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold

    def predict(self, df: pd.DataFrame) -> Any:
        return (df["spend"] > self.threshold).to_numpy()


def _png(width: int = 96, height: int = 64) -> bytes:
    """A small gradient PNG, written by hand (no imaging library needed)."""
    rows = b"".join(
        b"\0" + b"".join(bytes((x * 255 // width, y * 255 // height, 160)) for x in range(width))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _git_checkout(where: Path) -> None:
    git = ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.com"]
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=where, check=True)
    (where / "train.py").write_text("print('train')\n")
    subprocess.run([*git, "add", "train.py"], cwd=where, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], cwd=where, check=True)
    (where / "train.py").write_text("print('train v2')\n")


def main() -> None:
    import keel
    import keel.registry
    from keel.entities import Metric
    from keel.models import generate_signing_key
    from keel.registry import Registry

    # saved by reference: the class must be importable under its module name
    model_cls = importlib.import_module("tests.ui._populate").ThresholdModel
    home = Path(os.environ["KEEL_HOME"])
    work = home.parent / "work"
    _git_checkout(work)
    os.chdir(work)
    client = keel.get_client()

    # a sweep: final auc of sweep-i is 0.6 + 0.005 i (sweep-59 is best), 20 steps each
    for i in range(SWEEP):
        made = client.create_run(
            "churn", name=f"sweep-{i:02d}", tags={"team": "growth" if i % 2 else "risk"}
        )
        client.log_params(
            made.run_id,
            {"model": ("rf", "xgb", "lgbm")[i % 3], "lr": f"{0.01 * (1 + i % 4):.2f}",
             "depth": str(3 + i % 5)},
        )  # fmt: skip
        final = 0.6 + 0.005 * i
        points = []
        for step in range(20):
            shape = 1 - math.exp(-(step + 1) / 4)
            points.append(Metric("auc", 0.5 + (final - 0.5) * shape / (1 - math.exp(-5)), step))
            points.append(Metric("loss", 1.2 - 0.6 * shape - 0.002 * i, step))
        points.append(Metric("auc", final, 20))
        client.log_batch(made.run_id, metrics=points)
        client.end_run(made.run_id)

    X = pd.DataFrame({"tenure": [1.0, 5, 9, 2, 7, 3, 8, 4], "spend": [9.0, 3, 1, 8, 2, 7, 1, 6]})
    private, _ = generate_signing_key()
    with keel.start_run(experiment="churn", run_name="train-best", tags={"team": "risk"}) as run:
        keel.log_input("dataset:churn@3")
        keel.log_params({"model": "logreg", "C": "1.0", "lr": "0.05"})
        for epoch in range(30):
            keel.log_metric("auc", 0.7 + 0.2 * (1 - math.exp(-epoch / 6)), step=epoch)
            keel.log_metric("loss", 0.9 * math.exp(-epoch / 8), step=epoch)
        keel.log_text("Trained on churn@3.\nNotes: <b>not bold</b>\n", "notes.txt")
        keel.log_dict({"model": "logreg", "features": ["tenure", "spend"]}, "config.json")
        keel.log_dict({"epochs": 30, "optimizer": "lbfgs"}, "params.yaml")
        keel.log_text("id,score,label\n1,0.91,1\n2,0.12,0\n3,0.77,1\n", "eval/predictions.csv")
        run.client.log_bytes(run.run_id, _png(), "plots/roc.png")
        frame = pd.DataFrame({"customer": [f"c{i:03d}" for i in range(120)],
                              "score": [i / 120 for i in range(120)]})  # fmt: skip
        keel.log_table(frame, "sample.parquet")
        keel.log_model(
            model_cls(5.0),
            "model",
            input_example=X.head(3),
            model_config={"threshold": 5.0},
            registered_model_name="churn",
            signing_key=private,
        )
        with keel.start_run(run_name="fold-1", nested=True):
            keel.log_metric("auc", 0.88)
    with keel.start_run(experiment="churn", run_name="train-v2") as run:
        keel.log_input("dataset:churn@3")
        keel.log_params({"model": "logreg", "C": "0.5", "lr": "0.05"})
        for epoch in range(30):
            keel.log_metric("auc", 0.72 + 0.21 * (1 - math.exp(-epoch / 6)), step=epoch)
        keel.log_model(model_cls(4.0), "model", input_example=X.head(3),
                       model_config={"threshold": 4.0}, registered_model_name="churn",
                       description="threshold 4")  # fmt: skip
    try:
        with keel.start_run(experiment="churn", run_name="broken"):
            keel.log_param("model", "rf")
            raise RuntimeError("out of memory while fitting fold 3")
    except RuntimeError:
        pass
    for i in range(4):
        with keel.start_run(experiment="vision", run_name=f"resnet-{i}", log_environment=False):
            keel.log_metric("top1", 0.7 + i / 50)
    client.create_experiment("empty-exp", description="nothing here yet")

    reg = keel.registry.default()  # acting as "dev"
    reg.update_model(
        "churn",
        description="Churn classifier",
        purpose="Rank customers for retention offers.",
        limitations="Trained on EU customers only.",
    )
    reg.set_alias("churn", "champion", 1)
    reg.grant("ann", "approver")
    reg.set_protection("churn", stages=["Production"], aliases=["champion"])
    reg.request("churn", 2, stage="Production", comment="AUC +3 pts on churn@3")
    ann = Registry(keel.Client(dataclasses.replace(client.settings, user="ann")))
    ann.request("churn", 2, alias="champion", comment="make v2 the champion")
    keel.flush()
    json.dump({"ok": True}, sys.stdout)


if __name__ == "__main__":
    main()
