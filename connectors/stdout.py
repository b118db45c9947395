"""The ``-`` sink: events as JSON Lines on standard output (for pipes and quick looks)."""

from __future__ import annotations

import sys
import time
from typing import BinaryIO

import polars as pl
from streamsynth.connectors.base import Sink, SinkURL
from streamsynth.connectors.records import label_counts, ndjson_bytes

from streamsynth.errors import StreamsynthError


class StdoutSink(Sink):
    """Writes each batch as JSON Lines to stdout; an event is acknowledged once flushed."""

    scheme = "stdout"

    def __init__(self, url: SinkURL, stream: BinaryIO | None = None, **kwargs) -> None:
        super().__init__(url, **kwargs)
        url.finish("(none)")
        self._out = stream if stream is not None else sys.stdout.buffer

    def write(self, batch: pl.DataFrame) -> None:
        if batch.height == 0:
            return
        start = time.perf_counter()
        data = ndjson_bytes(batch)
        try:
            self._out.write(data)
            self._out.flush()
        except BrokenPipeError:
            # The reader went away (`| head`): nothing more can be delivered; say so plainly.
            raise StreamsynthError(
                "stdout was closed by the reader after "
                f"{self.acked} events", hint="pipe into a reader that consumes the whole stream",
            ) from None
        self.written += batch.height
        self.acked = self.written
        self.metrics.delivered(self.scheme, label_counts(batch), len(data))
        self.metrics.latency(self.scheme, time.perf_counter() - start)

    def flush(self) -> None:
        self._out.flush()
