"""``/api/v1/experiments``: create, get (by id or name), list, get-or-create, lifecycle."""

from __future__ import annotations

from fastapi import APIRouter, Query

from keel.entities import Experiment
from keel.server.deps import StoreDep
from keel.server.schemas import (
    ExperimentCreate,
    ExperimentList,
    ExperimentName,
    ExperimentOut,
    LifecycleUpdate,
    View,
)

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/experiments", tags=["experiments"])


def _out(exp: Experiment) -> ExperimentOut:
    return ExperimentOut.model_validate(exp)


@router.post("", status_code=201)
def create_experiment(body: ExperimentCreate, store: StoreDep) -> ExperimentOut:
    """Create an experiment; 409 if the name is taken (deleted experiments keep theirs)."""
    return _out(
        store.create_experiment(
            body.name,
            artifact_location=body.artifact_location,
            tags=body.tags,
            description=body.description,
        )
    )


@router.get("")
def list_experiments(store: StoreDep, view: View = "active") -> ExperimentList:
    """Experiments in a view (``active``, ``deleted`` or ``all``), oldest first."""
    return ExperimentList(experiments=[_out(e) for e in store.list_experiments(view)])


@router.post("/get-or-create")
def get_or_create_experiment(body: ExperimentName, store: StoreDep) -> ExperimentOut:
    """The experiment with this name, created if needed (safe to retry)."""
    return _out(store.get_or_create_experiment(body.name))


@router.get("/by-name")
def get_experiment_by_name(
    store: StoreDep, name: str = Query(description="the experiment's name")
) -> ExperimentOut:
    """An experiment by name; 404 suggests close names."""
    return _out(store.get_experiment_by_name(name))


@router.get("/{experiment_id}")
def get_experiment(experiment_id: str, store: StoreDep) -> ExperimentOut:
    """An experiment by id."""
    return _out(store.get_experiment(experiment_id))


@router.put("/{experiment_id}/lifecycle")
def set_experiment_lifecycle(
    experiment_id: str, body: LifecycleUpdate, store: StoreDep
) -> ExperimentOut:
    """Soft-delete (``deleted``) or restore (``active``) an experiment."""
    store.set_experiment_lifecycle(experiment_id, body.stage)
    return _out(store.get_experiment(experiment_id))
