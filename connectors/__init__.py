"""The delivery layer: sinks opened from URLs, pacing, the replay loop and its metrics."""

from streamsynth.connectors.registry import SINKS, open_sink, read_back

__all__ = ["SINKS", "open_sink", "read_back"]
