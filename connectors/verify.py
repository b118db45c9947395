"""Reconcile what a sink holds against what was sent: missing, duplicated, mislabelled events.

Both sides are streams of ``(event_id, label)`` frames; the received side may also carry
``header_label`` (Kafka headers), which must agree with the label in the value.

Missing events are also told as compact id ranges per entity: ids end in the event's number
(``{namespace}-{entity}-{n}``, or ``{namespace}-{row}`` for a recorded file), so an outage that
lost a stretch reads ``pay-17-[120..345]`` instead of a list of a few examples.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import polars as pl

from streamsynth.contract import EVENT_ID, LABEL


@dataclass
class VerifyReport:
    """Counts of each kind of discrepancy, with a few example event ids of each."""

    expected: int
    received: int
    missing: int
    duplicated: int  # event ids received more than once
    mislabelled: int
    unexpected: int  # event ids received that were never sent
    header_mismatch: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)
    #: the missing ids as ranges per entity, at most MAX_RANGES (``missing_ranges_total`` counts all)
    missing_ranges: list[str] = field(default_factory=list)
    missing_ranges_total: int = 0

    @property
    def lost(self) -> bool:
        return self.missing > 0

    @property
    def ok(self) -> bool:
        """No loss and no wrong labels (duplicates are allowed: delivery is at-least-once)."""
        return not self.missing and not self.mislabelled and not self.header_mismatch

    def to_dict(self) -> dict:
        return asdict(self) | {"ok": self.ok}


MAX_RANGES = 20


def id_ranges(ids: pl.Series, limit: int = MAX_RANGES) -> tuple[list[str], int]:
    """Event ids as ranges of consecutive numbers per prefix (``ev-[3..9]``), the largest first,
    at most ``limit``; and how many ranges there are in all."""
    if ids.len() == 0:
        return [], 0
    digits = pl.col("id").str.extract(r"-(\d+)$")
    parts = pl.DataFrame({"id": ids}).with_columns(
        prefix=pl.col("id").str.extract(r"^(.*)-\d+$"),
        n=digits.cast(pl.Int64, strict=False),
        # zero-padded numbers (a recorded file's own ids) keep their width, and range apart
        width=pl.when(digits.str.starts_with("0") & (digits.str.len_chars() > 1))
        .then(digits.str.len_chars()).otherwise(0),
    )
    numbered = parts.filter(pl.col("n").is_not_null() & pl.col("prefix").is_not_null())
    new_run = ((pl.col("n").diff() != 1) | (pl.col("prefix") != pl.col("prefix").shift())
               | (pl.col("width") != pl.col("width").shift()))
    runs = (numbered.sort("prefix", "width", "n")
            .with_columns(run=new_run.fill_null(True).cum_sum())
            .group_by("run").agg(pl.col("prefix").first(), pl.col("width").first(), pl.col("n").min().alias("lo"),
                                 pl.col("n").max().alias("hi"), pl.len().alias("count"))
            .sort(["count", "prefix", "lo"], descending=[True, False, False]))
    shown = []
    for p, w, lo, hi in runs.select("prefix", "width", "lo", "hi").head(limit).iter_rows():
        lo_text, hi_text = str(lo).zfill(w), str(hi).zfill(w)
        shown.append(f"{p}-{lo_text}" if lo == hi else f"{p}-[{lo_text}..{hi_text}]")
    loose = parts.filter(pl.col("n").is_null() | pl.col("prefix").is_null())["id"]
    shown += loose.head(max(limit - len(shown), 0)).to_list()
    return shown, runs.height + loose.len()


def _frames(frames: Iterable[pl.DataFrame], columns: list[str]) -> pl.DataFrame:
    parts = [f.select([c for c in columns if c in f.columns]) for f in frames]
    parts = [p for p in parts if p.height]
    if not parts:
        return pl.DataFrame({c: [] for c in columns[:2]}, schema={c: pl.String for c in columns[:2]})
    return pl.concat([p.with_columns(pl.all().cast(pl.String)) for p in parts], how="diagonal")


def reconcile(expected: Iterable[pl.DataFrame], received: Iterable[pl.DataFrame],
              n_examples: int = 5) -> VerifyReport:
    """Compare every expected event id and label with what was received."""
    want = _frames(expected, [EVENT_ID, LABEL])
    got = _frames(received, [EVENT_ID, LABEL, "header_label"])
    per_id = got.group_by(EVENT_ID).agg(
        pl.len().alias("copies"),
        pl.col(LABEL).first().alias("got_label"),
        pl.col(LABEL).n_unique().alias("labels"),
    )
    joined = want.join(per_id, on=EVENT_ID, how="left")
    missing = joined.filter(pl.col("copies").is_null())
    mislabelled = joined.filter(
        pl.col("copies").is_not_null()
        & (pl.col("got_label").ne_missing(pl.col(LABEL)) | (pl.col("labels") > 1))
    )
    duplicated = per_id.filter(pl.col("copies") > 1)
    unexpected = per_id.join(want, on=EVENT_ID, how="anti")
    header = (got.filter(pl.col("header_label") != pl.col(LABEL))
              if "header_label" in got.columns else got.head(0))

    def ids(frame: pl.DataFrame) -> list[str]:
        return frame[EVENT_ID].head(n_examples).to_list()

    ranges, n_ranges = id_ranges(missing[EVENT_ID])

    return VerifyReport(
        expected=want.height,
        received=got.height,
        missing=missing.height,
        duplicated=duplicated.height,
        mislabelled=mislabelled.height,
        unexpected=unexpected.height,
        header_mismatch=header.height,
        examples={name: ids(frame) for name, frame in (
            ("missing", missing), ("duplicated", duplicated), ("mislabelled", mislabelled),
            ("unexpected", unexpected), ("header_mismatch", header)) if frame.height},
        missing_ranges=ranges,
        missing_ranges_total=n_ranges,
    )
