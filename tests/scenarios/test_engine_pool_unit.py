"""Unit tests of the scenario engine (:mod:`streamsynth.scenarios.engine`) on a ten-row base, and of
the fraud injectors' base-row pool (:mod:`streamsynth.scenarios.pool`) per its docstrings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from streamsynth.scenarios import Context, parse_scenario
from streamsynth.scenarios.engine import Injection, build_injectors, inject
from streamsynth.scenarios.pool import POOL_ROWS, Pool, StreamPool

from streamsynth.contract import EVENT_ID, IS_ANOMALY, LABEL, NORMAL, SCENARIO_ID, with_label_columns

START = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def tiny_base(n: int = 10) -> pl.DataFrame:
    """One event a minute, two entities taking turns, every request a 200."""
    frame = pl.DataFrame({
        EVENT_ID: [f"e-{i}" for i in range(n)],
        "ts": pl.Series([START + timedelta(minutes=i) for i in range(n)]).cast(pl.Datetime("us", "UTC")),
        "user": [f"u{i % 2}" for i in range(n)],
        "status": [200] * n,
        "bytes": [100 + i for i in range(n)],
    })
    return with_label_columns(frame)


def scenario(*events: dict):
    return parse_scenario({"name": "s", "seed": 4, "base": {"source": "demo", "duration": "10m"},
                           "events": list(events)})


def batches(frame: pl.DataFrame, size: int):
    return (frame.slice(i, size) for i in range(0, frame.height, size))


ERROR = {"kind": "error_spike", "at": "3m", "duration": "1m", "targets": {"share": 1.0},
         "params": {"column": "status", "values": [503]}}
DUPLICATE = {"kind": "duplicate_events", "at": "2m", "duration": "1m", "targets": {"share": 1.0},
             "params": {"delay": "90s"}}


def run(events: list[dict], size: int = 4, report: dict | None = None) -> pl.DataFrame:
    ctx = Context(time="ts", entity="user")
    parts = list(Injection(scenario(*events), ctx, None, report).run(batches(tiny_base(), size)))
    return pl.concat(parts, how="vertical")


def test_base_has_normal_labels():
    base = tiny_base()
    assert base[LABEL].to_list() == [NORMAL] * 10
    assert base[IS_ANOMALY].to_list() == [False] * 10 and base[SCENARIO_ID].null_count() == 10


def test_one_changed_event_with_exact_labels():
    report: dict = {}
    out = run([ERROR], report=report)
    base = tiny_base()
    assert out.height == 10 and out[EVENT_ID].to_list() == base[EVENT_ID].to_list()
    hit = out.filter(pl.col(EVENT_ID) == "e-3").row(0, named=True)
    assert hit["status"] == 503
    assert hit[LABEL] == "ops.error_spike" and hit[IS_ANOMALY] is True and hit[SCENARIO_ID] == "s/0-error_spike"
    rest = out.filter(pl.col(EVENT_ID) != "e-3")
    assert rest.equals(base.filter(pl.col(EVENT_ID) != "e-3").select(out.columns))  # untouched, exactly
    (event,) = report["events"]
    assert (event["rows_changed"], event["rows_added"], event["rows_removed"]) == (1, 0, 0)
    assert event["window_start"] == (START + timedelta(minutes=3)).isoformat()
    assert event["window_end"] == (START + timedelta(minutes=4)).isoformat()


def test_one_injected_event_is_merged_in_time_order():
    out = run([DUPLICATE])
    assert out.height == 11
    copy = out.filter(pl.col(EVENT_ID) == "s/0/e-2")
    assert copy.height == 1
    row = copy.row(0, named=True)
    assert row["duplicate_of"] == "e-2" and row["bytes"] == 102
    assert row["ts"] == START + timedelta(minutes=3, seconds=30)
    assert row["original_ts"] == START + timedelta(minutes=2)
    assert (row[LABEL], row[IS_ANOMALY], row[SCENARIO_ID]) == ("ops.duplicate", True, "s/0-duplicate_events")
    # between e-3 (3m) and e-4 (4m), and the original itself unchanged
    ids = out[EVENT_ID].to_list()
    assert ids.index("s/0/e-2") == ids.index("e-3") + 1 == ids.index("e-4") - 1
    assert out["ts"].is_sorted()
    original = out.filter(pl.col(EVENT_ID) == "e-2").row(0, named=True)
    assert original[LABEL] == NORMAL and original["duplicate_of"] is None and original["original_ts"] is None


@pytest.mark.parametrize("size", [1, 3, 10])
def test_output_does_not_depend_on_the_batch_size(size):
    assert run([ERROR, DUPLICATE], size=size).equals(run([ERROR, DUPLICATE], size=4))


def test_a_copy_past_the_base_end_is_emitted_at_the_end():
    late = dict(DUPLICATE, at="9m", params={"delay": "5m"})
    out = run([late])
    assert out.height == 11 and out[EVENT_ID][-1] == "s/0/e-9"
    assert out["ts"][-1] == START + timedelta(minutes=14)


def test_inject_is_the_injection_run_and_anchor_defaults_to_the_first_event():
    ctx = Context(time="ts", entity="user")
    out = pl.concat(list(inject(scenario(ERROR), batches(tiny_base(), 4), ctx)), how="vertical")
    assert out.equals(run([ERROR]))
    # an explicit anchor a minute later moves the window onto the next row
    ctx = Context(time="ts", entity="user")
    later = pl.concat(list(inject(scenario(ERROR), batches(tiny_base(), 4), ctx, anchor=START + timedelta(minutes=1))),
                      how="vertical")
    assert later.filter(pl.col("status") == 503)[EVENT_ID].to_list() == ["e-4"]


def test_build_injectors_windows_and_ids():
    injectors = build_injectors(scenario(ERROR, DUPLICATE), START)
    assert [i.kind for i in injectors] == ["error_spike", "duplicate_events"]
    assert injectors[1].start == START + timedelta(minutes=2) and injectors[1].end == START + timedelta(minutes=3)
    assert [i.scenario_id for i in injectors] == ["s/0-error_spike", "s/1-duplicate_events"]
    assert injectors[0].seed != injectors[1].seed


def test_an_unknown_column_is_a_clear_error():
    from streamsynth.errors import StreamsynthError

    bad = dict(ERROR, params={"column": "nope", "values": [503]})
    with pytest.raises(StreamsynthError, match="no column 'nope'"):
        run([bad])


# -- the pool -------------------------------------------------------------------------------------

N_BASE = 6_000
POOL_START = datetime(2024, 1, 1, tzinfo=UTC)


def pool_base() -> pl.DataFrame:
    """One row a second; entity ``a{i % 50}``; seconds 3000..3009 share one time (a tie)."""
    seconds = [3000 if 3000 <= i < 3010 else i for i in range(N_BASE)]
    return pl.DataFrame({
        "ts": pl.Series([POOL_START + timedelta(seconds=s) for s in seconds]).cast(pl.Datetime("us", "UTC")),
        "acct": [f"a{i % 50}" for i in range(N_BASE)],
        "row": list(range(N_BASE)),
    })


class Reader:
    """A ``Window`` over ``pool_base`` in batches of 500; a shard K/N holds accounts with number % N == K."""

    def __init__(self) -> None:
        self.frame = pool_base()
        self.calls: list[tuple] = []
        self.closed = 0

    def __call__(self, lo, hi, shard):
        self.calls.append((lo, hi, shard))
        frame = self.frame
        if shard is not None:
            k, n = shard
            frame = frame.filter(pl.col("acct").str.slice(1).cast(pl.Int64) % n == k)
        return self._batches(frame)

    def _batches(self, frame):
        try:
            for i in range(0, frame.height, 500):
                yield frame.slice(i, 500)
        finally:
            self.closed += 1


def at(second: int) -> datetime:
    return POOL_START + timedelta(seconds=second)


def test_pool_rows_are_the_last_pool_rows_before_end():
    reader = Reader()
    pool = Pool(reader, "ts", "acct")
    pool.calibrate(POOL_START)
    rows = pool.rows(at(5000))
    assert rows.height == POOL_ROWS
    assert rows["row"].to_list() == list(range(5000 - POOL_ROWS, 5000))
    assert rows["ts"].max() < at(5000)
    # cached: asking again reads nothing
    n_calls = len(reader.calls)
    assert pool.rows(at(5000)).equals(rows) and len(reader.calls) == n_calls
    assert reader.closed == len(reader.calls)  # every window stream was closed


def test_pool_keeps_every_row_tied_at_the_cut():
    pool = Pool(Reader(), "ts", "acct")
    end = 3005 + POOL_ROWS  # the cut falls inside the ten rows at second 3000
    rows = pool.rows(at(end))
    assert rows["ts"].min() == at(3000)
    assert rows.height == POOL_ROWS + 5  # all ten tied rows, not only the five within POOL_ROWS
    assert rows["row"].min() == 3000


def test_pool_at_the_base_start_looks_forward():
    pool = Pool(Reader(), "ts", "acct")
    pool.calibrate(POOL_START)
    rows = pool.rows(POOL_START)
    assert rows["row"].to_list() == list(range(POOL_ROWS))


def test_pool_span_does_not_depend_on_the_batch_size():
    small = Reader()
    small._batches = lambda frame: (frame.slice(i, 37) for i in range(0, frame.height, 37))
    a, b = Pool(Reader(), "ts", "acct"), Pool(small, "ts", "acct")
    a.calibrate(POOL_START)
    b.calibrate(POOL_START)
    assert a.rows(at(4500)).equals(b.rows(at(4500)))


def test_owns_without_shards_or_entity():
    rows = pl.DataFrame({"acct": ["a1", "zz"]})
    assert Pool(Reader(), "ts", "acct").owns(at(5000), rows).to_list() == [True, True]
    assert Pool(Reader(), "ts", "acct", shard=(0, 1)).owns(at(5000), rows).to_list() == [True, True]
    assert Pool(Reader(), "ts", None, shard=(0, 3)).owns(at(5000), rows).to_list() == [True, True]
    assert Pool(Reader(), "ts", None, shard=(2, 3)).owns(at(5000), rows).to_list() == [False, False]


def test_owns_partitions_rows_across_shards():
    n = 3
    # known accounts (a0..a49) and new ones the base lacks (mules)
    rows = pl.DataFrame({"acct": [f"a{i}" for i in range(50)] + [f"mule{i}" for i in range(30)]})
    owned = []
    for k in range(n):
        pool = Pool(Reader(), "ts", "acct", shard=(k, n))
        pool.calibrate(POOL_START)
        owned.append(pool.owns(at(5000), rows).to_list())
    per_row = [sum(col) for col in zip(*owned, strict=True)]
    assert per_row == [1] * rows.height  # every row on exactly one shard
    # a known account goes to the shard that generates it
    for i in range(50):
        assert owned[i % n][i] is True
    # new accounts spread over the shards by hash
    assert all(any(o[50:]) for o in owned)


def test_stream_pool_keeps_recent_rows_until_the_last_window():
    frame = pool_base()
    pool = StreamPool("ts", "acct", until=at(4000))
    for part in batches(frame.head(5000), 1000):
        pool.add(part)
    # kept: enough rows before the current batch, whatever the batch size
    assert pool.seen.height == 2 * POOL_ROWS + 1000
    assert pool.seen["row"][-1] == 4999
    assert not pool.closed  # the last batch starts at ``until``, not after it
    pool.add(frame.slice(5000, 500))  # starts after ``until``: kept, then the pool closes
    assert pool.closed and pool.seen["row"][-1] == 5499
    before = pool.seen
    pool.add(frame.slice(5500, 500))  # closed: no longer kept
    assert pool.seen is before
    rows = pool.rows(at(4500))
    assert rows.height == POOL_ROWS and rows["row"].to_list() == list(range(4500 - POOL_ROWS, 4500))


def test_stream_pool_ignores_empty_batches_and_is_open_before_until():
    pool = StreamPool("ts", "acct", until=at(4000))
    pool.add(pool_base().head(0))
    assert pool.seen is None and not pool.closed
    pool.add(pool_base().slice(3999, 10))  # starts before ``until``: still open
    assert not pool.closed and pool.seen.height == 10
