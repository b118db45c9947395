"""The value types a scenario file and its injectors' parameters share: durations, times, scalars.

A duration is ``90`` (seconds), ``"90s"``, ``"5m"``, ``"1h30m"`` or ``"2d"``; a time is ISO 8601
text or a datetime, taken as UTC when it has no zone.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator

from streamsynth.contract import utc_field

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")


def parse_duration(value: Any) -> timedelta:
    """``90`` (seconds), ``"90s"``, ``"5m"``, ``"1h30m"``, ``"2d"`` -> timedelta (not negative)."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError("expected a duration such as 90s, 5m, 2h or 1d")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"expected a duration such as 90s, 5m, 2h or 1d, got {value!r}")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise ValueError(f"expected a duration such as 90s, 5m, 2h or 1d, got {value!r}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    return timedelta(seconds=seconds)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Time = Annotated[datetime, BeforeValidator(utc_field)]
Scalar = str | int | float | bool
