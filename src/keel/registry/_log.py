"""``keel.log_model``: save a model into the active run, optionally register it."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from keel.entities import ModelVersion
from keel.exceptions import InvalidSpecError

__all__ = ["LoggedModel", "log_input", "log_model"]


class LoggedModel:
    """Where a logged model lives: ``uri`` (``runs:/<id>/<path>``) and the registered version."""

    def __init__(self, uri: str, spec: dict[str, Any], version: ModelVersion | None) -> None:
        self.uri = uri
        self.spec = spec
        self.version = version

    def __repr__(self) -> str:
        reg = f", registered as {self.version.uri}" if self.version else ""
        return f"<LoggedModel {self.uri} ({self.spec.get('flavor')}){reg}>"


def log_model(
    model: Any,
    name: str = "model",
    *,
    input_example: Any = None,
    signature: Any = None,
    registered_model_name: str | None = None,
    flavor: str | None = None,
    unsafe_pickle: bool = False,
    trusted_types: Sequence[str] | None = None,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
    signing_key: bytes | str | None = None,
    **save_kwargs: Any,
) -> LoggedModel:
    """Save ``model`` in a safe format under artifact path ``name`` of the active run.

    Args:
        model: a scikit-learn, XGBoost, LightGBM, PyTorch, ONNX or Python model.
        name: artifact folder in the run (``runs:/<run_id>/<name>``).
        input_example: a few rows; the signature is inferred from them.
        signature: an explicit :class:`keel.models.Signature` instead.
        registered_model_name: also register it as the next version of this model.
        flavor: force a flavor instead of detecting it.
        unsafe_pickle: allow pickle-based formats (recorded and warned about).
        trusted_types: extra types the skops loader may construct.
        description: description of the registered version.
        tags: tags of the registered version.
        signing_key: Ed25519 private key (PEM bytes or file) to sign the registered version.
        **save_kwargs: passed to :func:`keel.models.save_model` (e.g. ``model_config``).
    """
    from keel import _validation as v
    from keel.models import save_model
    from keel.registry._api import Registry
    from keel.tracking import fluent

    run = fluent.active_run()
    if run is None:
        raise InvalidSpecError(
            "log_model needs an active run: call it inside `with keel.start_run(...):`."
        )
    path = v.check_artifact_path(name)
    with tempfile.TemporaryDirectory(prefix="keel-model-") as tmp:
        folder = Path(tmp) / "model"
        spec = save_model(
            model,
            folder,
            flavor=flavor,
            input_example=input_example,
            signature=signature,
            unsafe_pickle=unsafe_pickle,
            trusted_types=list(trusted_types) if trusted_types else None,
            **save_kwargs,
        )
        run.client.log_artifacts(run.run_id, folder, path)
    uri = f"runs:/{run.run_id}/{path}"
    version = None
    if registered_model_name is not None:
        version = Registry(run.client).register_model(
            uri, registered_model_name, description=description, tags=tags, signing_key=signing_key
        )
    spec_dict = spec.to_dict()
    return LoggedModel(uri, spec_dict, version)


def log_input(source: str, relation: str = "input") -> None:
    """Record that the active run read ``source`` (e.g. ``"dataset:churn@3"``) for lineage."""
    from keel.registry._api import Registry
    from keel.tracking import fluent

    run = fluent.active_run()
    if run is None:
        raise InvalidSpecError("log_input needs an active run: call it inside keel.start_run().")
    if ":" not in source:
        raise InvalidSpecError(
            f"Name the input as 'kind:id', e.g. 'dataset:churn@3', got {source!r}."
        )
    Registry(run.client).add_lineage(source, f"run:{run.run_id}", relation)
