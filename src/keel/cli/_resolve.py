"""Resolve what users type on the command line (run id prefixes) to full identifiers."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from keel.exceptions import InvalidSpecError, NotFoundError

if TYPE_CHECKING:
    from keel.store.base import Store

__all__ = ["MIN_PREFIX", "resolve_run_id", "resolve_run_ids"]

#: The shortest run id prefix accepted.
MIN_PREFIX = 6
_FULL = re.compile(r"[0-9a-f]{32}")
_PREFIX = re.compile(rf"[0-9a-f]{{{MIN_PREFIX},31}}")


def resolve_run_id(store: Store, text: str) -> str:
    """Expand a full run id or a unique prefix of at least 6 characters to the full id.

    Deleted runs count too (so they can be restored). A full id is returned as is;
    the store reports it if it does not exist.

    Raises:
        InvalidSpecError: ``text`` is not hexadecimal, too short, or ambiguous.
        NotFoundError: no run id starts with ``text``.
    """
    given = text.strip().lower()
    if _FULL.fullmatch(given):
        return given
    if not _PREFIX.fullmatch(given):
        raise InvalidSpecError(
            f"'{text}' is not a run id: give the 32 hexadecimal characters of a run id, "
            f"or a unique prefix of at least {MIN_PREFIX} (see `keel runs list`).",
            run_id=text,
        )
    runs, _ = store.search_runs([], filter=f"run_id like '{given}%'", view="all", max_results=2)
    if not runs:
        raise NotFoundError(
            f"No run id starts with '{given}'; see `keel runs list --all`.", run_id=given
        )
    if len(runs) > 1:
        raise InvalidSpecError(
            f"Run id prefix '{given}' is ambiguous: it matches {runs[0].run_id}, "
            f"{runs[1].run_id} and maybe more. Give more characters.",
            run_id=given,
        )
    return runs[0].run_id


def resolve_run_ids(store: Store, texts: Sequence[str]) -> list[str]:
    """Resolve several run ids or prefixes (all before acting on any)."""
    return [resolve_run_id(store, text) for text in texts]
