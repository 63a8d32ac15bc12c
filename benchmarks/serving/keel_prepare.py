"""Register the benchmark's model in keel and deploy it (runs in keel's venv).

``KEEL_HOME=<dir> python keel_prepare.py MODEL.joblib EXAMPLE.json`` loads the
estimator the orchestrator trained, logs it with ``keel.log_model`` (registered as
``bench``, version 1, signature from the example records) and creates the
single-version deployment ``bench`` that ``keel serve`` then answers at
``POST /v1/deployments/bench/predict``, and ``bench-nobatch``, the same version with
micro-batching off (``max_batch_size=1``), to show what batching is worth.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import joblib
import pandas as pd

import keel
from keel.serving import create_deployment

MODEL_NAME = "bench"
#: A second deployment of the same version that predicts every request alone.
NO_BATCH_DEPLOYMENT = "bench-nobatch"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    model_path, example_path = argv
    model = joblib.load(model_path)
    example = pd.DataFrame.from_records(json.loads(Path(example_path).read_text()))
    with keel.start_run():
        info = keel.log_model(
            model, "model", input_example=example, registered_model_name=MODEL_NAME
        )
    version = info.version.version if info.version is not None else 1
    create_deployment(MODEL_NAME, f"models:/{MODEL_NAME}/{version}")
    create_deployment(NO_BATCH_DEPLOYMENT, f"models:/{MODEL_NAME}/{version}", max_batch_size=1)
    print(json.dumps({"keel": keel.__version__, "model_uri": info.uri, "version": version}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
