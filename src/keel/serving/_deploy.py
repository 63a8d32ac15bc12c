"""Deployments in Python: create, change traffic, promote, roll back, watch canaries, read A/B.

Every change writes a new revision of the deployment's policy in one audited
transaction (who, why, lineage to the model versions served); servers pick it
up within about a second. A canary advances and is judged by :meth:`Deployments.tick`,
which every server worker runs in the background (the revision is compared and
swapped, so only one of them acts on a step) and which ``keel deploy tick`` runs
by hand.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from keel.exceptions import InvalidSpecError, InvalidStateError
from keel.serving._policy import CANDIDATE, PRIMARY, Guards, Policy
from keel.store.base import now_ms

if TYPE_CHECKING:
    from keel.serving._stats import ABReport
    from keel.store._deploy import DeploymentRecord, RevisionRecord, SqlDeployments
    from keel.tracking.client import Client

__all__ = ["Deployment", "Deployments", "VersionStats", "default"]

_log = logging.getLogger("keel.serving")


@dataclass(frozen=True)
class Deployment:
    """A deployment and its current policy."""

    name: str
    revision: int
    policy: Policy
    description: str | None
    created_by: str | None
    created_at: int
    updated_at: int

    @classmethod
    def from_record(cls, record: DeploymentRecord) -> Deployment:
        """Build from the store's record."""
        return cls(
            name=record.name,
            revision=record.revision,
            policy=Policy.from_dict(record.policy),
            description=record.description,
            created_by=record.created_by,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "revision": self.revision,
            "policy": self.policy.to_dict(),
            "description": self.description,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass
class VersionStats:
    """What one model version did in a window of the prediction log."""

    version: str
    role: str
    requests: int = 0
    rows: int = 0
    errors: int = 0
    fallbacks: int = 0
    latencies: list[float] = field(default_factory=list, repr=False)
    correct: int = 0
    labelled: int = 0
    disagreement_sum: float = 0.0
    compared: int = 0

    @property
    def error_rate(self) -> float:
        """Share of requests this version failed (raised; answered by a fallback or not)."""
        return (self.errors + self.fallbacks) / self.requests if self.requests else 0.0

    def latency_ms(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) of latency, in ms."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def accuracy(self) -> float | None:
        """Share of rows with a label predicted right (None without feedback labels)."""
        return self.correct / self.labelled if self.labelled else None

    @property
    def disagreement(self) -> float | None:
        """Shadow only: mean share of rows answered differently from the primary."""
        return self.disagreement_sum / self.compared if self.compared else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "version": self.version,
            "role": self.role,
            "requests": self.requests,
            "rows": self.rows,
            "errors": self.errors,
            "fallbacks": self.fallbacks,
            "error_rate": self.error_rate,
            "p50_ms": self.latency_ms(0.5),
            "p99_ms": self.latency_ms(0.99),
            "accuracy": self.accuracy,
            "labelled_rows": self.labelled,
            "disagreement": self.disagreement,
        }


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)))
        except (TypeError, ValueError):
            return False
    return bool(a == b)


def window_stats(
    rows: Sequence[Mapping[str, Any]], feedback: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[tuple[str, str], VersionStats]:
    """Per (version, role) statistics of prediction-log rows (+ feedback labels)."""
    out: dict[tuple[str, str], VersionStats] = {}
    for row in rows:
        key = (row["model_version"], row["role"])
        st = out.get(key)
        if st is None:
            st = out[key] = VersionStats(version=key[0], role=key[1])
        st.requests += 1
        st.rows += int(row.get("n_rows") or 0)
        status = row["status"]
        if status == "error":
            st.errors += 1
        elif status == "fallback":
            st.fallbacks += 1
        else:
            st.latencies.append(float(row["latency_ms"]))
        if row.get("disagreement") is not None:
            st.disagreement_sum += float(row["disagreement"])
            st.compared += 1
        fb = (feedback or {}).get(row["request_id"])
        if fb and fb.get("labels") is not None and status == "ok" and row.get("outputs"):
            outputs = json.loads(row["outputs"]) if isinstance(row["outputs"], str) else []
            labels = fb["labels"]
            for got, want in zip(outputs, labels, strict=False):
                st.labelled += 1
                st.correct += int(_same(got, want))
    return out


def _post_alert(url: str, text: str, payload: Mapping[str, Any], attempts: int = 4) -> bool:
    """POST Slack-compatible JSON (``text`` + details), retried with backoff."""
    import httpx

    body = {"text": text, "keel": dict(payload)}
    delay = 0.25
    for attempt in range(attempts):
        try:
            response = httpx.post(url, json=body, timeout=5.0)
            if response.status_code < 300:
                return True
            _log.warning("alert webhook %s answered %s", url, response.status_code)
        except httpx.HTTPError as exc:
            _log.warning("alert webhook %s failed: %s", url, exc)
        if attempt + 1 < attempts:
            time.sleep(delay)
            delay *= 2
    return False


class Deployments:
    """Deployment operations on one client's stores."""

    def __init__(self, client: Client | None = None) -> None:
        if client is None:
            from keel.tracking.fluent import get_client

            client = get_client()
        self.client = client

    @property
    def _store(self) -> SqlDeployments:
        store = self.client.store
        deployments = getattr(store, "deployments", None)
        if deployments is None:
            raise InvalidStateError(
                "Deployments need direct access to the metadata store (SQLite or PostgreSQL): "
                "unset KEEL_TRACKING_URI and set KEEL_STORE_URI to the server's database."
            )
        return deployments  # type: ignore[no-any-return]

    @property
    def actor(self) -> str:
        """Who is acting: the configured user."""
        return self.client.settings.user

    # -- reading ------------------------------------------------------------------------------
    def get(self, name: str) -> Deployment:
        """A deployment and its current policy."""
        return Deployment.from_record(self._store.get(name))

    def list_deployments(self) -> list[Deployment]:
        """Every deployment, by name."""
        return [Deployment.from_record(r) for r in self._store.list_all()]

    def history(self, name: str) -> list[RevisionRecord]:
        """Every revision (policy, action, who, why, when), oldest first."""
        return self._store.history(name)

    # -- resolving models -----------------------------------------------------------------------
    def pin(self, model_uri: str) -> str:
        """Resolve a registered model URI (alias, stage, latest or version) to ``name/version``."""
        from keel.registry import Registry

        if not model_uri.startswith("models:/"):
            raise InvalidSpecError(
                f"Deploy a registered model version (models:/NAME/VERSION or models:/NAME@ALIAS), "
                f"got {model_uri!r}. Register it first with keel.registry.register_model(...).",
                uri=model_uri,
            )
        resolved = Registry(self.client).resolve(model_uri)
        mv = resolved.version
        if mv is None:  # pragma: no cover - models:/ URIs always resolve to a version
            raise InvalidSpecError(f"{model_uri} is not a registered model version.")
        return f"{mv.name}/{mv.version}"

    # -- writing --------------------------------------------------------------------------------
    def _write(
        self,
        current: Deployment,
        policy: Policy,
        action: str,
        reason: str | None,
        *,
        check_revision: bool = True,
    ) -> Deployment:
        record = self._store.update(
            current.name,
            policy.to_dict(),
            action=action,
            actor=self.actor,
            reason=reason,
            expected_revision=current.revision if check_revision else None,
            models=policy.versions,
        )
        return Deployment.from_record(record)

    def create(
        self,
        name: str,
        model_uri: str,
        *,
        fallback: str | None = None,
        description: str | None = None,
        reason: str | None = None,
        max_batch_size: int = 1024,
        max_wait_ms: float = 0.0,
        log_inputs: bool = True,
        alert_webhook: str | None = None,
    ) -> Deployment:
        """Create a deployment serving one model version (an alias is pinned now)."""
        policy = Policy(
            kind="single",
            primary=self.pin(model_uri),
            fallback=self.pin(fallback) if fallback else None,
            started_at=now_ms(),
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            log_inputs=log_inputs,
            alert_webhook=alert_webhook,
        )
        record = self._store.create(
            name,
            policy.to_dict(),
            actor=self.actor,
            reason=reason or f"serve {model_uri}",
            description=description,
            models=policy.versions,
        )
        return Deployment.from_record(record)

    def _idle(self, name: str, kind: str) -> Deployment:
        dep = self.get(name)
        # blue-green's idle colour is a warm standby, not an experiment: it may be replaced
        if dep.policy.kind not in ("single", "bluegreen"):
            raise InvalidStateError(
                f"Deployment '{name}' is running a {dep.policy.kind} of "
                f"{dep.policy.candidate}: promote or roll it back before starting a {kind}.",
                name=name,
            )
        return dep

    def canary(
        self,
        name: str,
        model_uri: str,
        *,
        steps: Sequence[float] = (0.05, 0.25, 0.5, 1.0),
        step_seconds: float = 60.0,
        guards: Guards | None = None,
        reason: str | None = None,
    ) -> Deployment:
        """Start a canary: ``model_uri`` gets ``steps[0]`` of traffic, more at each step."""
        dep = self._idle(name, "canary")
        now = now_ms()
        policy = dep.policy.replace(
            kind="canary",
            candidate=self.pin(model_uri),
            steps=tuple(steps),
            step=0,
            weight=float(steps[0]) if steps else 0.0,
            step_seconds=step_seconds,
            step_started_at=now,
            started_at=now,
            guards=guards or Guards(),
        )
        return self._write(dep, policy, "canary", reason)

    def shadow(self, name: str, model_uri: str, *, reason: str | None = None) -> Deployment:
        """Mirror all traffic to ``model_uri``; users only ever see the primary's answers."""
        dep = self._idle(name, "shadow")
        policy = dep.policy.replace(
            kind="shadow", candidate=self.pin(model_uri), weight=0.0, started_at=now_ms()
        )
        return self._write(dep, policy, "shadow", reason)

    def ab(
        self,
        name: str,
        model_uri: str,
        *,
        split: float = 0.5,
        key: str | None = None,
        metric: str = "binary",
        reason: str | None = None,
    ) -> Deployment:
        """Start an A/B test: ``split`` of assignment keys go to the challenger ``model_uri``."""
        if not 0 < split < 1:
            raise InvalidSpecError(f"An A/B split must be strictly between 0 and 1, got {split}.")
        dep = self._idle(name, "A/B test")
        policy = dep.policy.replace(
            kind="ab",
            candidate=self.pin(model_uri),
            weight=float(split),
            ab_key=key,
            ab_metric=metric,
            started_at=now_ms(),
        )
        return self._write(dep, policy, "ab", reason)

    def bluegreen(self, name: str, model_uri: str, *, reason: str | None = None) -> Deployment:
        """Load ``model_uri`` as the idle colour (no traffic) so :meth:`switch` is instant."""
        dep = self._idle(name, "blue-green switch")
        policy = dep.policy.replace(
            kind="bluegreen", candidate=self.pin(model_uri), weight=0.0, started_at=now_ms()
        )
        return self._write(dep, policy, "bluegreen", reason)

    def switch(self, name: str, *, reason: str | None = None) -> Deployment:
        """Blue-green: move all traffic to the idle colour at once (the old one stays loaded)."""
        dep = self.get(name)
        p = dep.policy
        if p.kind != "bluegreen" or p.candidate is None:
            raise InvalidStateError(
                f"Deployment '{name}' has no idle colour to switch to (policy {p.kind}); "
                "stage one with `keel deploy bluegreen NAME MODEL_URI`.",
                name=name,
            )
        policy = p.replace(primary=p.candidate, candidate=p.primary, fallback=p.primary)
        return self._write(dep, policy, "switch", reason)

    def set_traffic(self, name: str, share: float, *, reason: str | None = None) -> Deployment:
        """Set the candidate's share of traffic (0..1) by hand (canary or A/B)."""
        dep = self.get(name)
        p = dep.policy
        if p.kind not in ("canary", "ab"):
            raise InvalidStateError(
                f"Deployment '{name}' is {p.kind}: only a canary or an A/B test splits traffic. "
                "Start one with `keel deploy canary` or `keel deploy ab`.",
                name=name,
            )
        if not 0 <= share <= 1:
            raise InvalidSpecError(f"A traffic share must be between 0 and 1, got {share}.")
        changes: dict[str, Any] = {"weight": float(share)}
        if p.kind == "canary":  # a manual share becomes the current step
            steps = sorted({*p.steps, float(share)} - {0.0}) or [1.0]
            if steps[-1] != 1.0:
                steps.append(1.0)
            changes.update(
                steps=tuple(steps),
                step=steps.index(float(share)) if share > 0 else 0,
                step_started_at=now_ms(),
            )
        return self._write(dep, p.replace(**changes), "set_traffic", reason)

    def promote(self, name: str, *, reason: str | None = None) -> Deployment:
        """The new version becomes the only one; the old stays loaded as fallback.

        The new version is the candidate (canary, shadow, challenger) or, in a blue-green,
        the colour it staged, whether or not it is live yet.
        """
        dep = self.get(name)
        p = dep.policy
        if p.candidate is None:
            raise InvalidStateError(
                f"Deployment '{name}' serves only {p.primary}: there is no candidate to promote.",
                name=name,
            )
        if p.kind == "bluegreen":
            # finish a blue-green: the staged colour stays, live or not; the other is fallback
            staged = self._staged(name, p)
            old = p.primary if staged == p.candidate else p.candidate
            return self._write(dep, self._single(p, staged, old), "promote", reason)
        return self._write(dep, self._single(p, p.candidate, p.primary), "promote", reason)

    def _staged(self, name: str, p: Policy) -> str:
        """The colour a blue-green staged (the new one), whichever is live now."""
        for rev in reversed(self.history(name)):
            if rev.action == "bluegreen":
                staged = rev.policy.get("candidate")
                if staged in (p.primary, p.candidate):
                    return str(staged)
                break
        assert p.candidate is not None
        return p.candidate

    @staticmethod
    def _single(p: Policy, primary: str, fallback: str | None) -> Policy:
        return p.replace(
            kind="single",
            primary=primary,
            candidate=None,
            weight=0.0,
            steps=(),
            step=0,
            fallback=fallback if fallback != primary else None,
            started_at=now_ms(),
        )

    def rollback(
        self, name: str, *, reason: str | None = None, _expected: Deployment | None = None
    ) -> Deployment:
        """Undo: drop a candidate (canary, shadow, A/B); blue-green: switch back to the old
        colour if the staged one is live, else drop the staged one; serving one version:
        go back to the version served before it."""
        dep = _expected or self.get(name)
        p = dep.policy
        if p.kind in ("canary", "shadow", "ab"):
            policy = self._single(p, p.primary, p.fallback)
        elif p.kind == "bluegreen" and p.candidate is not None:
            if p.primary == self._staged(name, p):  # the new colour is live: switch back
                policy = p.replace(primary=p.candidate, candidate=p.primary, fallback=p.primary)
            else:  # the new colour is idle: drop it
                policy = self._single(p, p.primary, p.fallback)
        else:
            previous = self._previous_primary(name, p.primary)
            if previous is None:
                raise InvalidStateError(
                    f"Deployment '{name}' has served only {p.primary}: there is nothing to roll "
                    "back to.",
                    name=name,
                )
            policy = self._single(p, previous, p.primary)
        return self._write(dep, policy, "rollback", reason, check_revision=_expected is not None)

    def _previous_primary(self, name: str, current: str) -> str | None:
        for rev in reversed(self.history(name)):
            primary = rev.policy.get("primary")
            if primary and primary != current:
                return str(primary)
        return None

    # -- observing --------------------------------------------------------------------------------
    def stats(
        self, name: str, *, since: int | None = None, with_feedback: bool = True
    ) -> dict[tuple[str, str], VersionStats]:
        """Per (version, role) statistics since ``since`` (default: the policy's start)."""
        from keel.serving._log import read_predictions

        dep = self.get(name)
        start = dep.policy.started_at if since is None else since
        rows = read_predictions(self.client.settings, self._store, name, since=start)
        feedback = (
            self._store.feedback([r["request_id"] for r in rows]) if with_feedback and rows else {}
        )
        return window_stats(rows, feedback)

    def status(self, name: str) -> dict[str, Any]:
        """The policy plus what each version did since it started."""
        dep = self.get(name)
        stats = self.stats(name)
        return {
            **dep.to_dict(),
            "versions": [s.to_dict() for s in stats.values()],
        }

    def ab_status(self, name: str, *, alpha: float = 0.05) -> ABReport:
        """The A/B test's lift, confidence intervals and sequential decision."""
        from keel.serving._stats import ArmStats, analyze

        dep = self.get(name)
        p = dep.policy
        if p.kind != "ab" or p.candidate is None:
            raise InvalidStateError(
                f"Deployment '{name}' is not running an A/B test (policy {p.kind}).", name=name
            )
        if self.client.settings.prediction_log == "sql":
            sums = self._store.arm_stats(name, since=p.started_at)
        else:
            from keel.serving._log import read_predictions

            rows = read_predictions(
                self.client.settings,
                self._store,
                name,
                since=p.started_at,
                roles=["primary", "candidate"],
            )
            fb = self._store.feedback([r["request_id"] for r in rows])
            acc: dict[str, list[float]] = {}
            for r in rows:
                value = fb.get(r["request_id"], {}).get("value")
                if value is not None:
                    acc.setdefault(r["model_version"], []).append(float(value))
            sums = {k: (len(v), sum(v), sum(x * x for x in v)) for k, v in acc.items()}
        control = ArmStats(*sums.get(p.primary, (0, 0.0, 0.0)))
        treatment = ArmStats(*sums.get(p.candidate, (0, 0.0, 0.0)))
        metric: Literal["binary", "continuous"] = (
            "continuous" if p.ab_metric == "continuous" else "binary"
        )
        return analyze(control, treatment, alpha=alpha, metric=metric)

    # -- the canary controller -------------------------------------------------------------------
    def tick(self, name: str) -> str | None:
        """Judge a running canary once: roll back on a guard breach, else advance (or promote)
        when the step has lasted ``step_seconds`` with enough requests. Returns what was done."""
        from keel.store._deploy import RevisionConflictError

        dep = self.get(name)
        p = dep.policy
        if p.kind != "canary" or p.candidate is None:
            return None
        stats = self.stats(
            name, since=p.step_started_at, with_feedback=p.guards.max_quality_drop is not None
        )
        cand = stats.get((p.candidate, CANDIDATE), VersionStats(p.candidate, CANDIDATE))
        prim = stats.get((p.primary, PRIMARY), VersionStats(p.primary, PRIMARY))
        breach = self._breach(p.guards, cand, prim)
        try:
            if breach is not None:
                rolled = self.rollback(name, reason=f"automatic rollback: {breach}", _expected=dep)
                self._alert(rolled, p, breach)
                return f"rolled back: {breach}"
            elapsed = (now_ms() - p.step_started_at) / 1000.0
            if elapsed < p.step_seconds or cand.requests < p.guards.min_requests:
                return None
            if p.step + 1 >= len(p.steps):
                self._write(
                    dep,
                    self._single(p, p.candidate, p.primary),
                    "promote",
                    f"canary passed every step ({cand.requests} requests in the last, "
                    f"error rate {cand.error_rate:.2%})",
                )
                return "promoted"
            nxt = p.step + 1
            self._write(
                dep,
                p.replace(step=nxt, weight=p.steps[nxt], step_started_at=now_ms()),
                "canary_step",
                f"step {p.step + 1} passed ({cand.requests} requests, error rate "
                f"{cand.error_rate:.2%}); now {p.steps[nxt]:.0%} of traffic",
            )
            return f"advanced to {p.steps[nxt]:.0%}"
        except RevisionConflictError:
            return None  # another worker acted on this step first

    @staticmethod
    def _breach(g: Guards, cand: VersionStats, prim: VersionStats) -> str | None:
        failed = cand.errors + cand.fallbacks
        # judged once there is enough traffic, or at once when the failures alone already
        # exceed what the error budget allows at the minimum number of requests
        if (cand.requests >= g.min_requests and cand.error_rate > g.max_error_rate) or (
            failed > g.max_error_rate * g.min_requests and failed >= 3
        ):
            return (
                f"error rate {cand.error_rate:.1%} of {cand.version} over {cand.requests} "
                f"requests exceeds {g.max_error_rate:.1%}"
            )
        if g.max_p99_ms is not None and len(cand.latencies) >= g.min_requests:
            p99 = cand.latency_ms(0.99)
            if p99 is not None and p99 > g.max_p99_ms:
                return f"p99 latency {p99:.1f} ms of {cand.version} exceeds {g.max_p99_ms:g} ms"
        if (
            g.max_quality_drop is not None
            and cand.labelled >= g.min_feedback
            and prim.labelled >= g.min_feedback
        ):
            ca, pa = cand.accuracy or 0.0, prim.accuracy or 0.0
            # the drop must exceed the limit AND be significant (one-sided z test, 95 %), so
            # a few unlucky labels do not roll back a model that is as good
            se = (ca * (1 - ca) / cand.labelled + pa * (1 - pa) / prim.labelled) ** 0.5
            if pa - ca > g.max_quality_drop and (pa - ca) > 1.645 * se:
                return (
                    f"accuracy {ca:.3f} of {cand.version} is {pa - ca:.3f} below the primary's "
                    f"{pa:.3f} ({cand.labelled} vs {prim.labelled} labelled rows), more than "
                    f"{g.max_quality_drop:g}"
                )
        return None

    def _alert(self, dep: Deployment, before: Policy, why: str) -> None:
        url = before.alert_webhook or self.client.settings.alert_webhook
        if not url:
            return
        text = (
            f":rotating_light: keel rolled back the canary of {before.candidate} on deployment "
            f"'{dep.name}': {why}. Now serving {dep.policy.primary} (revision {dep.revision})."
        )
        payload = {
            "event": "deployment.rollback",
            "deployment": dep.name,
            "revision": dep.revision,
            "candidate": before.candidate,
            "primary": dep.policy.primary,
            "reason": why,
        }
        threading.Thread(
            target=_post_alert, args=(url, text, payload), name="keel-alert", daemon=False
        ).start()


def default() -> Deployments:
    """Deployments of the current configuration."""
    return Deployments()
