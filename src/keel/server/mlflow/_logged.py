"""MLflow 3 logged models, kept on keel runs without a table of their own.

A logged model (``m-<32 hex>``) lives on a keel run, its *host*: the run that
logged it (``source_run_id``), or, for a model logged outside any run, a run
created to carry it (tagged ``keel.mlflow.carrier``, finished when the model is
finalized, hidden from MLflow's run search). Its files are ordinary artifacts of
the host under a folder named after the model (``model/MLmodel`` ...), so keel
shows them like a model logged with ``keel.log_model``; MLflow clients reach them
at ``mlflow-artifacts:/<experiment>/models/<model id>/artifacts``. Its metadata
(name, status, type, tags, extra params) is one JSON tag of the host,
``keel.mlflow.logged_model.<model id>``; ``keel.mlflow.logged_models`` marks hosts
for searches.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keel import _validation as v
from keel.entities import Run, RunStatus
from keel.exceptions import InvalidSpecError
from keel.server.mlflow._common import INTERNAL, num, pairs
from keel.server.mlflow._errors import MlflowError
from keel.store.base import now_ms

if TYPE_CHECKING:
    from keel.tracking.client import Client

__all__ = [
    "CARRIER",
    "LoggedModel",
    "create",
    "get",
    "hidden_paths",
    "on_run",
    "outputs_of",
    "search",
    "update",
]

RECORD = INTERNAL + "logged_model."
MARKER = INTERNAL + "logged_models"
CARRIER = INTERNAL + "carrier"
OUTPUT = INTERNAL + "output."
STATUSES = ("PENDING", "READY", "UPLOAD_FAILED")
_ID = re.compile(r"^m-[0-9a-f]{32}$")
_LOCK = threading.Lock()


@dataclass
class LoggedModel:
    """A logged model: its id, its host run and its metadata record."""

    model_id: str
    run: Run
    record: dict[str, Any]

    @property
    def name(self) -> str:
        """The model's name (``log_model(name=...)``)."""
        return str(self.record["name"])

    @property
    def path(self) -> str:
        """The folder of the host run holding the model's files."""
        return str(self.record["path"])

    @property
    def status(self) -> str:
        """PENDING, READY or UPLOAD_FAILED."""
        return str(self.record.get("status", "PENDING"))

    @property
    def carried(self) -> bool:
        """True when the host run was created for this model (no source run)."""
        return self.run.tags.get(CARRIER) == self.model_id

    @property
    def source_run_id(self) -> str:
        """The run that logged the model, ``""`` for a model logged outside any run."""
        return "" if self.carried else self.run.run_id

    @property
    def experiment_id(self) -> str:
        """The experiment of the model (its host's)."""
        return self.run.experiment_id

    @property
    def artifact_uri(self) -> str:
        """Where MLflow clients read and write the model's files."""
        return f"mlflow-artifacts:/{self.experiment_id}/models/{self.model_id}/artifacts"

    @property
    def tags(self) -> dict[str, str]:
        """The model's tags."""
        return dict(self.record.get("tags", {}))

    @property
    def params(self) -> dict[str, str]:
        """The source run's params and the model's own (MLflow copies the run's in)."""
        own = dict(self.record.get("params", {}))
        return own if self.carried else {**self.run.params, **own}

    def lookup(self, kind: str, key: str) -> Any:
        """A value for search filters and ordering."""
        if kind == "tags":
            return self.tags.get(key)
        if kind == "params":
            return self.params.get(key)
        if kind == "metrics":
            return None if self.carried else self.run.metrics.get(key)
        attributes = {
            "name": self.name,
            "model_id": self.model_id,
            "model_type": self.record.get("model_type") or None,
            "status": self.status,
            "source_run_id": self.source_run_id or None,
            "experiment_id": int(self.experiment_id),
            "creation_timestamp": self.record.get("created"),
            "creation_time": self.record.get("created"),
            "last_updated_timestamp": self.record.get("updated"),
            "last_updated_time": self.record.get("updated"),
        }
        return attributes.get(key)

    def to_json(self) -> dict[str, Any]:
        """The ``LoggedModel`` message."""
        registrations = []
        try:
            registrations = [
                {"name": str(r["name"]), "version": str(r["version"])}
                for r in json.loads(self.tags.get("mlflow.modelVersions", "[]"))
            ]
        except (ValueError, TypeError, KeyError):
            pass
        info = {
            "model_id": self.model_id,
            "experiment_id": self.experiment_id,
            "name": self.name,
            "creation_timestamp_ms": self.record.get("created"),
            "last_updated_timestamp_ms": self.record.get("updated"),
            "artifact_uri": self.artifact_uri,
            "status": f"LOGGED_MODEL_{self.status}",
            "model_type": self.record.get("model_type") or None,
            "source_run_id": self.source_run_id or None,
            "status_message": self.record.get("status_message") or None,
            "tags": pairs(self.tags),
            "registrations": registrations,
        }
        metrics = (
            []
            if self.carried
            else [
                {"key": k, "value": num(val), "timestamp": 0, "step": 0, "run_id": self.run.run_id}
                for k, val in self.run.metrics.items()
            ]
        )
        return {
            "info": {k: val for k, val in info.items() if val is not None},
            "data": {"params": pairs(self.params), "metrics": metrics},
        }


def on_run(run: Run) -> list[LoggedModel]:
    """The logged models hosted by a run."""
    return [
        LoggedModel(key[len(RECORD) :], run, json.loads(value))
        for key, value in run.tags.items()
        if key.startswith(RECORD)
    ]


def hidden_paths(run: Run) -> set[str]:
    """Folders of a run that hold logged models (not part of the run's MLflow artifacts)."""
    return {lm.path for lm in on_run(run)}


def outputs_of(tags: dict[str, str]) -> list[dict[str, Any]]:
    """A run's ``outputs.model_outputs`` (recorded by ``runs/outputs``) from its tags."""
    return [
        {"model_id": key[len(OUTPUT) :], "step": int(value)}
        for key, value in tags.items()
        if key.startswith(OUTPUT)
    ]


def _save(client: Client, lm: LoggedModel) -> None:
    text = json.dumps(lm.record, sort_keys=True, separators=(",", ":"))
    try:
        client.store.log_batch(lm.run.run_id, tags={RECORD + lm.model_id: text, MARKER: "1"})
    except InvalidSpecError as e:
        raise MlflowError(
            f"Logged model {lm.model_id}: its tags and params take {len(text)} characters; keel "
            f"keeps them in one run tag of at most {v.MAX_TAG_VALUE}. ({e.message})"
        ) from None


def create(
    client: Client,
    experiment_id: str,
    name: str,
    source_run_id: str,
    model_type: str,
    params: dict[str, str],
    tags: dict[str, str],
) -> LoggedModel:
    """Create a PENDING logged model on its source run (or on a new carrier run)."""
    model_id = "m-" + uuid.uuid4().hex
    name = name or "model"
    try:
        v.check_artifact_path(name)
    except InvalidSpecError:
        raise MlflowError(f"Invalid logged model name {name!r}: use a relative path.") from None
    if source_run_id:
        run = client.store.get_run(source_run_id)
        taken = hidden_paths(run)
        path = name
        if path in taken or client.store.list_artifacts(run.run_id, path):
            path = f"{name}-{model_id[2:10]}"
        own = {k: val for k, val in params.items() if run.params.get(k) != val}
    else:
        run = client.store.create_run(experiment_id, name=name, tags={CARRIER: model_id})
        path, own = name, dict(params)
    now = now_ms()
    record = {
        "name": name,
        "path": path,
        "status": "PENDING",
        "model_type": model_type,
        "created": now,
        "updated": now,
        "params": own,
        "tags": tags,
    }
    lm = LoggedModel(model_id, run, record)
    _save(client, lm)
    return get(client, model_id)


def get(client: Client, model_id: str, *, allow_deleted: bool = False) -> LoggedModel:
    """A logged model by id; RESOURCE_DOES_NOT_EXIST if unknown (or deleted)."""
    missing = MlflowError(f"Logged model '{model_id}' not found.", "RESOURCE_DOES_NOT_EXIST")
    if not _ID.match(model_id):
        raise missing
    runs, _ = client.store.search_runs(
        [], filter=f"tags.`{RECORD}{model_id}` is not null", view="all", max_results=1
    )
    if not runs:
        raise missing
    lm = LoggedModel(model_id, runs[0], json.loads(runs[0].tags[RECORD + model_id]))
    if lm.record.get("deleted") and not allow_deleted:
        raise missing
    return lm


def search(client: Client, experiment_ids: list[str]) -> list[LoggedModel]:
    """Every (not deleted) logged model of the experiments (all when empty)."""
    found: list[LoggedModel] = []
    token: str | None = None
    while True:
        runs, token = client.store.search_runs(
            experiment_ids,
            filter=f"tags.`{MARKER}` is not null",
            view="all",
            max_results=1000,
            page_token=token,
        )
        found.extend(lm for run in runs for lm in on_run(run) if not lm.record.get("deleted"))
        if token is None:
            return found


def update(client: Client, model_id: str, **changes: Any) -> LoggedModel:
    """Change a logged model's record.

    Keywords: ``status``, ``tags`` (set), ``untag`` (a key to remove), ``params``
    (add), ``deleted``. A carrier run ends when its model is finalized.
    """
    with _LOCK:  # read-modify-write of one tag
        lm = get(client, model_id)
        record = lm.record
        if "status" in changes:
            status = changes["status"]
            if status not in STATUSES:
                raise MlflowError(f"Invalid logged model status {status!r}.")
            record["status"] = status
        if "tags" in changes:
            record["tags"] = {**record.get("tags", {}), **changes["tags"]}
        if "untag" in changes:
            tags = record.get("tags", {})
            if changes["untag"] not in tags:
                raise MlflowError(
                    f"Logged model '{model_id}' has no tag '{changes['untag']}'.",
                    "RESOURCE_DOES_NOT_EXIST",
                )
            del tags[changes["untag"]]
        if "params" in changes:
            record["params"] = {**record.get("params", {}), **changes["params"]}
        if changes.get("deleted"):
            record["deleted"] = True
        record["updated"] = now_ms()
        _save(client, lm)
    if lm.carried and "status" in changes and lm.run.status == RunStatus.RUNNING:
        end = RunStatus.FINISHED if changes["status"] == "READY" else RunStatus.FAILED
        if changes["status"] != "PENDING":
            client.store.end_run(lm.run.run_id, end)
    return get(client, model_id, allow_deleted=True)
