"""``--loop``: a finite source (a recorded file, a sample with ``--events`` or ``--end``) replayed
from its start each time it runs out, until ``--duration`` or the stages end.

Each pass after the first suffixes the event ids (``ev-12`` -> ``ev-12-p2``): a service that
deduplicates by id would otherwise answer a replayed event as a duplicate, not as a new request.
The rest of each event is replayed as it was, its times included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import polars as pl

from streamsynth.contract import EVENT_ID


def looped(stream: Iterator[pl.DataFrame], reopen: Callable[[], Iterator[pl.DataFrame]],
           say: Callable[[str], None] = lambda line: None) -> Iterator[pl.DataFrame]:
    """``stream``, then ``reopen()``'s streams one after another, pass by pass; it ends only when a
    pass yields no event (a source that is empty on reopening would otherwise spin forever)."""
    yield from stream
    passes = 1
    while True:
        passes += 1
        say(f"the source ran out: replaying it from the start (pass {passes})")
        events = 0
        for batch in reopen():
            events += batch.height
            yield _with_pass(batch, passes)
        if events == 0:
            return


def _with_pass(batch: pl.DataFrame, passes: int) -> pl.DataFrame:
    if EVENT_ID not in batch.columns:
        return batch
    return batch.with_columns(pl.concat_str(pl.col(EVENT_ID).cast(pl.String), pl.lit(f"-p{passes}")).alias(EVENT_ID))
