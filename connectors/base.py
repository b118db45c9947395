"""What every sink shares: the parsed sink URL with checked options, and the ``Sink`` interface.

A sink receives contract batches with :meth:`Sink.write`, delivers them in the background as it
sees fit, and on :meth:`Sink.flush` blocks until every event handed over is delivered or
dead-lettered (or raises). :attr:`Sink.acked` counts the events that are durable, in stream order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import polars as pl

from connectors.metrics import ReplayMetrics
from streamsynth.errors import StreamsynthError

_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
               "kib": 1024, "mib": 1024**2, "gib": 1024**3}
_TIME_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


@dataclass
class SinkURL:
    """A sink URL split into scheme, location and options; options are checked as they are read.

    Each sink reads its options with the typed getters; :meth:`finish` then rejects any option
    no one read, so a typo (``?concurency=4``) is an error instead of being ignored.
    """

    raw: str
    scheme: str
    netloc: str
    path: str
    options: dict[str, str]
    _used: set[str] = field(default_factory=set)

    @classmethod
    def parse(cls, url: str) -> SinkURL:
        url = url.strip()
        if url == "-":
            return cls(raw=url, scheme="stdout", netloc="", path="", options={})
        if "://" not in url:
            # A bare path with a data-file suffix is a file sink: `out.parquet`, `./x/y.jsonl`.
            if re.search(r"\.(parquet|jsonl|ndjson|csv)(\?.*)?$", url, re.IGNORECASE):
                url = "file://" + url
            else:
                raise StreamsynthError(
                    f"sink URL {url!r} has no scheme",
                    hint="use kafka://host:port/topic, http://host:port/path, "
                    "file:///path/out.parquet (or .jsonl, .csv) or - for stdout",
                )
        parts = urlsplit(url)
        try:
            pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        except ValueError:
            raise StreamsynthError(
                f"sink URL {redact(url)!r}: cannot parse the options {parts.query!r}",
                hint="write options as ?name=value&name=value",
            ) from None
        options: dict[str, str] = {}
        for key, value in pairs:
            if key in options:
                raise StreamsynthError(f"sink URL {redact(url)!r}: option {key!r} given twice",
                                       hint="give each option once")
            options[key] = value
        return cls(raw=url, scheme=parts.scheme.lower(), netloc=parts.netloc, path=parts.path,
                   options=options)

    # -- typed option getters ------------------------------------------------------------
    def text(self, name: str, default: str | None = None, choices: tuple[str, ...] = ()) -> str | None:
        self._used.add(name)
        value = self.options.get(name, default)
        if value is not None and choices and value not in choices:
            raise self._bad(name, value, f"one of {', '.join(choices)}")
        return value

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        value = self.text(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise self._bad(name, value, "a whole number") from None
        if number < minimum:
            raise self._bad(name, value, f"a whole number >= {minimum}")
        return number

    def number(self, name: str, default: float, minimum: float = 0.0) -> float:
        value = self.text(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise self._bad(name, value, "a number") from None
        if number < minimum:
            raise self._bad(name, value, f"a number >= {minimum}")
        return number

    def boolean(self, name: str, default: bool) -> bool:
        value = self.text(name)
        if value is None:
            return default
        low = value.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise self._bad(name, value, "true or false")

    def size(self, name: str, default: int | None) -> int | None:
        """A byte size such as ``64MB``, ``1GiB`` or ``100000``."""
        value = self.text(name)
        if value is None:
            return default
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
        if not match or match.group(2).lower() not in _SIZE_UNITS or float(match.group(1)) <= 0:
            raise self._bad(name, value, "a size such as 64MB, 512KiB or 1000000")
        return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])

    def duration(self, name: str, default: float | None) -> float | None:
        """A duration in seconds such as ``250ms``, ``10s``, ``5m``, ``1h`` or ``2.5``."""
        value = self.text(name)
        if value is None:
            return default
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
        if not match or match.group(2).lower() not in _TIME_UNITS:
            raise self._bad(name, value, "a duration such as 250ms, 10s, 5m or 1h")
        return float(match.group(1)) * _TIME_UNITS[match.group(2).lower()]

    def finish(self, known: str) -> None:
        """Reject options no getter asked for; ``known`` lists them for the hint."""
        unknown = sorted(set(self.options) - self._used)
        if unknown:
            raise StreamsynthError(
                f"sink URL {self.redacted()!r}: unknown option {unknown[0]!r}",
                hint=f"{self.scheme} sinks take: {known}",
            )

    def _bad(self, name: str, value: str, expected: str) -> StreamsynthError:
        return StreamsynthError(
            f"sink URL {self.redacted()!r}: option {name}={value!r} is not valid",
            hint=f"{name} must be {expected}",
        )

    def redacted(self) -> str:
        return redact(self.raw)

    def without_options(self) -> str:
        parts = urlsplit(self.raw)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def redact(url: str) -> str:
    """The URL with any password in it replaced, for logs, manifests and checkpoints."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


class Sink:
    """Base of every sink. Subclasses set ``scheme`` and implement ``write``/``flush``/``close``.

    ``time`` and ``entity`` name the stream's time and entity columns (the entity becomes the
    Kafka key); ``append`` is set when a replay resumes, so file sinks add parts instead of
    replacing output.
    """

    scheme: ClassVar[str] = ""

    def __init__(self, url: SinkURL, *, time: str | None = None, entity: str | None = None,
                 metrics: ReplayMetrics | None = None, append: bool = False) -> None:
        self.url = url
        self.time = time
        self.entity = entity
        self.metrics = metrics or ReplayMetrics()
        self.append = append
        # Events durable (delivered or dead-lettered). It only ever moves up to `written`, all at
        # once: a sink acknowledges everything handed over so far (on flush, or a file part).
        self.acked = 0
        self.written = 0  # events handed over with write()
        self.dead_lettered = 0

    def write(self, batch: pl.DataFrame) -> None:
        """Hand a batch over; may block while the sink is behind (backpressure)."""
        raise NotImplementedError

    def poll(self) -> None:
        """Called while the replay loop waits for the schedule: send what has lingered."""

    def flush(self) -> None:
        """Block until every event written is delivered or dead-lettered; raise if neither."""
        raise NotImplementedError

    def close(self) -> None:
        """Flush and release connections and files."""

    def abort(self) -> None:
        """Release resources after a failure without waiting; unacknowledged events are dropped
        here and sent again by a resumed replay."""

    def describe(self) -> str:
        return self.url.redacted()

    @classmethod
    def read_back(cls, url: SinkURL, *, timeout: float = 10.0) -> Iterator[pl.DataFrame]:
        """Read what was delivered back as batches (for ``verify``), where the sink allows it."""
        raise StreamsynthError(
            f"cannot read events back from {url.redacted()!r}",
            hint="verify reads kafka:// topics and files; for http, verify what the receiver stored",
        )

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
