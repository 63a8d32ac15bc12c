"""The model registry API: register, version, alias, stage, approve, load, sign, cards."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.entities import ApprovalRequest, AuditEvent, ModelVersion, RegisteredModel
from keel.exceptions import IntegrityError, InvalidSpecError, NotFoundError
from keel.objects import BlobRef, Manifest, hash_file

if TYPE_CHECKING:
    from keel.store._registry import SqlRegistry
    from keel.tracking.client import Client

__all__ = ["SPEC_FILE", "Lineage", "Registry", "ResolvedModel"]

#: The spec file keel.models writes next to a saved model.
SPEC_FILE = "keel-model.json"
_RUNS_URI = re.compile(r"^runs:/([0-9a-f]{32})(?:/(.*))?$")
_MODELS_URI = re.compile(r"^models:/([^/@]+)(?:@([^/]+)|/([^/]+))$")


@dataclass(frozen=True)
class ResolvedModel:
    """What a model URI points to: its content (manifest) and, if registered, the version."""

    uri: str
    manifest_digest: str
    spec: dict[str, Any]
    version: ModelVersion | None


@dataclass(frozen=True)
class Lineage:
    """A walk of the lineage graph: nodes in visit order and (src, dst, relation) edges."""

    start: str
    direction: str
    nodes: list[str]
    edges: list[tuple[str, str, str]]

    def of_kind(self, kind: str) -> list[str]:
        """Nodes of one kind, e.g. ``dataset`` or ``run``."""
        return [n for n in self.nodes if n.startswith(kind + ":")]


def node_id(obj: Any) -> str:
    """The lineage node id of a run, model version, run id or ``kind:id`` string."""
    from keel.entities import Run

    if isinstance(obj, ModelVersion):
        return f"model_version:{obj.name}/{obj.version}"
    if isinstance(obj, Run):
        return f"run:{obj.run_id}"
    run_id = getattr(obj, "run_id", None)
    if isinstance(run_id, str):  # an ActiveRun
        return f"run:{run_id}"
    if isinstance(obj, str):
        if re.fullmatch(r"[0-9a-f]{32}", obj):
            return f"run:{obj}"
        m = _MODELS_URI.match(obj)
        if m and m.group(3) and m.group(3).isdigit():
            return f"model_version:{m.group(1)}/{m.group(3)}"
        if ":" in obj and not obj.startswith("models:/"):
            return obj
    raise InvalidSpecError(
        f"Cannot tell which lineage node {obj!r} is: pass a Run, a ModelVersion, a run id, "
        "'models:/name/<version>' or a 'kind:id' string such as 'dataset:churn@3'."
    )


class Registry:
    """Registry operations for one client (metadata store + object store)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @property
    def _reg(self) -> SqlRegistry:
        return self.client.store.registry  # type: ignore[attr-defined,no-any-return]

    @property
    def actor(self) -> str:
        """Who is acting: the configured user."""
        return self.client.settings.user

    # -- models and versions ----------------------------------------------------------------
    def create_model(
        self,
        name: str,
        *,
        description: str | None = None,
        owner: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> RegisteredModel:
        """Register a model name (versions also create it on first registration)."""
        return self._reg.create_model(
            name, actor=self.actor, description=description, owner=owner, tags=tags
        )

    def get_model(self, name: str) -> RegisteredModel:
        """A registered model, with aliases and its newest version number."""
        return self._reg.get_model(name)

    def list_models(self) -> list[RegisteredModel]:
        """All registered models."""
        return self._reg.list_models()

    def update_model(
        self, name: str, *, reason: str | None = None, **changes: Any
    ) -> RegisteredModel:
        """Edit description, owner, purpose (intended use) or limitations."""
        return self._reg.update_model(name, actor=self.actor, reason=reason, **changes)

    def set_protection(self, name: str, **settings: Any) -> RegisteredModel:
        """Protect stages/aliases behind approvals.

        Keywords: ``stages``, ``aliases``, ``required_approvals``, ``multiple_production``.
        """
        return self._reg.set_protection(name, actor=self.actor, **settings)

    def register_model(
        self,
        source: str,
        name: str,
        *,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        signing_key: bytes | str | os.PathLike[str] | None = None,
    ) -> ModelVersion:
        """Register the model logged at ``runs:/<run_id>/<path>`` as the next version.

        With ``signing_key`` (Ed25519 private key PEM, bytes or a file) the new
        version is signed at registration.
        """
        resolved = self._resolve_run_uri(source)
        m = _RUNS_URI.match(source)
        assert m is not None
        run_id = m.group(1)
        from keel.tracking.fluent import flush

        flush()  # the metrics snapshot must include points still buffered in this process
        run = self.client.get_run(run_id)
        _, edges = self._reg.lineage(f"run:{run_id}", "up", 1)
        # datasets the run read as inputs; not the ones it was only evaluated on
        datasets = list(
            dict.fromkeys(
                src
                for src, dst, relation in edges
                if dst == f"run:{run_id}" and src.startswith("dataset:") and relation == "input"
            )
        )
        mv = self._reg.create_version(
            name,
            actor=self.actor,
            source=source,
            run_id=run_id,
            manifest_digest=resolved.manifest_digest,
            spec=resolved.spec,
            metrics={k: v for k, v in run.metrics.items() if v == v},  # NaN is not JSON
            datasets=datasets,
            description=description,
            tags=tags,
        )
        if signing_key is not None:
            mv = self.sign(name, mv.version, signing_key)
        return mv

    def get_version(self, name: str, version: int | str) -> ModelVersion:
        """One version of a model."""
        return self._reg.get_version(name, version)

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Versions of a model, newest first."""
        return self._reg.list_versions(name)

    def set_stage(
        self,
        name: str,
        version: int | str,
        stage: str,
        *,
        reason: str | None = None,
        archive_existing: bool = True,
    ) -> ModelVersion:
        """Move a version to None, Staging, Production, Shadow or Archived."""
        return self._reg.set_stage(
            name,
            version,
            stage,
            actor=self.actor,
            reason=reason,
            archive_existing=archive_existing,
        )

    def set_alias(
        self, name: str, alias: str, version: int | str, *, reason: str | None = None
    ) -> ModelVersion:
        """Point ``alias`` at a version (moves it atomically if it exists)."""
        return self._reg.set_alias(name, alias, version, actor=self.actor, reason=reason)

    def delete_alias(self, name: str, alias: str, *, reason: str | None = None) -> None:
        """Remove an alias."""
        self._reg.delete_alias(name, alias, actor=self.actor, reason=reason)

    def delete_version(self, name: str, version: int | str, *, reason: str | None = None) -> None:
        """Soft-delete a version (its aliases go with it)."""
        self._reg.delete_version(name, version, actor=self.actor, reason=reason)

    def archive(self, name: str, version: int | str, *, reason: str | None = None) -> ModelVersion:
        """Move a version to the Archived stage."""
        return self.set_stage(name, version, "Archived", reason=reason)

    # -- approvals --------------------------------------------------------------------------
    def request(
        self,
        name: str,
        version: int | str,
        *,
        stage: str | None = None,
        alias: str | None = None,
        comment: str | None = None,
    ) -> ApprovalRequest:
        """Ask for a promotion to a (protected) stage or alias."""
        return self._reg.request(
            name, version, actor=self.actor, stage=stage, alias=alias, comment=comment
        )

    def approve(self, request_id: int, *, comment: str | None = None) -> ApprovalRequest:
        """Approve a request; the last required approval applies it."""
        return self._reg.vote(int(request_id), "approve", actor=self.actor, comment=comment)

    def reject(self, request_id: int, *, comment: str | None = None) -> ApprovalRequest:
        """Reject a request."""
        return self._reg.vote(int(request_id), "reject", actor=self.actor, comment=comment)

    def pending(self, name: str | None = None) -> list[ApprovalRequest]:
        """Pending approval requests (of one model, or all)."""
        return self._reg.list_requests(name, "pending")

    def grant(self, user: str, role: str, *, model: str | None = None) -> None:
        """Give a user a role (reader, writer, approver, admin) on a model or everywhere."""
        self._reg.grant(user, role, actor=self.actor, model=model)

    def approvers(self, name: str) -> list[str]:
        """Users who may approve changes to a model."""
        return self._reg.approvers(name)

    def revoke(self, user: str, role: str, *, model: str | None = None) -> None:
        """Take a role away."""
        self._reg.revoke(user, role, actor=self.actor, model=model)

    # -- resolving and loading --------------------------------------------------------------
    def resolve(self, uri: str) -> ResolvedModel:
        """Resolve ``models:/name@alias``, ``models:/name/3``, ``models:/name/Production``,
        ``models:/name/latest`` or ``runs:/<run_id>/<path>``."""
        if uri.startswith("runs:/"):
            return self._resolve_run_uri(uri)
        m = _MODELS_URI.match(uri)
        if m is None:
            raise InvalidSpecError(
                f"{uri!r} is not a model URI. Use models:/NAME@ALIAS, models:/NAME/VERSION, "
                "models:/NAME/STAGE, models:/NAME/latest or runs:/RUN_ID/PATH."
            )
        name, alias, ref = m.group(1), m.group(2), m.group(3)
        if alias is not None:
            mv = self._reg.resolve_alias(name, alias)
        elif ref is not None and ref.isdigit():
            mv = self._reg.get_version(name, int(ref))
        elif ref is not None and ref.lower() == "latest":
            mv = self._reg.latest_version(name)
        else:
            mv = self._reg.latest_in_stage(name, str(ref))
        return ResolvedModel(uri, mv.manifest_digest, mv.spec, mv)

    def _resolve_run_uri(self, uri: str) -> ResolvedModel:
        m = _RUNS_URI.match(uri)
        if m is None:
            raise InvalidSpecError(f"{uri!r} is not a runs:/<run_id>/<path> URI.")
        run_id, path = m.group(1), (m.group(2) or "model").strip("/")
        infos = self.client.list_artifacts(run_id, path)
        prefix = path + "/"
        entries = {
            i.path[len(prefix) :]: BlobRef(i.digest, i.size)
            for i in infos
            if i.path.startswith(prefix)
        }
        if SPEC_FILE not in entries:
            raise NotFoundError(
                f"No model at {uri}: run {run_id} has no '{path}/{SPEC_FILE}'. Log one with "
                "keel.log_model(...), or check the path with `keel artifacts ls`.",
                uri=uri,
            )
        spec = json.loads(self.client.objects.get_bytes(entries[SPEC_FILE].digest))
        manifest = self.client.objects.put_manifest(Manifest(entries))
        return ResolvedModel(uri, manifest.digest, spec, None)

    def materialize(self, resolved: ResolvedModel) -> Path:
        """Put the model's files in the local cache, every file verified against the manifest."""
        objects = self.client.objects
        manifest = objects.get_manifest(resolved.manifest_digest)
        root = self.client.settings.home / "cache" / "models" / resolved.manifest_digest
        complete = root / ".complete"
        if complete.is_file():
            for rel, ref in manifest.entries.items():  # cached files may have been altered
                path = root / rel
                if not path.is_file() or hash_file(path) != ref.digest:
                    raise IntegrityError(
                        f"Cached model file {path} does not match the registry's hash "
                        f"{ref.digest}: refusing to load it. Delete {root} to fetch it again.",
                        path=str(path),
                        digest=ref.digest,
                    )
            return root
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=root.parent))
        objects.get_files((ref.digest, staging / rel) for rel, ref in manifest.entries.items())
        (staging / ".complete").write_text(resolved.manifest_digest)
        try:
            staging.rename(root)
        except OSError:  # another process finished first: use its copy
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
        return root

    def verify_signature(self, resolved: ResolvedModel) -> None:
        """With verification keys configured, require a valid signature on the version."""
        keys = self.client.settings.verify_keys
        if not keys:
            return
        mv = resolved.version
        if mv is None or not mv.signature_b64:
            what = f"{mv.name} v{mv.version}" if mv else resolved.uri
            raise IntegrityError(
                f"{what} is not signed, and verification keys are configured "
                f"(KEEL_VERIFY_KEYS): refusing to load it. Sign it with `keel models sign`.",
                uri=resolved.uri,
            )
        from keel.models import verify_digest

        pems = [Path(k).read_bytes() for k in keys]
        verify_digest(mv.manifest_digest, mv.signature_b64, pems)

    def load(
        self, uri: str, *, allow_unsafe: bool = False, trusted_types: Sequence[str] | None = None
    ) -> Any:
        """Load a model by URI, verifying every file's hash (and signature) before deserialising."""
        from keel.models import load_model

        resolved = self.resolve(uri)
        self.verify_signature(resolved)
        path = self.materialize(resolved)  # keel.models warns when a format is pickle-based
        return load_model(
            path, allow_unsafe=allow_unsafe, trusted_types=list(trusted_types or []) or None
        )

    def sign(
        self, name: str, version: int | str, private_key: bytes | str | os.PathLike[str]
    ) -> ModelVersion:
        """Sign a version's content hash with an Ed25519 private key (PEM bytes or a file)."""
        from keel.models import sign_digest

        pem = private_key if isinstance(private_key, bytes) else Path(private_key).read_bytes()
        mv = self.get_version(name, version)
        signature = sign_digest(mv.manifest_digest, pem)
        return self._reg.update_version(
            name, mv.version, actor=self.actor, signature_b64=signature, signed_by=self.actor
        )

    # -- cards, lineage, audit ------------------------------------------------------------------
    def card(self, name: str, version: int | str, fmt: str = "md") -> str:
        """The model card of a version, as Markdown (``md``) or self-contained HTML (``html``)."""
        from keel.registry._card import render_card

        model = self.get_model(name)
        mv = self.get_version(name, version)
        run = None
        if mv.run_id:
            try:
                run = self.client.get_run(mv.run_id)
            except NotFoundError:
                run = None
        node = f"model_version:{name}/{mv.version}"
        history = [
            e
            for e in self._reg.audit_events(obj_prefix=node)
            if e.object == node
            and (e.action.startswith("approval.") or e.action == "version.stage")
        ]
        return render_card(model, mv, run, history, fmt)

    def add_lineage(self, src: Any, dst: Any, relation: str) -> None:
        """Record that ``dst`` derives from ``src`` (runs, model versions or ``kind:id``)."""
        if not re.fullmatch(r"[a-z_]{1,32}", relation):
            raise InvalidSpecError(f"relation must be a short lowercase word, got {relation!r}.")
        self._reg.add_edge(node_id(src), node_id(dst), relation)

    def lineage(self, obj: Any, direction: str = "up", depth: int = 10) -> Lineage:
        """Walk lineage from a run, model version or ``kind:id`` node (``up`` = sources)."""
        if direction not in ("up", "down"):
            raise InvalidSpecError(f"direction must be 'up' or 'down', got {direction!r}.")
        start = node_id(obj)
        nodes, edges = self._reg.lineage(start, direction, depth)
        return Lineage(start, direction, nodes, edges)

    def audit(self, obj_prefix: str | None = None, limit: int | None = None) -> list[AuditEvent]:
        """Audit events, oldest first."""
        return self._reg.audit_events(obj_prefix, limit)

    def verify_audit(self) -> tuple[int, str | None]:
        """(events checked, None) if the chain is intact, else (first broken event, why)."""
        return self._reg.verify_audit()

    def export_audit(self, path: str | os.PathLike[str]) -> int:
        """Write the audit log as JSON Lines; returns the number of events."""
        events = self.audit()
        with open(path, "w", encoding="utf-8") as fh:
            for e in events:
                fh.write(json.dumps(e.to_dict(), sort_keys=True) + "\n")
        return len(events)
