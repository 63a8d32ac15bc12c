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


def short_digest(digest: str, length: int = 12) -> str:
    """The first ``length`` hex digits of a blob digest."""
    return digest[:length]


def format_number(value: float | None, digits: int = 5) -> str:
    """A metric value for a table: ``digits`` significant digits, NaN and inf spelled out."""
    if value is None:
        return "-"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}g}"


def format_size(size: int) -> str:
    """Bytes in binary units: ``512 B``, ``1.5 KiB``, ``3.2 GiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def format_duration(seconds: float | None) -> str:
    """``0.42s``, ``12.3s``, ``4m 05s``, ``2h 03m``, ``3d 04h`` (``-`` for none)."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def format_time(ms: int | None, *, seconds: bool = False) -> str:
    """Milliseconds since the epoch as local time, ``2025-01-31 14:05``."""
    if ms is None:
        return "-"
    stamp = dt.datetime.fromtimestamp(ms / 1000).astimezone()
    return stamp.strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M")


def status_text(status: str, lifecycle_stage: str = "active") -> Text:
    """A coloured status; deleted runs get a dim ``(deleted)`` suffix."""
    text = Text(status, style=STATUS_STYLES.get(status, ""))
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
    """Strict JSON: NaN and +/-inf become the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``."""
    return json.dumps(_jsonable(data), indent=2, ensure_ascii=False, allow_nan=False, default=str)
