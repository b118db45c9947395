"""What one stream is asked for: :class:`StreamRequest`, handed to every model's ``_stream``.

One value instead of a keyword list written out in every model: where the stream starts, how many
entities (and which shard of them), its seed, the conditions, how many events a batch holds, and,
for a finite stream, its first ``n_events`` events or those before ``end``. Those last two are a
hint to the model: it may stop generating what cannot be among them (an entity already past the
cut-off); the events it yields before the cut-off are the same as in the endless stream.

Three batch sizes live in this project under three names: ``events_per_batch`` here (events in
one stream batch), a model's training minibatch (``batch_size`` among its options: entities per
optimiser step), and a Kafka producer's ``batch_size`` (bytes, in the sink URL).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: shard K of N, 0 <= K < N
Shard = tuple[int, int]


@dataclass(frozen=True)
class StreamRequest:
    """A checked, resolved request: ``start`` is aware UTC, ``seed`` and ``n_entities`` are set."""

    start: datetime
    n_entities: int
    seed: int
    events_per_batch: int = 10_000
    conditions: dict[str, Any] = field(default_factory=dict)
    shard: Shard | None = None
    n_events: int | None = None
    end: datetime | None = None

    @property
    def finite(self) -> bool:
        """Whether the stream ends (after ``n_events`` or at ``end``)."""
        return self.n_events is not None or self.end is not None
