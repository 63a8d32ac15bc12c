"""``/api/v1/datasets``: dataset versions (what :mod:`keel.data` records).

A version only names blobs: clients upload them first (``PUT /api/v1/blobs``),
then register the version. The server refuses a version whose manifest,
content or metadata blobs it does not hold (422), so a version never points
at missing data. The acting user (``created_by``, the audit event) is the
authenticated caller with auth on, else the ``X-Keel-User`` header; every
change is audited. Listings are paged like the audit log (``page_token``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from keel.exceptions import IntegrityError, InvalidSpecError
from keel.objects import ObjectStore
from keel.objects.base import check_digest
from keel.server.deps import ActorDep, ObjectsDep, StoreDep
from keel.server.routes.governance import _decode_token, _encode_token
from keel.server.schemas import (
    DatasetList,
    DatasetOut,
    DatasetVersionCreate,
    DatasetVersionList,
    DatasetVersionOut,
)
from keel.store._data import DatasetVersion, SqlData, _digests_in, check_dataset_name
from keel.store.base import Store

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"])

MAX_RESULTS = 10_000
#: Largest manifest the server reads to check the files it lists are stored.
MAX_MANIFEST_BYTES = 512 << 20
#: A version in a path: a number from 1, or ``latest``.
VersionPath = Annotated[str, Path(description="a version number from 1, or latest")]


def _data(store: Store) -> SqlData:
    data: SqlData | None = getattr(store, "data", None)
    if data is None:  # pragma: no cover - create_app always builds a SQL store
        from keel.exceptions import ConfigError

        raise ConfigError("Dataset versions need the server's SQL metadata store.")
    return data


def _out(dv: DatasetVersion) -> DatasetVersionOut:
    return DatasetVersionOut.model_validate(dv)


def _number(name: str, version: str) -> int | None:
    """``latest`` -> None, else a version number from 1."""
    if version == "latest":
        return None
    if not version.isascii() or not version.isdigit() or not 1 <= int(version) < 2**31:
        raise InvalidSpecError(
            f"Version {version!r} of dataset {name!r} is not valid: use a number from 1 or "
            "'latest'.",
            name=name,
            version=version,
        )
    return int(version)


def _manifest_entries(objects: ObjectStore, digest: str) -> list[str]:
    """Content digests a files manifest names (IntegrityError if it is not one)."""
    from keel.data._tree import DataManifest

    size = objects.size(digest)
    if size > MAX_MANIFEST_BYTES:
        raise IntegrityError(
            f"Blob {digest} ({size} bytes) is too large to be a keel dataset manifest (at most "
            f"{MAX_MANIFEST_BYTES} bytes, about 4 million files); nothing was registered. "
            "Register a table with kind 'table', or split the folder into several datasets.",
            digest=digest,
        )
    try:
        manifest = DataManifest.from_bytes(objects.get_bytes(digest))
        return [check_digest(d) for d, _size, _mode in manifest.entries.values()]
    except (ValueError, TypeError, KeyError, AttributeError, InvalidSpecError) as e:
        raise IntegrityError(
            f"Blob {digest} is not a keel dataset manifest ({e}); nothing was registered. "
            "Upload the manifest keel.data wrote, or register a table with kind 'table'.",
            digest=digest,
        ) from None


def _check_blobs(objects: ObjectStore, body: DatasetVersionCreate) -> None:
    """Refuse a version naming a blob this server does not hold."""
    check_digest(body.manifest_digest)
    named = [check_digest(d) for d in _digests_in(body.extra)]
    if not objects.exists(body.manifest_digest):
        what = "manifest" if body.kind == "files" else "Parquet file"
        raise IntegrityError(
            f"Blob {body.manifest_digest} (the version's {what}) is not in the server's object "
            "store; nothing was registered. Upload it first "
            "(keel.data does this before registering a version).",
            digest=body.manifest_digest,
        )
    if body.kind == "files":
        named += _manifest_entries(objects, body.manifest_digest)
    missing = sorted(set(named) - objects.exists_many(named))
    if missing:
        raise IntegrityError(
            f"{len(missing)} blobs the version names are not in the server's object store "
            f"(e.g. {missing[0]}); nothing was registered. Upload them first "
            "(keel.data does this before registering a version).",
            digest=missing[0],
            missing=len(missing),
        )


def _page(
    items: list[Any], page_token: str | None, max_results: int
) -> tuple[list[Any], str | None]:
    offset = _decode_token(page_token)
    more = len(items) > offset + max_results
    return items[offset : offset + max_results], (
        _encode_token(offset + max_results) if more else None
    )


@router.get("")
def list_datasets(
    store: StoreDep,
    max_results: int = Query(1000, ge=1, le=MAX_RESULTS),
    page_token: str | None = None,
) -> DatasetList:
    """Every dataset with its version count and newest version, by name."""
    found, token = _page(_data(store).list_datasets(), page_token, max_results)
    return DatasetList(
        datasets=[DatasetOut.model_validate(d) for d in found], next_page_token=token
    )


@router.get("/{name}/versions")
def list_dataset_versions(
    name: str,
    store: StoreDep,
    max_results: int = Query(1000, ge=1, le=MAX_RESULTS),
    page_token: str | None = None,
) -> DatasetVersionList:
    """Versions of a dataset, oldest first."""
    found, token = _page(_data(store).versions(name), page_token, max_results)
    return DatasetVersionList(versions=[_out(v) for v in found], next_page_token=token)


@router.post("/{name}/versions", status_code=201)
def create_dataset_version(
    name: str,
    body: DatasetVersionCreate,
    store: StoreDep,
    objects: ObjectsDep,
    actor: ActorDep,
) -> DatasetVersionOut:
    """Record the next version (the dataset is created on first use).

    Every blob it names must be stored here already (else 422). Content equal to
    the latest version's returns that version with ``created: false``.
    """
    check_dataset_name(name)
    _check_blobs(objects, body)
    return _out(
        _data(store).create_version(
            name,
            kind=body.kind,
            manifest_digest=body.manifest_digest,
            file_count=body.file_count,
            total_bytes=body.total_bytes,
            actor=actor,
            run_id=body.run_id,
            message=body.message,
            extra=body.extra,
            reuse_identical=body.reuse_identical,
        )
    )


@router.get("/{name}/versions/{version}")
def get_dataset_version(name: str, version: VersionPath, store: StoreDep) -> DatasetVersionOut:
    """One version (``latest`` for the newest)."""
    return _out(_data(store).get_version(name, _number(name, version)))


@router.delete("/{name}/versions/{version}", status_code=204)
def delete_dataset_version(
    name: str,
    version: VersionPath,
    store: StoreDep,
    actor: ActorDep,
    reason: str | None = Query(None, max_length=65_536, pattern=r"^[^\x00]*$"),
) -> None:
    """Delete one version (its blobs stay until ``keel data gc`` on the server)."""
    number = _number(name, version)
    if number is None:
        raise InvalidSpecError(
            f"Delete a numbered version of dataset {name!r}, not 'latest'.", name=name
        )
    _data(store).delete_version(name, number, actor=actor, reason=reason)
