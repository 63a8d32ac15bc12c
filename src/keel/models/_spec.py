"""``keel-model.json``: what a saved model directory holds and what loading it needs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from keel.exceptions import IntegrityError, InvalidSpecError
from keel.models._signature import Signature

__all__ = ["SPEC_FILE", "SPEC_VERSION", "UNSAFE_FORMATS", "ModelSpec"]

SPEC_FILE = "keel-model.json"
SPEC_VERSION = 1
#: Formats whose loading runs pickle (arbitrary code): refused unless ``allow_unsafe``.
UNSAFE_FORMATS = frozenset({"pickle", "cloudpickle", "torchscript"})


@dataclass(frozen=True)
class ModelSpec:
    """The contents of ``keel-model.json``.

    ``files`` lists the model's files as relative POSIX paths (the spec file
    itself excluded). ``flavor_config`` holds what the flavor needs to load
    (class paths, classes, model type ...); ``extra`` is free user metadata.
    """

    flavor: str
    format: str
    files: tuple[str, ...]
    signature: Signature | None
    requirements: Mapping[str, str]
    unsafe: bool
    trusted_types: tuple[str, ...]
    created_at: str
    flavor_config: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    spec_version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", tuple(self.files))
        object.__setattr__(self, "trusted_types", tuple(self.trusted_types))
        for name in self.files:
            _check_relative(name)

    @property
    def is_unsafe(self) -> bool:
        """True when loading runs pickle, whatever the recorded ``unsafe`` flag says."""
        return self.unsafe or self.format in UNSAFE_FORMATS

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "spec_version": self.spec_version,
            "flavor": self.flavor,
            "format": self.format,
            "files": list(self.files),
            "signature": self.signature.to_dict() if self.signature else None,
            "requirements": dict(self.requirements),
            "unsafe": self.unsafe,
            "trusted_types": list(self.trusted_types),
            "created_at": self.created_at,
            "flavor_config": dict(self.flavor_config),
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Inverse of :meth:`to_dict`; raises InvalidSpecError on a malformed spec."""
        try:
            version = int(data.get("spec_version", SPEC_VERSION))
            if version > SPEC_VERSION:
                raise InvalidSpecError(
                    f"This model spec has version {version}; this keel reads up to "
                    f"{SPEC_VERSION}. Upgrade keel to load it.",
                    spec_version=version,
                )
            sig = data.get("signature")
            return cls(
                flavor=str(data["flavor"]),
                format=str(data["format"]),
                files=tuple(str(f) for f in data["files"]),
                signature=Signature.from_dict(sig) if sig else None,
                requirements={str(k): str(v) for k, v in data.get("requirements", {}).items()},
                unsafe=bool(data.get("unsafe", False)),
                trusted_types=tuple(str(t) for t in data.get("trusted_types", ())),
                created_at=str(data.get("created_at", "")),
                flavor_config=dict(data.get("flavor_config", {})),
                extra=dict(data.get("extra", {})),
                spec_version=version,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise InvalidSpecError(f"Malformed model spec: {exc!r}.") from exc

    def to_json(self) -> str:
        """Indented, key-sorted JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def write(self, directory: Path) -> Path:
        """Write ``keel-model.json`` into ``directory``."""
        path = directory / SPEC_FILE
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def read(cls, directory: str | Path) -> ModelSpec:
        """Read and check the spec of a saved model directory."""
        root = Path(directory)
        path = root / SPEC_FILE
        if not path.is_file():
            raise InvalidSpecError(
                f"{root} is not a saved keel model: it has no {SPEC_FILE}.", path=str(root)
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidSpecError(f"Cannot read {path}: {exc}.", path=str(path)) from exc
        if not isinstance(data, dict):
            raise InvalidSpecError(f"{path} does not hold a JSON object.", path=str(path))
        spec = cls.from_dict(data)
        absent = [f for f in spec.files if not (root / f).is_file()]
        if absent:
            raise IntegrityError(
                f"The model at {root} is incomplete: {', '.join(absent)} listed in "
                f"{SPEC_FILE} is missing. Re-download or re-save the model.",
                path=str(root),
                missing=absent,
            )
        return spec


def _check_relative(name: str) -> None:
    pure = PurePosixPath(name)
    if not name or pure.is_absolute() or ".." in pure.parts or "\\" in name:
        raise InvalidSpecError(
            f"Model file path {name!r} must be relative and stay inside the model directory.",
            path=name,
        )
