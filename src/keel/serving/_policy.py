"""Traffic policies: which model version answers a request, and the rules that guard a change.

A policy is immutable and JSON-serialisable; it is stored per deployment revision
and every server worker routes from its in-memory copy. Model versions are pinned
as ``"name/version"`` (an alias is resolved once, when the policy is written).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from keel.exceptions import InvalidSpecError

__all__ = ["KINDS", "Guards", "Policy", "route_share"]

#: Policy kinds.
KINDS = ("single", "canary", "shadow", "ab", "bluegreen")
#: Roles of a routed request: the stable version or the one being tried.
PRIMARY, CANDIDATE, SHADOW = "primary", "candidate", "shadow"


@dataclass(frozen=True)
class Guards:
    """Rules checked at every canary step; a breach rolls the canary back.

    Attributes:
        max_error_rate: largest share of the candidate's requests that may fail
            (raised, answered by the fallback) within a step.
        max_p99_ms: largest p99 latency of the candidate within a step (None: unchecked).
        max_quality_drop: largest drop of the candidate's accuracy against the primary's,
            over requests with feedback in the same step (None: unchecked).
        min_requests: requests the candidate must have served in a step before the step
            may advance (and before the rates are judged).
        min_feedback: feedback rows each side needs before quality is judged.
    """

    max_error_rate: float = 0.05
    max_p99_ms: float | None = None
    max_quality_drop: float | None = None
    min_requests: int = 20
    min_feedback: int = 20

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_error_rate <= 1.0:
            raise InvalidSpecError(
                f"max_error_rate must be a share between 0 and 1, got {self.max_error_rate}."
            )
        if self.max_p99_ms is not None and self.max_p99_ms <= 0:
            raise InvalidSpecError(f"max_p99_ms must be > 0, got {self.max_p99_ms}.")
        if self.max_quality_drop is not None and not 0.0 <= self.max_quality_drop <= 1.0:
            raise InvalidSpecError(
                f"max_quality_drop must be between 0 and 1, got {self.max_quality_drop}."
            )
        if self.min_requests < 1 or self.min_feedback < 1:
            raise InvalidSpecError("min_requests and min_feedback must be >= 1.")


@dataclass(frozen=True)
class Policy:
    """How a deployment routes its traffic.

    Attributes:
        kind: ``single``, ``canary``, ``shadow``, ``ab`` or ``bluegreen``.
        primary: the version answering by default (``"churn/3"``): the stable one in a
            canary, the champion in A/B, the live colour in blue-green.
        candidate: the version being tried: canary, shadow, challenger or the idle colour.
        weight: the candidate's share of traffic (0..1): the canary's current step or
            the A/B split. Unused by shadow (mirrors all) and blue-green (idle).
        steps: canary shares, increasing, ending at 1.0.
        step_seconds: how long each canary step lasts at least.
        step: index of the current canary step.
        step_started_at: when the current step began (ms since the epoch).
        guards: the canary's rollback rules.
        ab_key: request header (``X-Keel-Key``) or body field naming the unit of A/B
            assignment (e.g. ``user_id``); without it each request is assigned alone.
        ab_metric: ``binary`` (conversion) or ``continuous`` outcomes in feedback.
        started_at: when this policy kind began (ms): the A/B and canary windows.
        fallback: the version answering when the primary raises (the previous
            version after a promote or rollback); a failing candidate falls back
            to the primary.
        max_batch_size: most rows predicted in one call (adaptive micro-batching); a
            request larger than this is predicted alone.
        max_wait_ms: how long a batch may wait for more requests once the model is
            idle (0: never wait; batches still form while the model is busy).
        log_inputs: log request inputs with each prediction.
        alert_webhook: URL told about automatic rollbacks (else ``KEEL_ALERT_WEBHOOK``).
    """

    kind: str
    primary: str
    candidate: str | None = None
    weight: float = 0.0
    steps: tuple[float, ...] = ()
    step_seconds: float = 60.0
    step: int = 0
    step_started_at: int = 0
    guards: Guards = field(default_factory=Guards)
    ab_key: str | None = None
    ab_metric: str = "binary"
    started_at: int = 0
    fallback: str | None = None
    max_batch_size: int = 1024
    max_wait_ms: float = 0.0
    log_inputs: bool = True
    alert_webhook: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(float(s) for s in self.steps))
        if self.kind not in KINDS:
            raise InvalidSpecError(f"Policy kind must be one of {KINDS}, got {self.kind!r}.")
        for label, ref in (
            ("primary", self.primary),
            ("candidate", self.candidate),
            ("fallback", self.fallback),
        ):
            if ref is not None and not _is_ref(ref):
                raise InvalidSpecError(
                    f"{label} must be a pinned model version 'name/version', got {ref!r}."
                )
        needs_candidate = self.kind in ("canary", "shadow", "ab", "bluegreen")
        if needs_candidate and self.candidate is None:
            raise InvalidSpecError(f"A {self.kind} policy needs a candidate model version.")
        if self.kind == "single" and self.candidate is not None:
            raise InvalidSpecError("A single-version policy has no candidate.")
        if self.candidate is not None and self.candidate == self.primary:
            raise InvalidSpecError(
                f"The candidate {self.candidate} is already the primary version: nothing to try."
            )
        if not 0.0 <= self.weight <= 1.0:
            raise InvalidSpecError(f"weight must be a share between 0 and 1, got {self.weight}.")
        if self.kind == "canary":
            if not self.steps:
                raise InvalidSpecError("A canary needs steps, e.g. (0.05, 0.25, 0.5, 1.0).")
            if any(not 0 < s <= 1 for s in self.steps) or list(self.steps) != sorted(
                set(self.steps)
            ):
                raise InvalidSpecError(
                    f"Canary steps must be increasing shares in (0, 1], got {list(self.steps)}."
                )
            if self.steps[-1] != 1.0:
                raise InvalidSpecError(
                    f"The last canary step must be 1.0 (all traffic), got {self.steps[-1]}."
                )
            if not 0 <= self.step < len(self.steps):
                raise InvalidSpecError(f"step {self.step} is outside the {len(self.steps)} steps.")
        if self.step_seconds <= 0:
            raise InvalidSpecError(f"step_seconds must be > 0, got {self.step_seconds}.")
        if self.ab_metric not in ("binary", "continuous"):
            raise InvalidSpecError(
                f"ab_metric must be 'binary' or 'continuous', got {self.ab_metric!r}."
            )
        if not 1 <= self.max_batch_size <= 100_000:
            raise InvalidSpecError(
                f"max_batch_size must be between 1 and 100000, got {self.max_batch_size}."
            )
        if not 0 <= self.max_wait_ms <= 10_000:
            raise InvalidSpecError(
                f"max_wait_ms must be between 0 and 10000, got {self.max_wait_ms}."
            )

    # -- what to load and how to route ----------------------------------------------------
    @property
    def versions(self) -> tuple[str, ...]:
        """Every version a server must hold loaded for this policy."""
        refs = [self.primary, self.candidate, self.fallback]
        return tuple(dict.fromkeys(r for r in refs if r is not None))

    def route(self, key: str) -> tuple[str, str]:
        """``(version, role)`` answering a request whose assignment key is ``key``.

        Canary and A/B shares are decided by a hash of the key, so a key always
        lands on the same side for a given weight (sticky), and the share of keys
        sent to the candidate equals ``weight``.
        """
        if (
            self.candidate is not None
            and self.kind in ("canary", "ab")
            and self.weight > 0
            and (self.weight >= 1.0 or route_share(key) < self.weight)
        ):
            return self.candidate, CANDIDATE
        return self.primary, PRIMARY

    @property
    def shadow(self) -> str | None:
        """The version receiving mirrored traffic, if any."""
        return self.candidate if self.kind == "shadow" else None

    # -- JSON -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the store keeps)."""
        out = dataclasses.asdict(self)
        out["steps"] = list(self.steps)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidSpecError(f"Unknown policy fields {unknown}; known: {sorted(known)}.")
        values = dict(data)
        guards = values.get("guards")
        if isinstance(guards, Mapping):
            values["guards"] = Guards(**guards)
        return cls(**values)

    def replace(self, **changes: Any) -> Policy:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _is_ref(ref: object) -> bool:
    if not isinstance(ref, str):
        return False
    name, sep, version = ref.rpartition("/")
    return bool(sep and name and version.isdigit())


def route_share(key: str) -> float:
    """A stable pseudo-random number in [0, 1) for an assignment key."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64
