"""MLflow's proxied artifact store (``/api/2.0/mlflow-artifacts``) over keel's run artifacts.

MLflow clients see ``mlflow-artifacts:/`` URIs (see ``experiment_json``) and so send
every upload and download here:

* ``<experiment>/<run id>/artifacts/<path>``: the run's artifacts, minus the folders
  holding logged models (MLflow 3 keeps models apart from run artifacts);
* ``<experiment>/models/<model id>/artifacts/<path>``: a logged model's files,
  stored in its host run's folder (see ``_logged``).

Uploads are streamed to a spool file, stored content-addressed and recorded on
the run; like MLflow, uploads to a finished run are accepted. Also serves
``/api/3.0/mlflow/server-info``, where MLflow clients learn that this server does
plain (not multipart) uploads and downloads.
"""

from __future__ import annotations

import posixpath
import tempfile
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from keel import _validation as v
from keel.entities import ArtifactInfo, Run
from keel.exceptions import InvalidSpecError
from keel.server.mlflow import _logged
from keel.server.mlflow._common import Fields, fields, get_client, run_id_of, write_to_run
from keel.server.mlflow._errors import MlflowError, MlflowRoute
from keel.tracking.client import Client

__all__ = ["router", "v3_router"]

router = APIRouter(route_class=MlflowRoute)
v3_router = APIRouter(route_class=MlflowRoute)

_SPOOL = 8 * 1024 * 1024  # upload bytes kept in memory before spilling to disk


@dataclass
class Target:
    """Where an mlflow-artifacts path points in keel: a run and a path in its artifacts."""

    run: Run
    path: str
    hidden: set[str] = field(default_factory=set)

    def visible(self, path: str) -> bool:
        """False for files of logged models seen through the run's own artifacts."""
        return not any(path == h or path.startswith(h + "/") for h in self.hidden)


def _missing(path: str) -> MlflowError:
    return MlflowError(f"No artifact at '{path}'.", "RESOURCE_DOES_NOT_EXIST")


def resolve(client: Client, path: str) -> Target:
    """Map ``<exp>/<run>/artifacts/...`` or ``<exp>/models/<id>/artifacts/...`` to keel."""
    parts = path.strip("/").split("/")
    try:
        if len(parts) >= 4 and parts[1] == "models" and parts[3] == "artifacts":
            lm = _logged.get(client, parts[2])
            rest = v.check_artifact_path("/".join(parts[4:]), allow_empty=True)
            if lm.experiment_id != parts[0]:
                raise _missing(path)
            return Target(lm.run, posixpath.join(lm.path, rest) if rest else lm.path)
        if len(parts) >= 3 and parts[2] == "artifacts":
            run = client.store.get_run(run_id_of(parts[1]))
            if run.experiment_id != parts[0]:
                raise _missing(path)
            rest = v.check_artifact_path("/".join(parts[3:]), allow_empty=True)
            return Target(run, rest, _logged.hidden_paths(run))
    except InvalidSpecError as e:
        raise MlflowError(f"Invalid artifact path '{path}': {e.message}") from None
    raise MlflowError(
        f"'{path}' is not an artifact path of this server: expected <experiment>/<run id>/"
        "artifacts/<path> or <experiment>/models/<model id>/artifacts/<path>.",
        "RESOURCE_DOES_NOT_EXIST",
    )


def _listing(client: Client, target: Target) -> list[dict[str, Any]]:
    base = target.path
    children: dict[str, dict[str, Any]] = {}
    for info in client.store.list_artifacts(target.run.run_id, base):
        if not target.visible(info.path):
            continue
        if info.path == base:  # a file: MLflow lists nothing under it
            return []
        rel = info.path[len(base) + 1 :] if base else info.path
        name, _, rest = rel.partition("/")
        if rest:
            children.setdefault(name, {"path": name, "is_dir": True})
        else:
            children[name] = {"path": name, "is_dir": False, "file_size": info.size}
    return [children[k] for k in sorted(children)]


@router.get("/artifacts")
def list_artifacts(f: Fields = Depends(fields), c: Client = Depends(get_client)) -> dict[str, Any]:
    """Direct children of a folder (names relative to it)."""
    files = _listing(c, resolve(c, f.text("path")))
    return {"files": files} if files else {}


@router.get("/artifacts/{path:mlflow_path}")
def download_artifact(path: str, c: Client = Depends(get_client)) -> StreamingResponse:
    """Stream one file, verified against its hash as it is read."""
    target = resolve(c, path)
    for info in c.store.list_artifacts(target.run.run_id, target.path):
        if info.path == target.path and target.visible(info.path):
            return StreamingResponse(  # octet-stream: sent as stored, never re-compressed
                c.objects.iter_verified(info.digest),
                media_type="application/octet-stream",
                headers={"Content-Length": str(info.size)},
            )
    raise _missing(path)


def _store_upload(c: Client, path: str, spool: Any) -> None:
    target = resolve(c, path)
    if not target.path:
        raise MlflowError(f"Cannot upload to '{path}': name a file.")
    spool.seek(0)
    ref = c.objects.put_stream(spool)
    info = ArtifactInfo(target.path, ref.digest, ref.size)
    run_id = target.run.run_id
    write_to_run(c, run_id, lambda: c.store.record_artifacts(run_id, [info]))


@router.put("/artifacts/{path:mlflow_path}")
async def upload_artifact(
    path: str, request: Request, c: Client = Depends(get_client)
) -> dict[str, Any]:
    """Store one file (streamed) as an artifact of the run or logged model."""
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL) as spool:
        async for chunk in request.stream():
            spool.write(chunk)  # memory, or a local temp file past _SPOOL bytes
        await run_in_threadpool(_store_upload, c, path, spool)
    return {}


@v3_router.get("/server-info")
def server_info() -> dict[str, Any]:
    """What this server supports, as MLflow clients ask before artifact transfers."""
    return {
        "store_type": "keel",
        "workspaces_enabled": False,
        "trace_archival_enabled": False,
        "multipart_uploads_enabled": False,
        "multipart_downloads_enabled": False,
        "presigned_upload_run_id_supported": False,
        "presigned_upload_model_id_supported": False,
        "features_enabled": {"gateway": False},
    }
