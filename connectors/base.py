"""What every sink shares: the parsed sink URL with checked options, and the ``Sink`` interface.

A sink receives contract batches with :meth:`Sink.write`, delivers them in the background as it
sees fit, and on :meth:`Sink.flush` blocks until every event handed over is delivered or
dead-lettered (or raises). :attr:`Sink.acked` counts the events that are durable, in stream order.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import polars as pl
from streamsynth.connectors.metrics import ReplayMetrics

from streamsynth.errors import StreamsynthError

_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
               "kib": 1024, "mib": 1024**2, "gib": 1024**3}
_TIME_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_N = TypeVar("_N", int, float)


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
    #: ``user:password`` before the host, when the URL carries credentials (never printed)
    userinfo: str | None = None
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
        scheme, _, rest = url.partition("://")
        at = _userinfo_end(rest)
        userinfo = rest[:at] if at >= 0 else None
        try:
            # Split what follows the credentials: a '/', '?' or '#' in a password would otherwise
            # end the host part early and leak the rest of the password into the path.
            parts = urlsplit(f"{scheme}://{rest[at + 1:]}")
        except ValueError as exc:
            raise StreamsynthError(f"sink URL {redact(url)!r} is not valid ({exc})",
                                   hint="check the host part (an IPv6 address goes in [brackets])") from None
        try:
            pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        except ValueError:
            raise StreamsynthError(
                f"sink URL {redact(url)!r}: cannot parse the options {_redact_query(parts.query)!r}",
                hint="write options as ?name=value&name=value",
            ) from None
        options: dict[str, str] = {}
        for key, value in pairs:
            if key in options:
                raise StreamsynthError(f"sink URL {redact(url)!r}: option {key!r} given twice",
                                       hint="give each option once")
            options[key] = value
        return cls(raw=url, scheme=parts.scheme.lower(), netloc=parts.netloc, path=parts.path,
                   options=options, userinfo=userinfo)

    # -- typed option getters ------------------------------------------------------------
    def text(self, name: str, default: str | None = None, choices: tuple[str, ...] = ()) -> str | None:
        self._used.add(name)
        value = self.options.get(name, default)
        if value is not None and choices and value not in choices:
            raise self._bad(name, value, f"one of {', '.join(choices)}")
        return value

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        return self._at_least(name, default, minimum, int, "a whole number")

    def number(self, name: str, default: float, minimum: float = 0.0) -> float:
        return self._at_least(name, default, minimum, float, "a number")

    def _at_least(self, name: str, default: _N, minimum: _N, parse: Callable[[str], _N], kind: str) -> _N:
        """The option parsed by ``parse`` (``kind`` names what it must be, in the error), at least ``minimum``."""
        value = self.text(name)
        if value is None:
            return default
        try:
            number = parse(value)
        except ValueError:
            raise self._bad(name, value, kind) from None
        if number < minimum:
            raise self._bad(name, value, f"{kind} >= {minimum}")
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
        shown = SECRET if is_secret_option(name) else repr(value)
        return StreamsynthError(
            f"sink URL {self.redacted()!r}: option {name}={shown} is not valid",
            hint=f"{name} must be {expected}",
        )

    def redacted(self) -> str:
        return redact(self.raw)

    def scrub(self, text: str) -> str:
        """``text`` (an error from a client library, say) with this URL's credentials removed."""
        text = text.replace(self.raw, self.redacted())
        secrets = [self.userinfo.partition(":")[2] or self.userinfo] if self.userinfo else []
        secrets += [v for k, v in self.options.items() if v and is_secret_option(k)]
        for secret in sorted(secrets, key=len, reverse=True):
            if len(secret) >= 3:  # a one- or two-character "secret" would blank out ordinary text
                text = text.replace(secret, SECRET)
        return text

    def without_options(self) -> str:
        """Scheme, host and path (credentials and options left out), for messages."""
        return urlunsplit((self.scheme, self.netloc, self.path, "", ""))


SECRET = "***"
#: option names whose values are credentials; auth_env/auth_header name a variable and a header
_SECRET_OPTION = re.compile(r"pass|pwd|secret|token|auth|credential|cookie|session|signature|"
                            r"(^|_)key$|^key|apikey|private", re.IGNORECASE)
_NAMES_NOT_SECRETS = frozenset({"auth_env", "auth_header"})
# What may follow the '@' that ends the credentials: host[:port][,host:port...], then / ? # or the end.
_HOST_PART = re.compile(r"[A-Za-z0-9.\-_\[\]:,%]*(?=[/?#]|$)")
# Text before an '@' that reads as host[:port]/path?name=value: the '@' is in an option value.
_IN_QUERY = re.compile(r"[^:/?#]+(:\d+)?[/?#].*[?&][^=&]+=")


def is_secret_option(name: str) -> bool:
    return name.lower() not in _NAMES_NOT_SECRETS and bool(_SECRET_OPTION.search(name))


def _userinfo_end(rest: str) -> int:
    """Where the credentials of ``rest`` (a URL after ``://``) end: the index of their '@', or -1.

    Users paste passwords unencoded, so the userinfo may itself hold '@', '/', '?' or ':': the
    LAST '@' that is followed by a host part wins. The user name (before the first ':') holds no
    '/', which keeps paths such as ``file:///data/a@b.jsonl`` from being read as credentials, and
    an '@' after ``host:port/path?name=`` belongs to an option (``?dead_letter=/x/a@b.jsonl``).
    """
    at = rest.rfind("@")
    while at >= 0:
        user = rest[:at].partition(":")[0]
        if (_HOST_PART.match(rest, at + 1) and not any(c in user for c in "/?#")
                and not _IN_QUERY.match(rest, 0, at)):
            return at
        at = rest.rfind("@", 0, at)
    return -1


def _redact_query(query: str) -> str:
    pairs = []
    for pair in query.split("&"):
        name, eq, _value = pair.partition("=")
        pairs.append(f"{name}={SECRET}" if eq and is_secret_option(name) else pair)
    return "&".join(pairs)


def redact(url: str) -> str:
    """The URL with every credential replaced, for messages, logs, manifests and checkpoints:
    the password of ``user:password@host`` (or a bare ``token@host``) and the values of options
    named like secrets (``?token=``, ``?sasl_password=``, ``?api_key=`` ...)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    at = _userinfo_end(rest)
    if at >= 0:
        user, colon, _password = rest[:at].partition(":")
        rest = (f"{user}:{SECRET}" if colon else SECRET) + rest[at:]
        at = rest.index("@")
    path, question, query = rest[at + 1:].partition("?")
    if question:
        rest = rest[:at + 1] + path + "?" + _redact_query(query)
    return f"{scheme}{sep}{rest}"


class ShutdownTimeout(StreamsynthError):
    """A stop was asked for and the sink's endpoint did not acknowledge everything within the
    shutdown timeout; the replay ends with those events unacknowledged (resent on resume)."""

    def __init__(self, pending: int, where: str) -> None:
        super().__init__(f"{pending:,} events not acknowledged by {where} within the shutdown timeout",
                         hint="resume from the checkpoint once the endpoint is back, or raise "
                         "--shutdown-timeout")
        self.pending = pending


class Sink:
    """Base of every sink. Subclasses set ``scheme`` and implement ``write``/``flush``/``close``.

    ``time`` and ``entity`` name the stream's time and entity columns (the entity becomes the
    Kafka key); ``append`` is set when a replay resumes, so file sinks add parts instead of
    replacing output; ``state`` and ``durable`` serve checkpointed replays (:meth:`state`).
    """

    scheme: ClassVar[str] = ""

    def __init__(self, url: SinkURL, *, time: str | None = None, entity: str | None = None,
                 metrics: ReplayMetrics | None = None, append: bool = False,
                 state: dict | None = None, durable: bool = False) -> None:
        self.url = url
        # From the checkpoint: what :meth:`state` returned at the position the replay resumes at.
        self.resume_state = state or {}
        # The replay checkpoints: make what is acknowledged survive a crash (see FileSink).
        self.durable = durable
        self.time = time
        self.entity = entity
        self.metrics = metrics or ReplayMetrics()
        self.append = append
        # Events durable (delivered or dead-lettered). It only ever moves up to `written`, all at
        # once: a sink acknowledges everything handed over so far (on flush, or a file part).
        self.acked = 0
        self.written = 0  # events handed over with write()
        self.dead_lettered = 0
        # Set (a time.monotonic() value) once a stop is asked for: from then on no wait on the
        # endpoint may go past it, so a broker that is down cannot hold a shutdown for long.
        self.cutoff: float | None = None
        # Seconds spent inside write/poll waiting for the endpoint to take more (backpressure),
        # so the replay loop can put them down to the endpoint rather than the sink.
        self.blocked = 0.0

    def past(self, deadline: float) -> bool:
        """Whether a wait that must end by ``deadline`` (or by the shutdown cutoff) is over."""
        now = time.monotonic()
        return now > deadline or (self.cutoff is not None and now > self.cutoff)

    def wait_left(self, deadline: float) -> float:
        """Seconds a wait may still take: up to ``deadline`` and never past the cutoff."""
        end = deadline if self.cutoff is None else min(deadline, self.cutoff)
        return max(end - time.monotonic(), 0.0)

    def cut_short(self) -> StreamsynthError | None:
        """The error for the events still unacknowledged when the shutdown cutoff passed, or
        ``None`` while the cutoff is not the reason a wait ended."""
        if self.cutoff is None or time.monotonic() <= self.cutoff:
            return None
        return ShutdownTimeout(self.written - self.acked, self.describe())

    def giving_up(self, error: StreamsynthError) -> StreamsynthError:
        """What to raise when the sink gives up on its unacknowledged events: the shutdown
        cutoff's error where the cutoff is why, else ``error``."""
        return self.cut_short() or error

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

    def state(self) -> dict:
        """What a resumed replay needs (besides the position) to continue exactly where this one
        acknowledged; stored in the checkpoint and handed back as ``state``."""
        return {}

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
