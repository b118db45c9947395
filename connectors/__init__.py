"""The delivery layer: sinks opened from URLs, pacing, the replay loop and its metrics."""
