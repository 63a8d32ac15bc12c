"""Model flavors, safe serialisation formats, signatures and signing.

Load a registered or logged model by URI (hash-verified; see docs/registry.md)::

    model = keel.models.load("models:/churn@champion")

Or work on a local directory::

    from keel.models import save_model, load_model

    spec = save_model(pipeline, "out/model", input_example=X_train[:50])
    model = load_model("out/model")
    model.predict(X_test)              # validated against the signature first

Saving writes the model's files and ``keel-model.json`` (a :class:`ModelSpec`).
Formats are safe by default (skops, xgboost UBJ/JSON, lightgbm text, ONNX,
safetensors); pickle-based ones need ``unsafe_pickle=True`` to save and
``allow_unsafe=True`` to load. Heavy libraries are imported on first use.
See docs/models.md.
"""

from __future__ import annotations

from keel.models._errors import (
    MissingDependencyError,
    SignatureError,
    SignatureVerificationError,
    UnsafeModelWarning,
    UntrustedModelError,
)
from keel.models._flavors import FLAVOR_NAMES, detect_flavor
from keel.models._model import LoadedModel, load_model, save_model
from keel.models._onnx import ParityReport, export_onnx
from keel.models._pyfunc import PythonModel
from keel.models._signature import ColumnSpec, Signature, infer_signature
from keel.models._signing import (
    generate_signing_key,
    key_fingerprint,
    sign_digest,
    verify_digest,
)
from keel.models._sklearn import DEFAULT_TRUSTED_TYPES
from keel.models._spec import SPEC_FILE, UNSAFE_FORMATS, ModelSpec

__all__ = [
    "DEFAULT_TRUSTED_TYPES",
    "FLAVOR_NAMES",
    "SPEC_FILE",
    "UNSAFE_FORMATS",
    "ColumnSpec",
    "LoadedModel",
    "MissingDependencyError",
    "ModelSpec",
    "ParityReport",
    "PythonModel",
    "Signature",
    "SignatureError",
    "SignatureVerificationError",
    "UnsafeModelWarning",
    "UntrustedModelError",
    "detect_flavor",
    "export_onnx",
    "generate_signing_key",
    "infer_signature",
    "key_fingerprint",
    "load",
    "load_model",
    "save_model",
    "sign_digest",
    "verify_digest",
]


def load(
    uri: str, *, allow_unsafe: bool = False, trusted_types: list[str] | None = None
) -> LoadedModel:
    """Load ``models:/name@alias``, ``models:/name/3``, ``models:/name/Production`` or
    ``runs:/<run_id>/model``: every file is checked against the registry's hashes (and
    signature, when verification keys are configured) before anything is deserialised.
    """
    from keel.registry import default

    loaded: LoadedModel = default().load(
        uri, allow_unsafe=allow_unsafe, trusted_types=trusted_types
    )
    return loaded
