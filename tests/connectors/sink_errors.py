"""Sink URLs that must be refused with a clear error: shared by the file and Kafka sink tests
(imported as a sibling module: pytest puts this folder on sys.path)."""

from __future__ import annotations

import pytest
from streamsynth.connectors import open_sink

from streamsynth.errors import StreamsynthError


def assert_refused(*cases: tuple[str, str]) -> None:
    """Each ``(url, pattern)``: opening a sink on ``url`` raises an error matching ``pattern``."""
    for url, pattern in cases:
        with pytest.raises(StreamsynthError, match=pattern):
            open_sink(url)
