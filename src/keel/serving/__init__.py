"""Model serving: deployments, traffic policies, the model server and batch scoring.

Deploy a registered model and change it without risk::

    from keel import serving

    serving.create_deployment("churn", "models:/churn@champion")
    serving.canary("churn", "models:/churn/4", steps=(0.05, 0.25, 0.5, 1.0))
    serving.status("churn")          # per version: requests, errors, p50/p99, accuracy
    serving.rollback("churn", reason="p99 too high")

then ``keel serve`` answers ``POST /v1/deployments/churn/predict``. See docs/serving.md.
"""

from __future__ import annotations

from typing import Any

from keel.serving._build import BuildModel, BuildSpec, write_bundle
from keel.serving._deploy import Deployment, Deployments, VersionStats
from keel.serving._policy import KINDS, Guards, Policy
from keel.serving._stats import DECISIONS, ABReport, ArmStats, SampleSize, analyze, sample_size

__all__ = [
    "DECISIONS",
    "KINDS",
    "ABReport",
    "ArmStats",
    "BuildModel",
    "BuildSpec",
    "Deployment",
    "Deployments",
    "Guards",
    "Policy",
    "SampleSize",
    "VersionStats",
    "ab",
    "ab_status",
    "analyze",
    "bluegreen",
    "canary",
    "create_deployment",
    "get_deployment",
    "history",
    "list_deployments",
    "promote",
    "rollback",
    "sample_size",
    "set_traffic",
    "shadow",
    "status",
    "switch",
    "tick",
    "write_bundle",
]


def _d() -> Deployments:
    return Deployments()


def create_deployment(name: str, model_uri: str, **options: Any) -> Deployment:
    """Create a deployment serving one registered model version (see :meth:`Deployments.create`)."""
    return _d().create(name, model_uri, **options)


def get_deployment(name: str) -> Deployment:
    """A deployment and its current policy."""
    return _d().get(name)


def list_deployments() -> list[Deployment]:
    """Every deployment."""
    return _d().list_deployments()


def canary(name: str, model_uri: str, **options: Any) -> Deployment:
    """Start a canary of ``model_uri`` (see :meth:`Deployments.canary`)."""
    return _d().canary(name, model_uri, **options)


def shadow(name: str, model_uri: str, **options: Any) -> Deployment:
    """Mirror traffic to ``model_uri`` (see :meth:`Deployments.shadow`)."""
    return _d().shadow(name, model_uri, **options)


def ab(name: str, model_uri: str, **options: Any) -> Deployment:
    """Start an A/B test against ``model_uri`` (see :meth:`Deployments.ab`)."""
    return _d().ab(name, model_uri, **options)


def bluegreen(name: str, model_uri: str, **options: Any) -> Deployment:
    """Stage ``model_uri`` as the idle colour (see :meth:`Deployments.bluegreen`)."""
    return _d().bluegreen(name, model_uri, **options)


def switch(name: str, **options: Any) -> Deployment:
    """Blue-green: send all traffic to the idle colour."""
    return _d().switch(name, **options)


def set_traffic(name: str, share: float, **options: Any) -> Deployment:
    """Set the candidate's share of traffic (0..1)."""
    return _d().set_traffic(name, share, **options)


def promote(name: str, **options: Any) -> Deployment:
    """Make the candidate the only version."""
    return _d().promote(name, **options)


def rollback(name: str, **options: Any) -> Deployment:
    """Undo the last change of traffic."""
    return _d().rollback(name, **options)


def history(name: str) -> list[Any]:
    """Every revision of a deployment, oldest first."""
    return _d().history(name)


def status(name: str) -> dict[str, Any]:
    """The policy and what each version did since it started."""
    return _d().status(name)


def ab_status(name: str, **options: Any) -> Any:
    """The A/B test's lift, intervals and decision (an ``ABReport``)."""
    return _d().ab_status(name, **options)


def tick(name: str) -> str | None:
    """Judge a running canary once (servers do this every second)."""
    return _d().tick(name)
