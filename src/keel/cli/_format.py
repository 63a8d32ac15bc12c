"""Formatting helpers of the command line: numbers, sizes, times, statuses, JSON."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

from rich.text import Text

__all__ = [
    "STATUS_STYLES",
    "format_duration",
    "format_number",
    "format_size",
    "format_time",
    "short_digest",
    "short_id",
    "status_text",
    "to_json",
]

#: Colour of each run status in tables.
STATUS_STYLES: dict[str, str] = {
    "RUNNING": "bold blue",
    "SCHEDULED": "cyan",
    "FINISHED": "green",
    "FAILED": "bold red",
    "KILLED": "magenta",
}


def short_id(run_id: str | None, length: int = 8) -> str:
    """The first ``length`` characters of a run id (``-`` for none)."""
    return run_id[:length] if run_id else "-"


def short_digest(digest: str | None, length: int = 12) -> str:
    """The first ``length`` hex digits of a blob digest (``-`` for none)."""
    return digest[:length] if digest else "-"


def format_number(value: float | None, digits: int | None = 5) -> str:
    """A metric value: ``digits`` significant digits (``None``: exact), NaN and inf spelled out."""
    if value is None:
        return "-"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if digits is None:
        return repr(float(value))
    return f"{value:.{digits}g}"


def format_size(size: int) -> str:
    """Bytes in binary units: ``512 B``, ``1.5 KiB``, ``3.2 GiB``."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def format_duration(seconds: float | None) -> str:
    """``0.42s``, ``12.3s``, ``4m 05s``, ``2h 03m``, ``3d 04h`` (``-`` for none)."""
    if seconds is None:
        return "-"
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def format_time(ms: int | None, *, full: bool = False, compact: bool = False) -> str:
    """Epoch milliseconds as local time: ``2025-01-31 14:05``.

    ``full`` adds seconds and the zone; ``compact`` gives ``01-31 14:05`` for this
    year and ``2024-01-31`` for older times.
    """
    if ms is None:
        return "-"
    stamp = dt.datetime.fromtimestamp(ms / 1000).astimezone()
    if full:
        return stamp.strftime("%Y-%m-%d %H:%M:%S %Z")
    if compact:
        this_year = stamp.year == dt.datetime.now().astimezone().year
        return stamp.strftime("%m-%d %H:%M" if this_year else "%Y-%m-%d")
    return stamp.strftime("%Y-%m-%d %H:%M")


def status_text(status: str, lifecycle_stage: str = "active") -> Text:
    """A coloured status; deleted runs get a dim ``(deleted)`` suffix."""
    text = Text(str(status), style=STATUS_STYLES.get(str(status), ""))
    if lifecycle_stage != "active":
        text.append(f" ({lifecycle_stage})", style="dim")
    return text


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def to_json(data: Any) -> str:
    """Strict JSON; NaN and +/-inf become the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``."""
    return json.dumps(_jsonable(data), indent=2, ensure_ascii=False, allow_nan=False, default=str)
