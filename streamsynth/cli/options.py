"""Parsing and printing shared by the commands: shards, conditions, times, tables, progress."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from streamsynth.contract import as_utc
from streamsynth.errors import StreamsynthError
from streamsynth.progress import Progress  # noqa: F401 (the commands' progress reporter)

# Piped output (scripts, CI logs) gets wide tables rather than cells cut at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


#: The Prometheus endpoint of ``replay`` and ``load``, declared once for both.
MetricsPort = Annotated[int | None, typer.Option("--metrics-port", min=0, max=65535,
                                                 help="Serve Prometheus metrics on this port.")]
MetricsHost = Annotated[str, typer.Option("--metrics-host", help="Address for the metrics endpoint "
                                          "(0.0.0.0 to expose it).")]

def parse_shard(text: str) -> tuple[int, int]:
    """``"3/16"`` -> ``(3, 16)``."""
    k, sep, n = text.partition("/")
    try:
        shard = (int(k), int(n))
    except ValueError:
        shard = None
    if not sep or shard is None or not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        raise StreamsynthError(f"--shard {text!r} is not K/N", hint="use e.g. --shard 0/4 (0 <= K < N)")
    return shard


def parse_conditions(items: list[str] | None) -> dict[str, Any]:
    """``["is_fraud=true", "channel=online"]`` -> ``{"is_fraud": True, "channel": "online"}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise StreamsynthError(f"--condition {item!r} is not COLUMN=VALUE", hint="e.g. --condition is_fraud=true")
        parsed = yaml.safe_load(value)
        out[key.strip()] = parsed if isinstance(parsed, bool | int | float) else value
    return out


def parse_time(text: str, option: str) -> datetime:
    try:
        return as_utc(text)
    except StreamsynthError:
        raise StreamsynthError(
            f"{option} {text!r} is not a time", hint="use ISO 8601, e.g. 2024-05-01T10:30:00Z"
        ) from None


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title, title_justify="left")
    for name in header:
        table.add_column(name)
    for row in rows:
        table.add_row(*row)
    console.print(table)
