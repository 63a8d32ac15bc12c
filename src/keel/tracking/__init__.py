"""Experiment tracking: runs, params, metrics, tags, artifacts, environment."""

from __future__ import annotations

from keel.tracking.client import Client, RunList
from keel.tracking.fluent import ActiveRun

__all__ = ["ActiveRun", "Client", "RunList"]
