"""Save the benchmark's model as an MLflow model (runs in the pinned MLflow venv).

``python mlflow_prepare.py MODEL.joblib EXAMPLE.json OUT_DIR`` loads the estimator
trained in keel's venv (same scikit-learn version) and writes it with
``mlflow.sklearn.save_model`` (MLflow's default skops format), the signature
inferred from the example records, so ``mlflow models serve -m OUT_DIR`` serves
the very same model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import joblib
import mlflow
import mlflow.sklearn
import pandas as pd

TREE_PREDICTOR = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    model_path, example_path, out = argv
    model = joblib.load(model_path)
    example = pd.DataFrame.from_records(json.loads(Path(example_path).read_text()))
    # MLflow 3.17 saves scikit-learn models with skops, which asks to trust the tree
    # type of HistGradientBoosting models explicitly: the file is our own.
    mlflow.sklearn.save_model(
        model, out, input_example=example, skops_trusted_types=[TREE_PREDICTOR]
    )
    print(json.dumps({"mlflow": mlflow.__version__, "path": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
