"""Registry, roles, lineage and audit storage on the SQL store.

Every state change that matters runs in one transaction together with its
audit event (and lineage edges), so the log can never disagree with the state.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Connection

from keel import _validation as v
from keel.entities import STAGES, ApprovalRequest, AuditEvent, ModelVersion, RegisteredModel
from keel.exceptions import (
    AlreadyExistsError,
    InvalidSpecError,
    InvalidStateError,
    NotFoundError,
    PermissionDeniedError,
    did_you_mean,
)
from keel.store import _governance as gov
from keel.store import schema as t
from keel.store.base import now_ms

if TYPE_CHECKING:
    from keel.store.sql import SqlStore

__all__ = ["ROLES", "SqlRegistry", "check_alias", "check_stage"]

ROLES = ("reader", "writer", "approver", "admin")
_ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,249}$")
_RESERVED_ALIASES = {"latest"}


def check_alias(alias: object) -> str:
    """Validate an alias name: a letter, then letters, digits, '_' or '-'."""
    if not isinstance(alias, str) or not _ALIAS_RE.match(alias):
        raise InvalidSpecError(
            f"Alias {alias!r} is not valid: start with a letter, then letters, digits, '_' "
            "or '-' (at most 250 characters), e.g. 'champion'.",
            alias=str(alias),
        )
    if alias.lower() in _RESERVED_ALIASES or alias.title() in STAGES:
        raise InvalidSpecError(
            f"Alias '{alias}' is reserved (it names a stage or 'latest'); choose another name.",
            alias=alias,
        )
    return alias


def check_stage(stage: object) -> str:
    """Normalise a stage name (case-insensitive) to its canonical spelling."""
    if isinstance(stage, str):
        for s in STAGES:
            if s.lower() == stage.lower():
                return s
    raise InvalidSpecError(
        f"Unknown stage {stage!r}.{did_you_mean(str(stage), STAGES)} Stages: {', '.join(STAGES)}.",
        stage=str(stage),
    )


def _json_list(text: str | None) -> list[str]:
    return list(json.loads(text)) if text else []


class SqlRegistry:
    """Registry storage over an :class:`~keel.store.sql.SqlStore` (shares its engine)."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    # -- transactions ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _audited(self) -> Iterator[Connection]:
        """A write transaction holding the audit chain's lock from its start."""
        with self.store._tx() as conn:
            gov.lock_head(conn)
            yield conn

    # -- models --------------------------------------------------------------------------------
    def _model_row(self, conn: Connection, name: str) -> Any:
        row = conn.execute(
            sa.select(t.registered_models).where(t.registered_models.c.name == name)
        ).one_or_none()
        if row is None:
            names = conn.execute(sa.select(t.registered_models.c.name)).scalars().all()
            listing = ", ".join(sorted(names)[:20]) or "none yet"
            raise NotFoundError(
                f"Registered model '{name}' not found.{did_you_mean(name, names)} "
                f"Registered models: {listing}.",
                name=name,
            )
        return row

    def _model(self, conn: Connection, row: Any) -> RegisteredModel:
        tags = dict(
            conn.execute(
                sa.select(t.registered_model_tags.c.key, t.registered_model_tags.c.value).where(
                    t.registered_model_tags.c.model_id == row.id
                )
            ).all()
        )
        mv = t.model_versions.c
        aliases = dict(
            conn.execute(
                sa.select(t.model_aliases.c.alias, mv.version)
                .join(t.model_versions, mv.id == t.model_aliases.c.version_id)
                .where(t.model_aliases.c.model_id == row.id)
            ).all()
        )
        latest = conn.execute(
            sa.select(sa.func.max(mv.version)).where(mv.model_id == row.id, mv.deleted == 0)
        ).scalar()
        return RegisteredModel(
            name=row.name,
            description=row.description,
            owner=row.owner,
            purpose=row.purpose,
            limitations=row.limitations,
            protected_stages=_json_list(row.protected_stages),
            protected_aliases=_json_list(row.protected_aliases),
            required_approvals=row.required_approvals,
            multiple_production=bool(row.multiple_production),
            created_at=row.created_at,
            updated_at=row.updated_at,
            tags=tags,
            aliases=aliases,
            latest_version=latest,
        )

    def _create_model_row(
        self,
        conn: Connection,
        name: str,
        *,
        actor: str,
        description: str | None = None,
        owner: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Any:
        now = now_ms()
        try:
            with conn.begin_nested():
                model_id = conn.execute(
                    sa.insert(t.registered_models)
                    .values(
                        name=name,
                        description=description,
                        owner=owner or actor,
                        protected_stages="[]",
                        protected_aliases="[]",
                        required_approvals=1,
                        multiple_production=0,
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(t.registered_models.c.id)
                ).scalar_one()
        except exc.IntegrityError as e:
            raise AlreadyExistsError(
                f"A registered model named '{name}' already exists.", name=name
            ) from e
        if tags:
            conn.execute(
                sa.insert(t.registered_model_tags),
                [{"model_id": model_id, "key": k, "value": val} for k, val in tags.items()],
            )
        gov.append_event(
            conn,
            ts=now,
            actor=actor,
            action="model.create",
            obj=f"model:{name}",
            after={"name": name, "description": description, "owner": owner or actor},
        )
        return conn.execute(
            sa.select(t.registered_models).where(t.registered_models.c.id == model_id)
        ).one()

    def create_model(
        self,
        name: str,
        *,
        actor: str,
        description: str | None = None,
        owner: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> RegisteredModel:
        """Register a model name; raises AlreadyExistsError if taken."""
        v.check_name("Model", name)
        with self._audited() as conn:
            row = self._create_model_row(
                conn, name, actor=actor, description=description, owner=owner, tags=tags
            )
            return self._model(conn, row)

    def get_model(self, name: str) -> RegisteredModel:
        """A registered model with its aliases and newest version number."""
        with self.store._tx(write=False) as conn:
            return self._model(conn, self._model_row(conn, name))

    def list_models(self) -> list[RegisteredModel]:
        """Every registered model, by name."""
        with self.store._tx(write=False) as conn:
            rows = conn.execute(
                sa.select(t.registered_models).order_by(t.registered_models.c.name)
            ).all()
            return [self._model(conn, r) for r in rows]

    _EDITABLE = ("description", "owner", "purpose", "limitations")

    def update_model(
        self, name: str, *, actor: str, reason: str | None = None, **changes: Any
    ) -> RegisteredModel:
        """Edit description, owner, purpose or limitations (audited with before/after)."""
        unknown = set(changes) - set(self._EDITABLE)
        if unknown:
            raise InvalidSpecError(
                f"Cannot edit {sorted(unknown)} of a model; editable: {', '.join(self._EDITABLE)}."
            )
        with self._audited() as conn:
            row = self._model_row(conn, name)
            before = {k: getattr(row, k) for k in changes}
            conn.execute(
                sa.update(t.registered_models)
                .where(t.registered_models.c.id == row.id)
                .values(**changes, updated_at=now_ms())
            )
            gov.append_event(
                conn,
                ts=now_ms(),
                actor=actor,
                action="model.update",
                obj=f"model:{name}",
                reason=reason,
                before=before,
                after=dict(changes),
            )
            return self._model(conn, self._model_row(conn, name))

    def set_protection(
        self,
        name: str,
        *,
        actor: str,
        stages: Sequence[str] | None = None,
        aliases: Sequence[str] | None = None,
        required_approvals: int | None = None,
        multiple_production: bool | None = None,
        reason: str | None = None,
    ) -> RegisteredModel:
        """Configure which stages/aliases need approvals, and how many."""
        values: dict[str, Any] = {}
        if stages is not None:
            values["protected_stages"] = json.dumps(sorted({check_stage(s) for s in stages}))
        if aliases is not None:
            values["protected_aliases"] = json.dumps(sorted({check_alias(a) for a in aliases}))
        if required_approvals is not None:
            if not isinstance(required_approvals, int) or not 1 <= required_approvals <= 20:
                raise InvalidSpecError("required_approvals must be an integer from 1 to 20.")
            values["required_approvals"] = required_approvals
        if multiple_production is not None:
            values["multiple_production"] = int(bool(multiple_production))
        with self._audited() as conn:
            row = self._model_row(conn, name)
            self._require_admin(conn, actor, name, f"change the protection of model '{name}'")
            before = {
                "protected_stages": _json_list(row.protected_stages),
                "protected_aliases": _json_list(row.protected_aliases),
                "required_approvals": row.required_approvals,
                "multiple_production": bool(row.multiple_production),
            }
            conn.execute(
                sa.update(t.registered_models)
                .where(t.registered_models.c.id == row.id)
                .values(**values, updated_at=now_ms())
            )
            model = self._model(conn, self._model_row(conn, name))
            gov.append_event(
                conn,
                ts=now_ms(),
                actor=actor,
                action="model.protection",
                obj=f"model:{name}",
                reason=reason,
                before=before,
                after={
                    "protected_stages": model.protected_stages,
                    "protected_aliases": model.protected_aliases,
                    "required_approvals": model.required_approvals,
                    "multiple_production": model.multiple_production,
                },
            )
            return model

    # -- versions ---------------------------------------------------------------------------------
    def create_version(
        self,
        name: str,
        *,
        actor: str,
        source: str,
        run_id: str | None,
        manifest_digest: str,
        spec: dict[str, Any],
        metrics: Mapping[str, float],
        datasets: Sequence[str],
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ModelVersion:
        """Add the next version of ``name`` (the model is created if needed)."""
        v.check_name("Model", name)
        now = now_ms()
        with self._audited() as conn:
            row = conn.execute(
                sa.select(t.registered_models).where(t.registered_models.c.name == name)
            ).one_or_none()
            if row is None:
                row = self._create_model_row(conn, name, actor=actor)
            mv = t.model_versions.c
            number = (
                conn.execute(
                    sa.select(sa.func.max(mv.version)).where(mv.model_id == row.id)
                ).scalar()
                or 0
            ) + 1
            version_id = conn.execute(
                sa.insert(t.model_versions)
                .values(
                    model_id=row.id,
                    version=number,
                    run_id=run_id,
                    source=source,
                    manifest_digest=manifest_digest,
                    flavor=str(spec.get("flavor", "unknown")),
                    format=str(spec.get("format", "unknown")),
                    spec=json.dumps(spec, sort_keys=True, default=str),
                    unsafe=int(bool(spec.get("unsafe", False))),
                    metrics=json.dumps(dict(metrics), default=str),
                    datasets=json.dumps(list(datasets)),
                    stage="None",
                    description=description,
                    created_by=actor,
                    created_at=now,
                    updated_at=now,
                    deleted=0,
                )
                .returning(mv.id)
            ).scalar_one()
            if tags:
                conn.execute(
                    sa.insert(t.model_version_tags),
                    [{"version_id": version_id, "key": k, "value": val} for k, val in tags.items()],
                )
            node = f"model_version:{name}/{number}"
            if run_id:
                gov.add_edge(conn, f"run:{run_id}", node, "output", now)
            for ds in datasets:
                gov.add_edge(conn, ds if ":" in ds else f"dataset:{ds}", node, "trained_on", now)
            gov.append_event(
                conn,
                ts=now,
                actor=actor,
                action="version.register",
                obj=node,
                after={
                    "source": source,
                    "manifest_digest": manifest_digest,
                    "flavor": spec.get("flavor"),
                    "unsafe": bool(spec.get("unsafe", False)),
                },
            )
            conn.execute(
                sa.update(t.registered_models)
                .where(t.registered_models.c.id == row.id)
                .values(updated_at=now)
            )
            # built from what was just written: re-reading would cost three statements
            return ModelVersion(
                name=name,
                version=number,
                source=source,
                run_id=run_id,
                manifest_digest=manifest_digest,
                flavor=str(spec.get("flavor", "unknown")),
                format=str(spec.get("format", "unknown")),
                spec=json.loads(json.dumps(spec, default=str)),
                unsafe=bool(spec.get("unsafe", False)),
                metrics=dict(metrics),
                datasets=list(datasets),
                stage="None",
                description=description,
                signature_b64=None,
                signed_by=None,
                created_by=actor,
                created_at=now,
                updated_at=now,
                aliases=[],
                tags=dict(tags or {}),
            )

    def _version_row(self, conn: Connection, model_id: int, name: str, version: int) -> Any:
        mv = t.model_versions.c
        row = conn.execute(
            sa.select(t.model_versions).where(
                mv.model_id == model_id, mv.version == version, mv.deleted == 0
            )
        ).one_or_none()
        if row is None:
            existing = (
                conn.execute(
                    sa.select(mv.version)
                    .where(mv.model_id == model_id, mv.deleted == 0)
                    .order_by(mv.version)
                )
                .scalars()
                .all()
            )
            listing = ", ".join(map(str, existing)) or "none"
            raise NotFoundError(
                f"Model '{name}' has no version {version}. Versions: {listing}.",
                name=name,
                version=version,
            )
        return row

    def _version(self, conn: Connection, name: str, row: Any) -> ModelVersion:
        aliases = (
            conn.execute(
                sa.select(t.model_aliases.c.alias)
                .where(t.model_aliases.c.version_id == row.id)
                .order_by(t.model_aliases.c.alias)
            )
            .scalars()
            .all()
        )
        tags = dict(
            conn.execute(
                sa.select(t.model_version_tags.c.key, t.model_version_tags.c.value).where(
                    t.model_version_tags.c.version_id == row.id
                )
            ).all()
        )
        return _version_from(name, row._mapping, list(aliases), tags)

    def get_version(self, name: str, version: int | str) -> ModelVersion:
        """One version; raises NotFoundError listing the versions that exist."""
        version = _check_version(version)
        with self.store._tx(write=False) as conn:
            model = self._model_row(conn, name)
            return self._version(conn, name, self._version_row(conn, model.id, name, version))

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every (not deleted) version of a model, newest first."""
        mv = t.model_versions.c
        with self.store._tx(write=False) as conn:
            model = self._model_row(conn, name)
            rows = conn.execute(
                sa.select(t.model_versions)
                .where(mv.model_id == model.id, mv.deleted == 0)
                .order_by(mv.version.desc())
            ).all()
            return [self._version(conn, name, r) for r in rows]

    def resolve_alias(self, name: str, alias: str) -> ModelVersion:
        """The version an alias points to; raises NotFoundError listing the aliases.

        The hot path of model loading and serving: two plain statements on the
        DBAPI cursor (SQLAlchemy statement construction would cost more than the
        queries).
        """
        mark = "?" if self.store.dialect == "sqlite" else "%s"
        with self.store._tx(write=False) as conn:
            cursor = conn.connection.cursor()
            cursor.execute(_RESOLVE_ALIAS.format(m=mark), (name, alias))
            found = cursor.fetchone()
            if found is not None:
                row = dict(zip([d[0] for d in cursor.description], found, strict=True))
                cursor.execute(_VERSION_EXTRAS.format(m=mark), (row["id"], row["id"]))
                aliases, tags = [], {}
                for kind, key, value in cursor.fetchall():
                    if kind == "a":
                        aliases.append(key)
                    else:
                        tags[key] = value
                return _version_from(name, row, sorted(aliases), tags)
            model = self._model_row(conn, name)  # raises for an unknown model
            known = (
                conn.execute(
                    sa.select(t.model_aliases.c.alias).where(t.model_aliases.c.model_id == model.id)
                )
                .scalars()
                .all()
            )
            listing = ", ".join(sorted(known)) or "none"
            raise NotFoundError(
                f"Model '{name}' has no alias '{alias}'.{did_you_mean(alias, known)} "
                f"Aliases: {listing}.",
                name=name,
                alias=alias,
            )

    def latest_in_stage(self, name: str, stage: str) -> ModelVersion:
        """The newest version in a stage (``models:/name/Production``)."""
        stage = check_stage(stage)
        mv = t.model_versions.c
        with self.store._tx(write=False) as conn:
            model = self._model_row(conn, name)
            row = conn.execute(
                sa.select(t.model_versions)
                .where(mv.model_id == model.id, mv.stage == stage, mv.deleted == 0)
                .order_by(mv.version.desc())
                .limit(1)
            ).one_or_none()
            if row is None:
                raise NotFoundError(
                    f"Model '{name}' has no version in stage {stage}.", name=name, stage=stage
                )
            return self._version(conn, name, row)

    def latest_version(self, name: str) -> ModelVersion:
        """The newest version (``models:/name/latest``)."""
        with self.store._tx(write=False) as conn:
            model = self._model(conn, self._model_row(conn, name))
        if model.latest_version is None:
            raise NotFoundError(f"Model '{name}' has no versions yet.", name=name)
        return self.get_version(name, model.latest_version)

    # -- stages and aliases -------------------------------------------------------------------
    def _check_protection(
        self, conn: Connection, model: Any, kind: str, target: str, approved: bool
    ) -> None:
        protected = _json_list(
            model.protected_stages if kind == "stage" else model.protected_aliases
        )
        if target in protected and not approved:
            approvers = self._approvers(conn, model.name)
            who = ", ".join(approvers) if approvers else "nobody yet (grant the approver role)"
            raise PermissionDeniedError(
                f"{'Stage' if kind == 'stage' else 'Alias'} '{target}' of model '{model.name}' is "
                f"protected: it needs {model.required_approvals} approval(s). Request it with "
                f"`keel models request {model.name} VERSION --{kind} {target}`; approvers: {who}.",
                name=model.name,
                target=target,
            )

    def set_stage(
        self,
        name: str,
        version: int | str,
        stage: str,
        *,
        actor: str,
        reason: str | None = None,
        archive_existing: bool = True,
        approved: bool = False,
    ) -> ModelVersion:
        """Move a version to a stage (rules: protection, one Production unless allowed)."""
        stage = check_stage(stage)
        version = _check_version(version)
        with self._audited() as conn:
            return self._set_stage(
                conn, name, version, stage, actor, reason, archive_existing, approved
            )

    def _set_stage(
        self,
        conn: Connection,
        name: str,
        version: int,
        stage: str,
        actor: str,
        reason: str | None,
        archive_existing: bool,
        approved: bool,
    ) -> ModelVersion:
        model = self._model_row(conn, name)
        row = self._version_row(conn, model.id, name, version)
        self._check_protection(conn, model, "stage", stage, approved)
        now = now_ms()
        mv = t.model_versions.c
        if stage == "Production" and not model.multiple_production:
            current = (
                conn.execute(
                    sa.select(mv.version).where(
                        mv.model_id == model.id,
                        mv.stage == "Production",
                        mv.deleted == 0,
                        mv.version != version,
                    )
                )
                .scalars()
                .all()
            )
            if current and not archive_existing:
                raise InvalidStateError(
                    f"Model '{name}' already has version {current[0]} in Production and allows one "
                    "Production version; pass archive_existing=True (the CLI's default) or allow "
                    "several with set_protection(multiple_production=True).",
                    name=name,
                )
            for other in current:
                conn.execute(
                    sa.update(t.model_versions)
                    .where(mv.model_id == model.id, mv.version == other)
                    .values(stage="Archived", updated_at=now)
                )
                gov.append_event(
                    conn,
                    ts=now,
                    actor=actor,
                    action="version.stage",
                    obj=f"model_version:{name}/{other}",
                    reason=f"archived on promotion of version {version}",
                    before={"stage": "Production"},
                    after={"stage": "Archived"},
                )
        conn.execute(
            sa.update(t.model_versions).where(mv.id == row.id).values(stage=stage, updated_at=now)
        )
        gov.append_event(
            conn,
            ts=now,
            actor=actor,
            action="version.stage",
            obj=f"model_version:{name}/{version}",
            reason=reason,
            before={"stage": row.stage},
            after={"stage": stage},
        )
        return self._version(conn, name, self._version_row(conn, model.id, name, version))

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int | str,
        *,
        actor: str,
        reason: str | None = None,
        approved: bool = False,
    ) -> ModelVersion:
        """Point an alias at a version, atomically (one version per alias)."""
        alias = check_alias(alias)
        version = _check_version(version)
        with self._audited() as conn:
            return self._set_alias(conn, name, alias, version, actor, reason, approved)

    def _set_alias(
        self,
        conn: Connection,
        name: str,
        alias: str,
        version: int,
        actor: str,
        reason: str | None,
        approved: bool,
    ) -> ModelVersion:
        model = self._model_row(conn, name)
        row = self._version_row(conn, model.id, name, version)
        self._check_protection(conn, model, "alias", alias, approved)
        a = t.model_aliases.c
        mv = t.model_versions.c
        before = conn.execute(
            sa.select(mv.version)
            .join(t.model_aliases, a.version_id == mv.id)
            .where(a.model_id == model.id, a.alias == alias)
        ).scalar_one_or_none()
        stmt = self.store._insert(t.model_aliases)
        conn.execute(
            stmt.values(model_id=model.id, alias=alias, version_id=row.id).on_conflict_do_update(
                index_elements=["model_id", "alias"], set_={"version_id": row.id}
            )
        )
        gov.append_event(
            conn,
            ts=now_ms(),
            actor=actor,
            action="alias.set",
            obj=f"model:{name}@{alias}",
            reason=reason,
            before={"version": before},
            after={"version": version},
        )
        return self._version(conn, name, row)

    def delete_alias(self, name: str, alias: str, *, actor: str, reason: str | None = None) -> None:
        """Remove an alias."""
        with self._audited() as conn:
            model = self._model_row(conn, name)
            a = t.model_aliases.c
            mv = t.model_versions.c
            before = conn.execute(
                sa.select(mv.version)
                .join(t.model_aliases, a.version_id == mv.id)
                .where(a.model_id == model.id, a.alias == alias)
            ).scalar_one_or_none()
            if before is None:
                raise NotFoundError(
                    f"Model '{name}' has no alias '{alias}'.", name=name, alias=alias
                )
            if alias in _json_list(model.protected_aliases):
                self._require_admin(conn, actor, name, f"delete the protected alias '{alias}'")
            conn.execute(sa.delete(t.model_aliases).where(a.model_id == model.id, a.alias == alias))
            gov.append_event(
                conn,
                ts=now_ms(),
                actor=actor,
                action="alias.delete",
                obj=f"model:{name}@{alias}",
                reason=reason,
                before={"version": before},
                after=None,
            )

    def update_version(
        self,
        name: str,
        version: int | str,
        *,
        actor: str,
        reason: str | None = None,
        description: str | None = None,
        signature_b64: str | None = None,
        signed_by: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ModelVersion:
        """Edit a version's description or tags, or attach a signature (audited)."""
        version = _check_version(version)
        with self._audited() as conn:
            model = self._model_row(conn, name)
            row = self._version_row(conn, model.id, name, version)
            values: dict[str, Any] = {}
            before: dict[str, Any] = {}
            if description is not None:
                values["description"], before["description"] = description, row.description
            if signature_b64 is not None:
                values["signature_b64"], before["signature_b64"] = signature_b64, row.signature_b64
                values["signed_by"], before["signed_by"] = signed_by, row.signed_by
            if values:
                conn.execute(
                    sa.update(t.model_versions)
                    .where(t.model_versions.c.id == row.id)
                    .values(**values, updated_at=now_ms())
                )
            if tags:
                stmt = self.store._insert(t.model_version_tags)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["version_id", "key"], set_={"value": stmt.excluded.value}
                    ),
                    [{"version_id": row.id, "key": k, "value": val} for k, val in tags.items()],
                )
                before["tags"] = None
                values["tags"] = dict(tags)
            action = "version.sign" if signature_b64 is not None else "version.update"
            gov.append_event(
                conn,
                ts=now_ms(),
                actor=actor,
                action=action,
                obj=f"model_version:{name}/{version}",
                reason=reason,
                before=before,
                after={k: val for k, val in values.items() if k != "updated_at"},
            )
            return self._version(conn, name, self._version_row(conn, model.id, name, version))

    def delete_version(
        self, name: str, version: int | str, *, actor: str, reason: str | None = None
    ) -> None:
        """Soft-delete a version; aliases pointing at it are removed (all audited)."""
        version = _check_version(version)
        with self._audited() as conn:
            model = self._model_row(conn, name)
            row = self._version_row(conn, model.id, name, version)
            aliases = (
                conn.execute(
                    sa.select(t.model_aliases.c.alias).where(t.model_aliases.c.version_id == row.id)
                )
                .scalars()
                .all()
            )
            guarded = row.stage in _json_list(model.protected_stages) or bool(
                set(aliases) & set(_json_list(model.protected_aliases))
            )
            if guarded:
                self._require_admin(
                    conn, actor, name, f"delete version {version}, which protection guards"
                )
            conn.execute(sa.delete(t.model_aliases).where(t.model_aliases.c.version_id == row.id))
            conn.execute(
                sa.update(t.model_versions)
                .where(t.model_versions.c.id == row.id)
                .values(deleted=1, updated_at=now_ms())
            )
            gov.append_event(
                conn,
                ts=now_ms(),
                actor=actor,
                action="version.delete",
                obj=f"model_version:{name}/{version}",
                reason=reason,
                before={"stage": row.stage, "aliases": list(aliases)},
                after=None,
            )

    # -- roles and approvals ------------------------------------------------------------------
    @staticmethod
    def _scope(model: str | None, experiment: str | None) -> str:
        if model and experiment:
            raise InvalidSpecError("A role is on a model or on an experiment, not both.")
        if experiment:
            if not str(experiment).isdigit():
                raise InvalidSpecError(f"Experiment id {experiment!r} must be a number.")
            return f"experiment:{experiment}"
        return f"model:{model}" if model else "*"

    def grant(
        self,
        user: str,
        role: str,
        *,
        actor: str,
        model: str | None = None,
        experiment: str | None = None,
    ) -> None:
        """Give ``user`` a role, on one model, one experiment or everywhere (audited)."""
        if role not in ROLES:
            raise InvalidSpecError(f"Unknown role {role!r}; roles: {', '.join(ROLES)}.")
        v.check_name("User", user)
        scope = self._scope(model, experiment)
        with self._audited() as conn:
            if model is not None:
                self._model_row(conn, model)
            self._require_admin(conn, actor, model, f"grant the {role} role")
            stmt = self.store._insert(t.roles)
            conn.execute(
                stmt.values(
                    user=user, role=role, scope=scope, granted_by=actor, created_at=now_ms()
                ).on_conflict_do_nothing()
            )
            gov.append_event(
                conn,
                ts=now_ms(),
                actor=actor,
                action="role.grant",
                obj=f"user:{user}",
                after={"role": role, "scope": scope},
            )

    def revoke(
        self,
        user: str,
        role: str,
        *,
        actor: str,
        model: str | None = None,
        experiment: str | None = None,
    ) -> None:
        """Take a role away (audited)."""
        scope = self._scope(model, experiment)
        with self._audited() as conn:
            self._require_admin(conn, actor, model, f"revoke the {role} role")
            n = conn.execute(
                sa.delete(t.roles).where(
                    t.roles.c.user == user, t.roles.c.role == role, t.roles.c.scope == scope
                )
            ).rowcount
            if n == 0:
                raise NotFoundError(f"{user} has no role {role} on {scope}.", user=user)
            gov.append_event(
                conn,
                ts=now_ms(),
                actor=actor,
                action="role.revoke",
                obj=f"user:{user}",
                before={"role": role, "scope": scope},
            )

    def _require_admin(self, conn: Connection, actor: str, model: str | None, what: str) -> None:
        """Governance changes need the admin role once any admin exists.

        A store without admins is a local single-user store: everything is allowed,
        which is how the first admin is granted. With admins configured, changing
        roles or protection, or deleting what protection guards, needs admin on the
        model (or globally).
        """
        r = t.roles.c
        admins = set(conn.execute(sa.select(r.user, r.scope).where(r.role == "admin")).all())
        if not admins:
            return
        scopes = {"*"} | ({f"model:{model}"} if model else set())
        if not any(user == actor and scope in scopes for user, scope in admins):
            names = sorted({u for u, sc in admins if sc in scopes})
            raise PermissionDeniedError(
                f"{actor} may not {what}: that needs the admin role"
                + (f" on model '{model}'" if model else "")
                + f". Admins: {', '.join(names) or 'none for this scope'}.",
                user=actor,
            )

    def approvers(self, name: str) -> list[str]:
        """Users who may approve changes to a model (approver or admin role)."""
        with self.store._tx(write=False) as conn:
            self._model_row(conn, name)
            return self._approvers(conn, name)

    def _approvers(self, conn: Connection, model: str) -> list[str]:
        r = t.roles.c
        return sorted(
            set(
                conn.execute(
                    sa.select(r.user).where(
                        r.role.in_(["approver", "admin"]), r.scope.in_(["*", f"model:{model}"])
                    )
                ).scalars()
            )
        )

    def request(
        self,
        name: str,
        version: int | str,
        *,
        actor: str,
        stage: str | None = None,
        alias: str | None = None,
        comment: str | None = None,
    ) -> ApprovalRequest:
        """Ask approvers to move a version to a stage or alias."""
        if (stage is None) == (alias is None):
            raise InvalidSpecError("Request either a stage or an alias (exactly one).")
        kind, target = (
            ("stage", check_stage(stage)) if stage is not None else ("alias", check_alias(alias))
        )
        version = _check_version(version)
        with self._audited() as conn:
            model = self._model_row(conn, name)
            row = self._version_row(conn, model.id, name, version)
            now = now_ms()
            req_id = conn.execute(
                sa.insert(t.approval_requests)
                .values(
                    version_id=row.id,
                    target_kind=kind,
                    target=target,
                    requested_by=actor,
                    comment=comment,
                    status="pending",
                    created_at=now,
                )
                .returning(t.approval_requests.c.id)
            ).scalar_one()
            gov.append_event(
                conn,
                ts=now,
                actor=actor,
                action="approval.request",
                obj=f"model_version:{name}/{version}",
                reason=comment,
                after={"request": req_id, kind: target},
            )
            return self._request(conn, req_id)

    def _request(self, conn: Connection, req_id: int) -> ApprovalRequest:
        ar = t.approval_requests.c
        missing = NotFoundError(
            f"Approval request {req_id} not found; see `keel models pending`.", request=req_id
        )
        if not 0 < req_id < 2**63:  # a larger id would overflow the database's integers
            raise missing
        row = conn.execute(
            sa.select(
                t.approval_requests,
                t.model_versions.c.version,
                t.registered_models.c.name,
            )
            .join(t.model_versions, t.model_versions.c.id == ar.version_id)
            .join(t.registered_models, t.registered_models.c.id == t.model_versions.c.model_id)
            .where(ar.id == req_id)
        ).one_or_none()
        if row is None:
            raise missing
        votes = [
            {"user": u, "decision": d, "comment": c, "at": at}
            for u, d, c, at in conn.execute(
                sa.select(
                    t.approval_votes.c.user,
                    t.approval_votes.c.decision,
                    t.approval_votes.c.comment,
                    t.approval_votes.c.created_at,
                )
                .where(t.approval_votes.c.request_id == req_id)
                .order_by(t.approval_votes.c.created_at)
            )
        ]
        return ApprovalRequest(
            id=row.id,
            name=row.name,
            version=row.version,
            target_kind=row.target_kind,
            target=row.target,
            requested_by=row.requested_by,
            comment=row.comment,
            status=row.status,
            created_at=row.created_at,
            resolved_at=row.resolved_at,
            votes=votes,
        )

    def list_requests(
        self, name: str | None = None, status: str | None = "pending"
    ) -> list[ApprovalRequest]:
        """Approval requests, oldest first (pending only by default)."""
        ar = t.approval_requests.c
        with self.store._tx(write=False) as conn:
            q = sa.select(ar.id).order_by(ar.id)
            if status:
                q = q.where(ar.status == status)
            if name:
                model = self._model_row(conn, name)
                q = q.join(t.model_versions, t.model_versions.c.id == ar.version_id).where(
                    t.model_versions.c.model_id == model.id
                )
            return [self._request(conn, i) for i in conn.execute(q).scalars().all()]

    def vote(
        self, req_id: int, decision: str, *, actor: str, comment: str | None = None
    ) -> ApprovalRequest:
        """Approve or reject a pending request; enough approvals apply it at once."""
        if decision not in ("approve", "reject"):
            raise InvalidSpecError("decision must be 'approve' or 'reject'.")
        with self._audited() as conn:
            req = self._request(conn, req_id)
            if req.status != "pending":
                raise InvalidStateError(
                    f"Approval request {req_id} is already {req.status}.", request=req_id
                )
            approvers = self._approvers(conn, req.name)
            if actor not in approvers:
                raise PermissionDeniedError(
                    f"{actor} may not approve or reject changes to model '{req.name}': that needs "
                    f"the approver role. Approvers: {', '.join(approvers) or 'none yet'}.",
                    user=actor,
                )
            if actor == req.requested_by:
                others = ", ".join(a for a in approvers if a != actor) or "none yet"
                raise PermissionDeniedError(
                    f"{actor} requested this change and cannot approve or reject it; another "
                    f"approver must ({others}).",
                    user=actor,
                )
            if any(vt["user"] == actor for vt in req.votes):
                raise InvalidStateError(f"{actor} already voted on request {req_id}.", user=actor)
            now = now_ms()
            conn.execute(
                sa.insert(t.approval_votes).values(
                    request_id=req_id,
                    user=actor,
                    decision=decision,
                    comment=comment,
                    created_at=now,
                )
            )
            gov.append_event(
                conn,
                ts=now,
                actor=actor,
                action=f"approval.{decision}",
                obj=f"model_version:{req.name}/{req.version}",
                reason=comment,
                after={"request": req_id, req.target_kind: req.target},
            )
            ar = t.approval_requests.c
            if decision == "reject":
                conn.execute(
                    sa.update(t.approval_requests)
                    .where(ar.id == req_id)
                    .values(status="rejected", resolved_at=now)
                )
            else:
                model = self._model_row(conn, req.name)
                approvals = 1 + sum(1 for vt in req.votes if vt["decision"] == "approve")
                if approvals >= model.required_approvals:
                    reason = f"approval request {req_id}" + (
                        f": {req.comment}" if req.comment else ""
                    )
                    if req.target_kind == "stage":
                        self._set_stage(
                            conn, req.name, req.version, req.target, actor, reason, True, True
                        )
                    else:
                        self._set_alias(
                            conn, req.name, req.target, req.version, actor, reason, True
                        )
                    conn.execute(
                        sa.update(t.approval_requests)
                        .where(ar.id == req_id)
                        .values(status="applied", resolved_at=now)
                    )
            return self._request(conn, req_id)

    # -- lineage and audit ----------------------------------------------------------------
    def add_edge(self, src: str, dst: str, relation: str) -> None:
        """Record a lineage edge ``src -> dst``."""
        with self.store._tx() as conn:
            gov.add_edge(conn, src, dst, relation, now_ms())

    def lineage(
        self, start: str, direction: str, depth: int
    ) -> tuple[list[str], list[tuple[str, str, str]]]:
        """Walk the lineage graph from ``start``."""
        with self.store._tx(write=False) as conn:
            return gov.walk(conn, start, direction, depth)

    def audit_events(
        self, obj_prefix: str | None = None, limit: int | None = None
    ) -> list[AuditEvent]:
        """Audit events in order."""
        with self.store._tx(write=False) as conn:
            return list(gov.iter_events(conn, obj_prefix=obj_prefix, limit=limit))

    def verify_audit(self) -> tuple[int, str | None]:
        """Verify the audit chain: (events checked, None) or (first broken seq, why)."""
        with self.store._tx(write=False) as conn:
            return gov.verify_chain(conn)

    def record_event(
        self,
        *,
        actor: str,
        action: str,
        obj: str,
        reason: str | None = None,
        before: Any = None,
        after: Any = None,
    ) -> AuditEvent:
        """Append an audit event on its own (for state changes outside the registry)."""
        with self._audited() as conn:
            return gov.append_event(
                conn,
                ts=now_ms(),
                actor=actor,
                action=action,
                obj=obj,
                reason=reason,
                before=before,
                after=after,
            )


_RESOLVE_ALIAS = (
    "SELECT v.* FROM model_aliases a "
    "JOIN registered_models m ON m.id = a.model_id "
    "JOIN model_versions v ON v.id = a.version_id "
    "WHERE m.name = {m} AND a.alias = {m}"
)
_VERSION_EXTRAS = (
    "SELECT 'a', alias, NULL FROM model_aliases WHERE version_id = {m} "
    "UNION ALL SELECT 't', key, value FROM model_version_tags WHERE version_id = {m}"
)


def _version_from(
    name: str, row: Mapping[str, Any], aliases: list[str], tags: dict[str, str]
) -> ModelVersion:
    return ModelVersion(
        name=name,
        version=row["version"],
        source=row["source"],
        run_id=row["run_id"],
        manifest_digest=row["manifest_digest"],
        flavor=row["flavor"],
        format=row["format"],
        spec=json.loads(row["spec"]),
        unsafe=bool(row["unsafe"]),
        metrics=json.loads(row["metrics"]),
        datasets=json.loads(row["datasets"]),
        stage=row["stage"],
        description=row["description"],
        signature_b64=row["signature_b64"],
        signed_by=row["signed_by"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        aliases=aliases,
        tags=tags,
    )


def _check_version(version: object) -> int:
    try:
        number = int(str(version).lstrip("vV"))
    except ValueError:
        raise InvalidSpecError(f"{version!r} is not a version number (1, 2, ...).") from None
    if number < 1:
        raise InvalidSpecError(f"Version numbers start at 1, got {version!r}.")
    return number
