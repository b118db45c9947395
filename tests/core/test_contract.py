"""The stream contract: event ids, the k-way merge, re-batching and the contract checker."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamsynth.contract import (
    StreamChecker,
    check_stream,
    event_ids,
    merge,
    rebatch,
    with_label_columns,
)
from streamsynth.errors import StreamsynthError

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _source(name: str, times_s: list[int], batch: int) -> list[pl.DataFrame]:
    frame = pl.DataFrame(
        {
            "event_id": [f"{name}-{i}" for i in range(len(times_s))],
            "ts": [T0.timestamp() * 1e6 + t * 1e6 for t in sorted(times_s)],
            "src": [name] * len(times_s),
        }
    ).with_columns(pl.col("ts").cast(pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
    return [frame.slice(i, batch) for i in range(0, frame.height, batch)]


def test_event_ids_are_deterministic_and_unique():
    ids = event_ids("s1", np.array([0, 0, 1, 12]), np.array([0, 1, 0, 3]))
    assert ids.to_list() == ["s1-0-0", "s1-0-1", "s1-1-0", "s1-12-3"]
    assert ids.equals(event_ids("s1", np.array([0, 0, 1, 12]), np.array([0, 1, 0, 3])))


@settings(max_examples=60, deadline=None)
@given(
    sources=st.lists(st.lists(st.integers(0, 500), min_size=0, max_size=60), min_size=1, max_size=6),
    batch=st.integers(1, 17),
    out_batch=st.integers(1, 50),
)
def test_merge_is_globally_time_ordered_and_loses_nothing(sources, batch, out_batch):
    streams = [_source(f"s{i}", times, batch) for i, times in enumerate(sources)]
    merged = list(merge(streams, time="ts", batch_size=out_batch))
    total = sum(len(t) for t in sources)
    assert sum(b.height for b in merged) == total
    assert all(b.height == out_batch for b in merged[:-1])
    if merged:
        whole = pl.concat(merged)
        assert whole["ts"].is_sorted()
        assert whole["event_id"].n_unique() == total


def test_merge_ties_keep_source_order():
    a = _source("a", [1, 1, 2], 2)
    b = _source("b", [1, 2], 1)
    out = pl.concat(list(merge([a, b], time="ts")))
    assert out["src"].to_list() == ["a", "a", "b", "a", "b"]


def test_rebatch_exact_sizes():
    frames = [pl.DataFrame({"x": list(range(i * 7, i * 7 + 7))}) for i in range(5)]
    out = list(rebatch(frames, 10))
    assert [b.height for b in out] == [10, 10, 10, 5]
    assert pl.concat(out)["x"].to_list() == list(range(35))


def _contract_batch(ids: list[str], seconds: list[int]) -> pl.DataFrame:
    frame = pl.DataFrame({"event_id": ids, "ts": [T0.timestamp() * 1e6 + s * 1e6 for s in seconds]})
    frame = frame.with_columns(pl.col("ts").cast(pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
    return with_label_columns(frame)


def test_checker_accepts_a_good_stream():
    batches = [_contract_batch(["a", "b"], [1, 2]), _contract_batch(["c"], [2])]
    assert sum(b.height for b in check_stream(batches, time="ts")) == 3


@pytest.mark.parametrize(
    ("batches", "message"),
    [
        ([_contract_batch(["a", "b"], [2, 1])], "not sorted"),
        ([_contract_batch(["a"], [5]), _contract_batch(["b"], [4])], "before the previous batch"),
        ([_contract_batch(["a"], [1]), _contract_batch(["a"], [2])], "repeats event id 'a'"),
        ([_contract_batch(["a"], [1]).drop("label")], "no column 'label'"),
        ([_contract_batch(["a"], [1]), _contract_batch(["b"], [2]).with_columns(x=pl.lit(1))], "same columns"),
    ],
)
def test_checker_rejects_violations(batches, message):
    with pytest.raises(StreamsynthError, match=message):
        list(check_stream(batches, time="ts"))


def test_checker_names_the_bad_type():
    bad = _contract_batch(["a"], [1]).with_columns(pl.col("is_anomaly").cast(pl.Int8))
    with pytest.raises(StreamsynthError, match="'is_anomaly' is Int8"):
        StreamChecker(time="ts").check(bad)


_MERGE_RSS = textwrap.dedent(
    """
    import resource, sys
    import numpy as np, polars as pl
    from streamsynth.contract import merge

    total, k, batch = int(sys.argv[1]), 8, 20_000
    per = total // k

    def source(s):
        # Event times of one source, generated lazily batch by batch.
        rng = np.random.default_rng(s)
        t = 0
        for start in range(0, per, batch):
            n = min(batch, per - start)
            gaps = rng.integers(1, 1_000_000, n)
            times = t + np.cumsum(gaps)
            t = int(times[-1])
            yield pl.DataFrame({"event_id": np.arange(start, start + n) * k + s, "ts": times})

    seen, last = 0, -1
    for out in merge([source(s) for s in range(k)], time="ts", batch_size=50_000):
        assert out["ts"][0] >= last
        last = out["ts"][-1]
        seen += out.height
    assert seen == per * k, seen
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    """
)


def _peak_rss_mb(total: int) -> int:
    done = subprocess.run([sys.executable, "-c", _MERGE_RSS, str(total)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


def test_merge_memory_is_flat_on_a_5m_event_stream():
    small = _peak_rss_mb(500_000)
    large = _peak_rss_mb(5_000_000)
    # Ten times the events must not need ten times the memory: 5M events of two int64 columns
    # would add ~80 MB if they were held; a flat merge adds only noise.
    assert large - small < 40, (small, large)
