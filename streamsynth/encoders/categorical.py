"""Categorical (and boolean) columns as integer codes over a frequency-ordered vocabulary."""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import polars as pl

from streamsynth.encoders.base import Encoder


class CategoricalEncoder(Encoder):
    """Codes ``0..n-1`` for the most frequent values (most frequent first), nulls included.

    Values beyond ``max_categories`` share the last code, which decodes to the most frequent of
    them: rare tails are kept as one bucket rather than blowing up model heads.
    """

    type = "categorical"

    def __init__(self, max_categories: int = 4096) -> None:
        self.max_categories = max_categories
        self.values: list[Any] = []
        self.probs = np.zeros(0)
        self.dtype = "String"

    @property
    def size(self) -> int:
        return len(self.values)

    def fit(self, values: pl.Series) -> Self:
        self.dtype = str(values.dtype)
        counts = values.value_counts(sort=True, name="n")
        keys, n = counts[values.name].to_list(), counts["n"].to_numpy().astype(np.float64)
        if len(keys) > self.max_categories:
            keep = self.max_categories - 1
            n = np.append(n[:keep], n[keep:].sum())
            keys = keys[:keep] + [keys[keep]]
        self.values = keys
        self.probs = n / n.sum()
        return self

    def encode(self, values: pl.Series) -> np.ndarray:
        """Integer codes; values never seen in training map to the rare bucket (the last code)."""
        fallback = self.size - 1
        mapping = pl.DataFrame(
            {"v": pl.Series(self.values, dtype=values.dtype), "code": np.arange(self.size)},
        )
        frame = pl.DataFrame({"v": values}).with_row_index("_i")
        joined = frame.join(mapping, on="v", how="left", nulls_equal=True).sort("_i")
        return joined["code"].fill_null(fallback).to_numpy().astype(np.int64)

    def decode(self, codes: np.ndarray) -> pl.Series:
        dtype = polars_dtype(self.dtype)
        return pl.Series(self.values, dtype=dtype).gather(np.asarray(codes, dtype=np.int64))

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "dtype": self.dtype,
            "max_categories": self.max_categories,
            "values": self.values,
            "probs": self.probs.tolist(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        enc = cls(max_categories=data["max_categories"])
        enc.dtype = data["dtype"]
        enc.values = list(data["values"])
        enc.probs = np.asarray(data["probs"], dtype=np.float64)
        return enc


def polars_dtype(name: str) -> pl.DataType:
    table = {
        "String": pl.String(), "Boolean": pl.Boolean(), "Int64": pl.Int64(), "Int32": pl.Int32(),
        "Int16": pl.Int16(), "Int8": pl.Int8(), "UInt32": pl.UInt32(), "UInt64": pl.UInt64(),
        "Float64": pl.Float64(), "Float32": pl.Float32(), "Categorical": pl.String(),
    }
    return table.get(name, pl.String())
