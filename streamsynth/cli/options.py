"""Parsing and printing shared by the commands: shards, conditions, times, tables, progress."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import polars as pl
import yaml
from rich.console import Console
from rich.table import Table

from streamsynth.errors import StreamsynthError
from streamsynth.models.base import _as_utc

# Piped output (scripts, CI logs) gets wide tables rather than cells cut at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


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
        return _as_utc(text.replace("Z", "+00:00"))
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


class Progress:
    """A progress bar on stderr when it is a terminal; silent otherwise (CI, pipes)."""

    def __init__(self, total: int | None, label: str) -> None:
        self.enabled = sys.stderr.isatty()
        self.total = total
        self.label = label
        self._bar = None
        self._task = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn(), console=err_console, transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self

    def advance(self, batch: pl.DataFrame) -> pl.DataFrame:
        if self._bar is not None:
            self._bar.advance(self._task, batch.height)
        return batch

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
