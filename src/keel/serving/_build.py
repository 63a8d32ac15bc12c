"""``keel build``: a container image recipe and Kubernetes manifests for one deployment.

:func:`write_bundle` turns a :class:`BuildSpec` (the deployment, the pinned model
versions it serves and their requirements) into a directory ready for
``docker build`` and ``kubectl apply -k``::

    Dockerfile  requirements.txt  .dockerignore  README.md  .keel-build.json
    k8s/deployment.yaml  k8s/service.yaml  k8s/hpa.yaml  k8s/pdb.yaml
    k8s/kustomization.yaml  [wheels/*.whl]

Nothing here talks to Docker or a cluster: the output is plain text, validated
before it is written, and written to a temporary directory that is renamed into
place, so the output directory holds a complete bundle or none.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from keel._fs import exchange
from keel.exceptions import AlreadyExistsError, InvalidSpecError, did_you_mean

__all__ = ["BuildModel", "BuildSpec", "kubernetes_name", "render_bundle", "write_bundle"]

#: UID/GID of the unprivileged user the image runs as (numeric, so Kubernetes can
#: verify ``runAsNonRoot`` without reading /etc/passwd).
UID = 10001
#: Where the server keeps its cache inside the container (an emptyDir in Kubernetes).
KEEL_HOME = "/var/lib/keel"
#: The file that marks a directory as a bundle ``write_bundle(..., overwrite=True)`` may replace.
MARKER = ".keel-build.json"

# A Service name is a DNS-1035 label: lower-case letters, digits and '-', starting
# with a letter, ending with a letter or digit, at most 63 characters.
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_KEEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,249}$")
_PREFIX = "keel-"
# Docker image reference: [host[:port]/]path[:tag][@digest]; path components lower-case.
_IMAGE = re.compile(
    r"^(?:(?P<host>[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?)/)?"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,}))?$"
)
_QUANTITY = re.compile(r"^(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<suffix>[KMGTPE]i|[numkMGTPE]?)$")
_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
}
# Model requirements that are not pip distributions.
_PSEUDO = {"python"}


@dataclass(frozen=True)
class BuildModel:
    """A pinned model version the deployment serves and what it needs to load.

    Args:
        uri: the version, e.g. ``"models:/churn/3"``.
        requirements: the model spec's ``requirements``: ``{"python": "3.11.7",
            "numpy": "2.1.0", ...}``; a value of ``""`` means unpinned.
    """

    uri: str
    requirements: Mapping[str, str]


@dataclass(frozen=True)
class BuildSpec:
    """What ``keel build`` packages: one deployment, its models, and how to run it.

    Kubernetes object names are ``keel-<deployment>`` made DNS-safe (see
    :func:`kubernetes_name`) unless ``k8s_name`` is given. ``wheels`` are local
    wheel files copied into the image and preferred by pip (e.g. a keel built
    from a checkout); ``extra_index_urls`` are added to requirements.txt (e.g.
    the PyTorch CPU index for ``torch==2.5.0+cpu``). ``keel_extras`` are the keel
    extras installed: ``serving`` always, plus the store drivers the Secret's
    URIs need (PostgreSQL and S3 by default).
    """

    deployment: str
    models: tuple[BuildModel, ...]
    keel_version: str
    image: str | None = None
    port: int = 8080
    workers: int = 2
    replicas: int = 2
    min_replicas: int = 2
    max_replicas: int = 10
    target_cpu_percent: int = 70
    cpu_request: str = "500m"
    memory_request: str = "1Gi"
    cpu_limit: str = "2"
    memory_limit: str = "2Gi"
    store_secret: str = "keel-store"
    namespace: str | None = None
    k8s_name: str | None = None
    base_image: str | None = None
    service_port: int = 80
    cache_size: str = "5Gi"
    startup_timeout_seconds: int = 600
    extra_index_urls: tuple[str, ...] = ()
    keel_extras: tuple[str, ...] = ("serving", "postgres", "s3")
    wheels: tuple[Path, ...] = field(default=())


def kubernetes_name(deployment: str) -> str:
    """``keel-<deployment>`` as a DNS-1035 label (valid for every object ``keel build`` writes).

    Upper case is lowered and ``_`` and ``.`` become ``-``; a name that is still not
    a valid label (too long) raises :class:`InvalidSpecError` saying how to fix it.
    """
    if not isinstance(deployment, str) or not _KEEL_NAME.match(deployment):
        raise InvalidSpecError(
            f"Deployment name {deployment!r} is not valid: use letters, digits, '_', '.' or '-' "
            "(starting with a letter or digit), e.g. 'churn'.",
            name=str(deployment),
        )
    safe = re.sub(r"-{2,}", "-", re.sub(r"[_.]", "-", deployment.lower())).strip("-")
    name = _PREFIX + safe
    if not _DNS1035.match(name):
        limit = 63 - len(_PREFIX)
        raise InvalidSpecError(
            f"Deployment name {deployment!r} cannot be made a Kubernetes name: {name!r} has "
            f"{len(name)} characters and a Service name is at most 63 (a DNS-1035 label). "
            f"Use a deployment name of at most {limit} characters, or pass k8s_name "
            "(lower-case letters, digits and '-', starting with a letter).",
            name=deployment,
        )
    return name


@dataclass(frozen=True)
class _Resolved:
    name: str
    image: str
    base_image: str
    python: str
    requirements: tuple[str, ...]
    model_keel: tuple[tuple[str, str], ...]


def _check_int(label: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidSpecError(
            f"BuildSpec.{label} must be a whole number from {low} to {high}, got {value!r}.",
            field=label,
        )
    return value


def _quantity(label: str, value: object) -> Decimal:
    match = _QUANTITY.match(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidSpecError(
            f"BuildSpec.{label} must be a Kubernetes quantity such as '500m', '2', '1Gi' or "
            f"'512Mi', got {value!r}.",
            field=label,
        )
    try:
        number = Decimal(match["num"]) * _SUFFIX[match["suffix"]]
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only numbers
        raise InvalidSpecError(f"BuildSpec.{label}: bad quantity {value!r}.") from exc
    if number <= 0:
        raise InvalidSpecError(f"BuildSpec.{label} must be > 0, got {value!r}.", field=label)
    return number


def _check_spec(spec: BuildSpec) -> str:
    """Validate the scalar fields; return the Kubernetes object name."""
    if spec.k8s_name is not None:
        if not isinstance(spec.k8s_name, str) or not _DNS1035.match(spec.k8s_name):
            raise InvalidSpecError(
                f"BuildSpec.k8s_name {spec.k8s_name!r} is not a DNS-1035 label: use lower-case "
                "letters, digits and '-', starting with a letter and ending with a letter or "
                "digit, at most 63 characters.",
                field="k8s_name",
            )
        if not isinstance(spec.deployment, str) or not _KEEL_NAME.match(spec.deployment):
            kubernetes_name(spec.deployment)  # raises the deployment-name error
        name = spec.k8s_name
    else:
        name = kubernetes_name(spec.deployment)
    if spec.namespace is not None and (
        not isinstance(spec.namespace, str) or not _DNS1123_LABEL.match(spec.namespace)
    ):
        raise InvalidSpecError(
            f"BuildSpec.namespace {spec.namespace!r} is not a valid namespace: use lower-case "
            "letters, digits and '-' (at most 63, starting and ending with a letter or digit).",
            field="namespace",
        )
    if not isinstance(spec.store_secret, str) or not _DNS1123_LABEL.match(spec.store_secret):
        raise InvalidSpecError(
            f"BuildSpec.store_secret {spec.store_secret!r} is not a valid Secret name: use "
            "lower-case letters, digits and '-', e.g. 'keel-store'.",
            field="store_secret",
        )
    _check_int("port", spec.port, 1, 65535)
    _check_int("service_port", spec.service_port, 1, 65535)
    _check_int("workers", spec.workers, 1, 256)
    _check_int("min_replicas", spec.min_replicas, 1, 10_000)
    _check_int("max_replicas", spec.max_replicas, 1, 10_000)
    _check_int("replicas", spec.replicas, 1, 10_000)
    _check_int("target_cpu_percent", spec.target_cpu_percent, 1, 1000)
    _check_int("startup_timeout_seconds", spec.startup_timeout_seconds, 10, 86_400)
    if spec.max_replicas < spec.min_replicas:
        raise InvalidSpecError(
            f"BuildSpec.max_replicas ({spec.max_replicas}) is below min_replicas "
            f"({spec.min_replicas}); the autoscaler needs min_replicas <= max_replicas.",
            field="max_replicas",
        )
    if not spec.min_replicas <= spec.replicas <= spec.max_replicas:
        raise InvalidSpecError(
            f"BuildSpec.replicas ({spec.replicas}) must lie between min_replicas "
            f"({spec.min_replicas}) and max_replicas ({spec.max_replicas}).",
            field="replicas",
        )
    _quantity("cache_size", spec.cache_size)
    for kind in ("cpu", "memory"):
        request = _quantity(f"{kind}_request", getattr(spec, f"{kind}_request"))
        limit = _quantity(f"{kind}_limit", getattr(spec, f"{kind}_limit"))
        if request > limit:
            raise InvalidSpecError(
                f"BuildSpec.{kind}_request ({getattr(spec, f'{kind}_request')}) exceeds "
                f"{kind}_limit ({getattr(spec, f'{kind}_limit')}); Kubernetes rejects a request "
                "above its limit. Raise the limit or lower the request.",
                field=f"{kind}_request",
            )
    for url in spec.extra_index_urls:
        if not isinstance(url, str) or not re.match(r"^https?://[^\s]+$", url):
            raise InvalidSpecError(
                f"BuildSpec.extra_index_urls: {url!r} is not an http(s) URL of a package index.",
                field="extra_index_urls",
            )
    return name


def _python_minor(uri: str, value: str) -> str:
    try:
        release = Version(value).release
    except InvalidVersion:
        release = ()
    if len(release) < 2:
        raise InvalidSpecError(
            f"Model {uri} requires python {value!r}, which is not a version such as '3.11.7'.",
            model=uri,
        )
    return f"{release[0]}.{release[1]}"


def _resolve(spec: BuildSpec, name: str) -> _Resolved:
    """Merge the models' requirements and choose the images."""
    if not isinstance(spec.models, tuple) or not spec.models:
        raise InvalidSpecError(
            f"BuildSpec.models for deployment {spec.deployment!r} is empty: a bundle serves at "
            "least one pinned model version (e.g. BuildModel('models:/churn/3', {...})).",
            field="models",
        )
    try:
        keel_version = Version(spec.keel_version)
    except (InvalidVersion, TypeError) as exc:
        raise InvalidSpecError(
            f"BuildSpec.keel_version {spec.keel_version!r} is not a version such as '0.1.0'.",
            field="keel_version",
        ) from exc

    pins: dict[str, tuple[str, str, str]] = {}  # canonical -> (spelling, version, model uri)
    order: list[str] = []  # canonical names
    pythons: dict[str, str] = {}  # minor -> first model uri
    model_keel: list[tuple[str, str]] = []
    seen_uris: set[str] = set()
    for model in spec.models:
        if not isinstance(model, BuildModel) or not isinstance(model.uri, str) or not model.uri:
            raise InvalidSpecError(
                f"BuildSpec.models holds {model!r}; expected BuildModel(uri, requirements).",
                field="models",
            )
        if model.uri in seen_uris:
            raise InvalidSpecError(f"Model {model.uri} is listed twice.", model=model.uri)
        seen_uris.add(model.uri)
        for raw_name, raw_version in model.requirements.items():
            dist, version = str(raw_name).strip(), str(raw_version).strip()
            if dist.lower() in _PSEUDO:
                if version:
                    pythons.setdefault(_python_minor(model.uri, version), model.uri)
                continue
            pin = f"{dist}=={version}" if version else dist
            try:
                req = Requirement(pin)
                if version:
                    Version(version)
            except (InvalidRequirement, InvalidVersion) as exc:
                raise InvalidSpecError(
                    f"Model {model.uri} has requirement {dist!r}: {version!r}, which is not a "
                    "distribution name with an exact version (e.g. 'numpy': '2.1.0') or '' for "
                    "unpinned. Fix the model's requirements and register a new version.",
                    model=model.uri,
                    requirement=dist,
                ) from exc
            if req.extras or req.marker:  # pragma: no cover - name==version cannot carry them
                raise InvalidSpecError(f"Model {model.uri}: unsupported requirement {pin!r}.")
            key = canonicalize_name(req.name)
            if key == "keel":
                if version:
                    model_keel.append((model.uri, version))
                continue  # the image runs keel_version (pinned below with the serving extra)
            if key not in pins:
                pins[key] = (dist, version, model.uri)
                order.append(key)
                continue
            spelling, current, first_uri = pins[key]
            if not version:
                continue
            if not current:
                pins[key] = (spelling, version, model.uri)
            elif Version(current) != Version(version):
                raise InvalidSpecError(
                    f"Conflicting requirements for {spelling}: model {first_uri} needs "
                    f"{spelling}=={current} but model {model.uri} needs {dist}=={version}. "
                    "One image cannot install both: re-register one model with the other's "
                    "version, or serve them from separate deployments.",
                    requirement=spelling,
                    models=(first_uri, model.uri),
                    versions=(current, version),
                )
    if len(pythons) > 1:
        (minor_a, uri_a), (minor_b, uri_b) = list(pythons.items())[:2]
        raise InvalidSpecError(
            f"Models need different Python versions: {uri_a} was saved with Python {minor_a} "
            f"and {uri_b} with Python {minor_b}. One image has one Python: re-save one model "
            "under the other's Python, or serve them from separate deployments.",
            models=(uri_a, uri_b),
            versions=(minor_a, minor_b),
        )
    python = next(iter(pythons), f"{sys.version_info.major}.{sys.version_info.minor}")

    lines = [f"keel[{','.join(_check_extras(spec.keel_extras))}]=={keel_version}"]
    for canonical in sorted(order):
        spelling, pinned, _ = pins[canonical]
        lines.append(f"{spelling}=={pinned}" if pinned else spelling)

    tag = str(keel_version).replace("+", "-")
    image = spec.image if spec.image is not None else f"{name}:{tag}"
    base = spec.base_image if spec.base_image is not None else f"python:{python}-slim"
    for label, ref in (("image", image), ("base_image", base)):
        if not isinstance(ref, str) or not _IMAGE.match(ref):
            raise InvalidSpecError(
                f"BuildSpec.{label} {ref!r} is not an image reference such as "
                "'registry.example.com/team/keel-churn:0.1.0' (repository path in lower case, "
                "optional :tag and @sha256:digest).",
                field=label,
            )
    return _Resolved(name, image, base, python, tuple(lines), tuple(model_keel))


def _check_extras(extras: object) -> list[str]:
    if not isinstance(extras, tuple) or not all(isinstance(e, str) for e in extras):
        raise InvalidSpecError(
            f"BuildSpec.keel_extras must be a tuple of extra names, got {extras!r}.",
            field="keel_extras",
        )
    names: list[str] = sorted({canonicalize_name(e) for e in extras})
    if "serving" not in names:
        raise InvalidSpecError(
            f"BuildSpec.keel_extras {extras!r} lacks 'serving': the image runs `keel serve`, "
            "which needs it. Add 'serving' (and the store drivers, e.g. 'postgres', 's3').",
            field="keel_extras",
        )
    known = _known_extras()
    for extra in names:
        if not re.match(r"^[a-z0-9]+(-[a-z0-9]+)*$", extra) or (known and extra not in known):
            raise InvalidSpecError(
                f"BuildSpec.keel_extras: keel has no extra {extra!r}."
                f"{did_you_mean(extra, known)} Known extras: {', '.join(sorted(known)) or '?'}.",
                field="keel_extras",
            )
    return names


def _known_extras() -> set[str]:
    """keel's extras from the installed distribution's metadata (empty if unknown)."""
    from importlib import metadata

    try:
        provided = metadata.metadata("keel").get_all("Provides-Extra") or []
    except metadata.PackageNotFoundError:
        return set()
    return {canonicalize_name(e) for e in provided}


def _check_wheels(spec: BuildSpec) -> list[Path]:
    wheels: list[Path] = []
    names: set[str] = set()
    for item in spec.wheels:
        path = Path(item)
        if not path.is_file():
            raise InvalidSpecError(f"Wheel {path} does not exist or is not a file.", path=str(path))
        try:
            dist, version, _, _ = parse_wheel_filename(path.name)
        except InvalidWheelFilename as exc:
            raise InvalidSpecError(
                f"{path} is not a wheel file name (name-version-python-abi-platform.whl): {exc}",
                path=str(path),
            ) from exc
        if dist == "keel" and version != Version(spec.keel_version):
            raise InvalidSpecError(
                f"Wheel {path.name} is keel {version} but the bundle pins keel "
                f"{spec.keel_version}; build the wheel for that version or set keel_version.",
                path=str(path),
            )
        if path.name in names:
            raise InvalidSpecError(f"Wheel {path.name} is listed twice.", path=str(path))
        names.add(path.name)
        wheels.append(path)
    return wheels


# --------------------------------------------------------------------------- rendering


def _labels(spec: BuildSpec, name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/part-of": "keel",
        "app.kubernetes.io/version": _label_value(spec.keel_version),
        "app.kubernetes.io/managed-by": "keel",
    }


def _label_value(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)


def _metadata(spec: BuildSpec, name: str, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if spec.namespace:
        meta["namespace"] = spec.namespace
    meta["labels"] = _labels(spec, name)
    meta.update(extra)
    return meta


def _selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}


def deployment_manifest(spec: BuildSpec, r: _Resolved) -> dict[str, Any]:
    """The apps/v1 Deployment running the server."""
    probe_timeout = 3
    startup_period = 5
    http = "http"
    container: dict[str, Any] = {
        "name": "server",
        "image": r.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": http, "containerPort": spec.port, "protocol": "TCP"}],
        "envFrom": [{"secretRef": {"name": spec.store_secret}}],
        "env": [{"name": "KEEL_HOME", "value": KEEL_HOME}],
        "resources": {
            "requests": {"cpu": spec.cpu_request, "memory": spec.memory_request},
            "limits": {"cpu": spec.cpu_limit, "memory": spec.memory_limit},
        },
        # Slow model loads: liveness and readiness wait until /healthz first answers.
        "startupProbe": {
            "httpGet": {"path": "/healthz", "port": http},
            "initialDelaySeconds": 2,
            "periodSeconds": startup_period,
            "timeoutSeconds": probe_timeout,
            "failureThreshold": -(-spec.startup_timeout_seconds // startup_period),
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": http},
            "initialDelaySeconds": 0,
            "periodSeconds": 5,
            "timeoutSeconds": probe_timeout,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": http},
            "initialDelaySeconds": 0,
            "periodSeconds": 10,
            "timeoutSeconds": probe_timeout,
            "failureThreshold": 3,
        },
        # Give endpoints time to drop the pod before the server stops accepting.
        "lifecycle": {
            "preStop": {"exec": {"command": ["python", "-c", "import time; time.sleep(5)"]}}
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "keel-home", "mountPath": KEEL_HOME},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    models = ",".join(m.uri for m in spec.models)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(
            spec,
            r.name,
            annotations={"keel.dev/deployment": spec.deployment, "keel.dev/models": models},
        ),
        "spec": {
            "replicas": spec.replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": _selector(r.name)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": _labels(spec, r.name),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(spec.port),
                        "prometheus.io/path": "/metrics",
                        "keel.dev/deployment": spec.deployment,
                        "keel.dev/models": models,
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": UID,
                        "runAsGroup": UID,
                        "fsGroup": UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": _selector(r.name)},
                        }
                    ],
                    "containers": [container],
                    "volumes": [
                        {"name": "keel-home", "emptyDir": {"sizeLimit": spec.cache_size}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                    ],
                },
            },
        },
    }


def service_manifest(spec: BuildSpec, r: _Resolved) -> dict[str, Any]:
    """The ClusterIP Service in front of the pods (port ``service_port`` -> ``http``)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(spec, r.name),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(r.name),
            "ports": [
                {"name": "http", "port": spec.service_port, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def hpa_manifest(spec: BuildSpec, r: _Resolved) -> dict[str, Any]:
    """The autoscaling/v2 HorizontalPodAutoscaler on CPU utilisation."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(spec, r.name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": r.name},
            "minReplicas": spec.min_replicas,
            "maxReplicas": spec.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": spec.target_cpu_percent,
                        },
                    },
                }
            ],
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 30}],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": 300,
                    "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
                },
            },
        },
    }


def pdb_manifest(spec: BuildSpec, r: _Resolved) -> dict[str, Any]:
    """A policy/v1 PodDisruptionBudget: node drains evict one pod at a time."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(spec, r.name),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _selector(r.name)}},
    }


def kustomization_manifest(spec: BuildSpec) -> dict[str, Any]:
    """A kustomization applying the other manifests (``kubectl apply -k k8s/``)."""
    doc: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
    }
    if spec.namespace:
        doc["namespace"] = spec.namespace
    doc["resources"] = ["deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml"]
    return doc


def _dockerfile(spec: BuildSpec, r: _Resolved, wheels: list[Path]) -> str:
    cmd = [
        "keel", "serve", "--deployment", spec.deployment, "--host", "0.0.0.0",
        "--port", str(spec.port), "--workers", str(spec.workers),
    ]  # fmt: skip
    check = (
        "import urllib.request; "
        f"urllib.request.urlopen('http://127.0.0.1:{spec.port}/healthz', timeout=4)"
    )
    find_links = "--find-links /tmp/wheels " if wheels else ""
    copy_wheels = "COPY wheels/ /tmp/wheels/\n" if wheels else ""
    models = "\n".join(f"#   {m.uri}" for m in spec.models)
    return f"""\
# Generated by `keel build` (keel {spec.keel_version}) for deployment {spec.deployment!r}.
# Serves:
{models}
# Build: docker build -t {r.image} .
FROM {r.base_image}

# One BLAS/OpenMP thread per process: the server sizes thread pools per worker.
ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    OMP_NUM_THREADS=1 \\
    OPENBLAS_NUM_THREADS=1 \\
    MKL_NUM_THREADS=1 \\
    NUMEXPR_NUM_THREADS=1 \\
    KEEL_HOME={KEEL_HOME}

RUN groupadd --system --gid {UID} keel \\
 && useradd --system --uid {UID} --gid keel --home-dir {KEEL_HOME} --create-home \\
      --shell /usr/sbin/nologin keel

WORKDIR /srv/keel
COPY requirements.txt ./
{copy_wheels}RUN pip install --no-cache-dir {find_links}-r requirements.txt

USER {UID}:{UID}
EXPOSE {spec.port}
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \\
    CMD {json.dumps(["python", "-c", check])}
CMD {json.dumps(cmd)}
"""


def _requirements_txt(spec: BuildSpec, r: _Resolved) -> str:
    head = [
        f"# Generated by `keel build` for deployment {spec.deployment!r} "
        f"(Python {r.python}, base image {r.base_image}).",
        "# Merged from the model versions served:",
        *(f"#   {m.uri}" for m in spec.models),
    ]
    for uri, version in r.model_keel:
        if Version(version) != Version(spec.keel_version):
            head.append(f"# note: {uri} was saved with keel {version}; the image runs keel "
                        f"{spec.keel_version}.")  # fmt: skip
    head += [f"--extra-index-url {url}" for url in spec.extra_index_urls]
    return "\n".join([*head, *r.requirements]) + "\n"


_DOCKERIGNORE = """\
# Only the Dockerfile's inputs belong in the build context.
*
!requirements.txt
!wheels/
"""


def _readme(spec: BuildSpec, r: _Resolved) -> str:
    ns = f" -n {spec.namespace}" if spec.namespace else ""
    models = "\n".join(f"- `{m.uri}`" for m in spec.models)
    return f"""\
# {r.name}: keel deployment `{spec.deployment}`

Generated by `keel build` (keel {spec.keel_version}). Serves:

{models}

1. Build and push the image:

       docker build -t {r.image} .
       docker push {r.image}

2. Create the Secret with the store settings (once per namespace):

       kubectl{ns} create secret generic {spec.store_secret} \\
           --from-literal=KEEL_STORE_URI=postgresql://USER:PASSWORD@HOST/keel \\
           --from-literal=KEEL_ARTIFACT_URI=s3://BUCKET/keel \\
           --from-literal=AWS_ACCESS_KEY_ID=... --from-literal=AWS_SECRET_ACCESS_KEY=...

3. Apply the manifests and wait for readiness:

       kubectl apply -k k8s/
       kubectl{ns} rollout status deployment/{r.name}

The Service `{r.name}` listens on port {spec.service_port}:
`POST /v1/deployments/{spec.deployment}/predict`, `/healthz`, `/readyz`, `/metrics`.
"""


def render_bundle(spec: BuildSpec) -> dict[str, str]:
    """Validate ``spec`` and return the bundle's text files as ``{relative path: text}``."""
    name = _check_spec(spec)
    resolved = _resolve(spec, name)
    wheels = _check_wheels(spec)
    manifests = {
        "k8s/deployment.yaml": deployment_manifest(spec, resolved),
        "k8s/service.yaml": service_manifest(spec, resolved),
        "k8s/hpa.yaml": hpa_manifest(spec, resolved),
        "k8s/pdb.yaml": pdb_manifest(spec, resolved),
        "k8s/kustomization.yaml": kustomization_manifest(spec),
    }
    files = {
        "Dockerfile": _dockerfile(spec, resolved, wheels),
        "requirements.txt": _requirements_txt(spec, resolved),
        ".dockerignore": _DOCKERIGNORE,
        "README.md": _readme(spec, resolved),
    }
    for path, doc in manifests.items():
        files[path] = "# Generated by `keel build`.\n" + to_yaml(doc)
    marker = {
        "generator": "keel build",
        "keel_version": spec.keel_version,
        "deployment": spec.deployment,
        "name": name,
        "image": resolved.image,
        "models": [m.uri for m in spec.models],
        "files": sorted([*files, *(f"wheels/{w.name}" for w in wheels)]),
    }
    files[MARKER] = json.dumps(marker, indent=2) + "\n"
    return files


# --------------------------------------------------------------------------- YAML

_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./-]*$")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, str):
        if _PLAIN.match(value) and value.lower() not in _YAML_WORDS:
            return value
        return json.dumps(value)  # a JSON string is a valid double-quoted YAML scalar
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _yaml_lines(value: object, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{_scalar(key)}:")
                lines.extend(_yaml_lines(item, indent + (2 if isinstance(item, dict) else 0)))
            else:
                empty = "{}" if isinstance(item, dict) else "[]" if isinstance(item, list) else ""
                lines.append(f"{pad}{_scalar(key)}: {empty or _scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list) and item:
                nested = _yaml_lines(item, indent + 2)
                lines.append(f"{pad}- {nested[0].lstrip()}")
                lines.extend(nested[1:])
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(pad + _scalar(value))
    return lines


def to_yaml(doc: Mapping[str, Any]) -> str:
    """Block-style YAML for a manifest (dicts, lists, str, int, bool), keys in insertion order."""
    return "\n".join(_yaml_lines(dict(doc), 0)) + "\n"


# --------------------------------------------------------------------------- writing


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    path.chmod(0o644)


def write_bundle(spec: BuildSpec, out_dir: Path, *, overwrite: bool = False) -> list[Path]:
    """Write the build bundle for ``spec`` into ``out_dir``; return the files written.

    The files are written to a temporary directory beside ``out_dir`` and renamed
    into place, so ``out_dir`` never holds a partial bundle. A non-empty
    ``out_dir`` is refused unless ``overwrite`` is set, and even then only when it
    holds an earlier bundle (it has a ``.keel-build.json``): the whole directory
    is replaced, so other files in it would be lost.
    """
    files = render_bundle(spec)  # validates first: nothing is touched on bad input
    out_dir = Path(out_dir)
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir() or out_dir.is_symlink():
            raise InvalidSpecError(
                f"Cannot write the bundle to {out_dir}: it exists and is not a directory.",
                path=str(out_dir),
            )
        if any(out_dir.iterdir()):
            if not overwrite:
                raise AlreadyExistsError(
                    f"Cannot write the bundle to {out_dir}: the directory is not empty. "
                    "Choose a new directory or pass overwrite=True (--overwrite) to replace "
                    "an earlier bundle.",
                    path=str(out_dir),
                )
            if not (out_dir / MARKER).is_file():
                raise AlreadyExistsError(
                    f"Refusing to overwrite {out_dir}: it is not empty and holds no {MARKER}, "
                    "so it is not a bundle written by keel build, and replacing it would "
                    "delete its files. Choose a new or empty directory.",
                    path=str(out_dir),
                )
    parent = out_dir.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=parent))
    try:
        for rel, text in files.items():
            _write_file(tmp / rel, text.encode("utf-8"))
        for wheel in spec.wheels:
            _write_file(tmp / "wheels" / Path(wheel).name, Path(wheel).read_bytes())
        tmp.chmod(0o755)
        final = out_dir.absolute()
        if not final.exists():
            tmp.rename(final)
        elif not any(final.iterdir()):
            tmp.replace(final)  # rename(2) over an empty directory is atomic
        elif exchange(tmp, final):  # tmp now holds the old bundle, removed below
            pass
        else:
            old = tmp.with_name(tmp.name + "-old")
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    written = [final / rel for rel in files]
    written += [final / "wheels" / Path(w).name for w in spec.wheels]
    return sorted(written)
