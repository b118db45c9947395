"""The encoder interface every per-type encoder implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Self

import polars as pl


class Encoder(ABC):
    """Maps a column to model space and back; ``to_json`` output rebuilds it exactly."""

    type: str

    @abstractmethod
    def fit(self, values: pl.Series) -> Self:
        """Learn the encoding from a column's training values."""

    @abstractmethod
    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict with a ``type`` key that :meth:`from_json` reads back."""

    @classmethod
    @abstractmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """Rebuild an encoder from :meth:`to_json` output."""
