"""Free-text columns as a first-order token chain, sampled for many rows at once.

Good enough for log messages in a baseline: tokens follow tokens as in training. Sampling is
vectorised across rows with one global cumulative table (each predecessor's successors are a
segment offset by the predecessor's index), so no Python loop runs per row.

Identifiers inside text (IPs, emails, MACs, UUIDs, long numbers and hex ids in log lines) are
replaced by placeholders before learning and filled with faked values when sampling, so no
training identifier is ever replayed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from streamsynth.identifiers import fake
from streamsynth.rng import child_seed, hash64

BOS, EOS = 0, 1
MAX_TOKENS = 64

#: (placeholder, pattern, identifier kind) in the order they are applied; patterns are Rust regex.
PLACEHOLDERS = (
    ("<email>", r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", "email"),
    ("<uuid>", r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", "uuid"),
    ("<mac>", r"(?:[0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}", "mac"),
    ("<ipv4>", r"\b(?:\d{1,3}\.){3}\d{1,3}\b", "ipv4"),
    ("<num>", r"\d{6,}", "num"),  # before hex, so numeric ids (HDFS block ids) stay numbers
    ("<hex>", r"\b[0-9a-f]{12,}\b", "hex"),
)


def scrub(texts: pl.Series) -> pl.Series:
    """Replace identifier-like substrings with placeholders such as ``<ipv4>``."""
    out = texts.cast(pl.String)
    for token, pattern, _ in PLACEHOLDERS:
        out = out.str.replace_all(pattern, token)
    return out


def fill(texts: pl.Series, row_keys: np.ndarray, seed: int) -> pl.Series:
    """Replace each placeholder occurrence with a faked value keyed by (row, occurrence)."""

    frame = pl.DataFrame({"t": texts})
    for token, _, kind in PLACEHOLDERS:
        counts = frame["t"].str.count_matches(token, literal=True).fill_null(0)
        for occurrence in range(int(counts.max() or 0)):
            keys = (np.asarray(row_keys, dtype=np.int64) << 6) + occurrence
            tag = child_seed(seed, "text", token)
            if kind == "num":
                values = pl.Series((hash64(tag, keys) % np.uint64(10**12)).astype(np.int64)).cast(pl.String)
            elif kind == "hex":
                values = pl.Series([f"{v:016x}" for v in hash64(tag, keys).tolist()])
            else:
                values = fake(kind, keys, tag)
            frame = frame.with_columns(
                pl.col("t").str.replace(token, values.alias("v").to_frame()["v"], literal=True, n=1)
            )
    return frame["t"]


class TokenChain:
    """Successor distributions per token, stored as one CSR-style table."""

    def __init__(self) -> None:
        self.vocab: list[str] = ["<s>", "</s>"]
        self.offsets = np.zeros(0, dtype=np.int64)  # start of each token's successor segment
        self.successors = np.zeros(0, dtype=np.int64)
        self.keys = np.zeros(0)  # cumulative probability within a segment + segment index

    def fit(self, texts: pl.Series, max_vocab: int = 20_000) -> TokenChain:
        tokens = scrub(texts.drop_nulls()).str.split(" ")
        counts = tokens.explode().value_counts(sort=True)
        words = counts[counts.columns[0]].head(max_vocab - 2).to_list()
        self.vocab = ["<s>", "</s>", *words]
        index = {w: i for i, w in enumerate(self.vocab)}
        pairs: dict[tuple[int, int], int] = {}
        for row in tokens.to_list():
            prev = BOS
            for word in row[:MAX_TOKENS]:
                cur = index.get(word)
                if cur is None:
                    break
                pairs[(prev, cur)] = pairs.get((prev, cur), 0) + 1
                prev = cur
            pairs[(prev, EOS)] = pairs.get((prev, EOS), 0) + 1
        self._build(pairs)
        return self

    def _build(self, pairs: dict[tuple[int, int], int]) -> None:
        keys = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)
        weights = np.array([pairs[tuple(k)] for k in keys.tolist()], dtype=np.float64)
        n = len(self.vocab)
        starts = np.searchsorted(keys[:, 0], np.arange(n + 1))
        cum = np.zeros(len(keys))
        for tok in range(n):
            a, b = starts[tok], starts[tok + 1]
            if b > a:
                cum[a:b] = np.cumsum(weights[a:b]) / weights[a:b].sum() + tok
        self.offsets = starts
        self.successors = keys[:, 1]
        self.keys = cum

    def sample(self, uniforms: np.ndarray, row_keys: np.ndarray, seed: int) -> pl.Series:
        """One text per row of ``uniforms`` (shape (rows, MAX_TOKENS) in (0, 1)); placeholders are
        filled with fakes keyed by ``row_keys`` (one int64 per row) and ``seed``."""
        rows = uniforms.shape[0]
        prev = np.full(rows, BOS, dtype=np.int64)
        out = np.full((rows, MAX_TOKENS), EOS, dtype=np.int64)
        alive = np.ones(rows, dtype=bool)
        for step in range(MAX_TOKENS):
            if not alive.any():
                break
            has_succ = self.offsets[prev + 1] > self.offsets[prev]
            query = prev + uniforms[:, step]
            pos = np.searchsorted(self.keys, query, side="left")
            pos = np.clip(pos, self.offsets[prev], np.maximum(self.offsets[prev + 1] - 1, 0))
            nxt = np.where(has_succ, self.successors[pos], EOS)
            nxt = np.where(alive, nxt, EOS)
            out[:, step] = nxt
            alive &= nxt != EOS
            prev = np.where(alive, nxt, prev)
        vocab = np.array(self.vocab, dtype=object)
        words = np.where(out == EOS, "", vocab[out])
        texts = pl.Series([" ".join(w for w in row if w) for row in words.tolist()], dtype=pl.String)
        return fill(texts, row_keys, seed)

    def to_json(self) -> dict[str, Any]:
        return {"type": "tokenchain", "vocab": self.vocab}

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {
            f"{prefix}.offsets": self.offsets,
            f"{prefix}.successors": self.successors,
            f"{prefix}.keys": self.keys,
        }

    @classmethod
    def restore(cls, data: dict[str, Any], tensors: dict[str, np.ndarray], prefix: str) -> TokenChain:
        chain = cls()
        chain.vocab = list(data["vocab"])
        chain.offsets = tensors[f"{prefix}.offsets"]
        chain.successors = tensors[f"{prefix}.successors"]
        chain.keys = tensors[f"{prefix}.keys"]
        return chain
