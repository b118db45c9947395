"""What each request is: method, URL with the path filled from the event, headers, JSON body.

``--to http://host/accounts/{customer_id}/tx`` and ``--header 'X-Customer: {customer_id}'`` name
columns of the event in braces; the body is the event as a JSON object (or, with ``--batch N``,
N events as a JSON array, the template filled from the first of them). Rendering runs on the
feeder thread, batch by batch with polars, so the sending loop only hands bytes to the client.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import quote, urlsplit

import polars as pl
from streamsynth.connectors.records import json_lines

from streamsynth.contract import IS_ANOMALY, LABEL, NORMAL
from streamsynth.errors import StreamsynthError

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: the label of a request from a source without a label column
UNLABELLED = "unlabelled"


class Request(NamedTuple):
    """One prepared request and the ground truth of the events it carries (a named tuple rather
    than a frozen data class: one is made per request, and a frozen data class's ``__init__``
    costs twice the tuple's, half a microsecond of the feeder's time a request)."""

    url: str
    headers: dict[str, str]
    body: bytes
    label: str
    is_anomaly: bool | None  # None: the source has no is_anomaly column
    truth: bool | None = None  # whether --expect says it should be flagged (None without --expect)


def _fields(template: str, option: str) -> list[str]:
    """The column names a template refers to, in order; positional or formatted fields are refused."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise StreamsynthError(f"{option} {template!r}: {exc}",
                               hint="write column names in braces, e.g. /accounts/{customer_id}; "
                               "double a literal brace: {{") from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise StreamsynthError(f"{option} {template!r}: {{{name}}} is not a column name",
                                   hint="write bare column names in braces, e.g. {customer_id}")
        names.append(name)
    return names


@dataclass(frozen=True)
class RequestTemplate:
    """How an event becomes a request; checked against the stream's columns on its first batch."""

    url: str
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = ()
    batch: int = 1

    @classmethod
    def build(cls, url: str, method: str = "POST", headers: list[str] | None = None,
              batch: int = 1) -> RequestTemplate:
        """Check the options' syntax (not yet the columns) and build the template."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StreamsynthError(f"--to {url!r} is not an http(s) URL",
                                   hint="write --to http://host:port/path or https://host/path")
        try:
            parts.port  # noqa: B018 - urllib checks the port only when asked for it
        except ValueError:
            raise StreamsynthError(f"--to {url!r} has a port that is not a number from 0 to 65535",
                                   hint="write --to http://host:port/path") from None
        if parts.query and "{" in parts.query:
            _fields(parts.query, "--to")
        _fields(parts.path, "--to")
        method = method.upper()
        if method not in METHODS:
            raise StreamsynthError(f"--method {method!r} is not supported",
                                   hint=f"use one of {', '.join(METHODS)}")
        pairs = []
        for header in headers or []:
            name, sep, value = header.partition(":")
            if not sep or not name.strip() or " " in name.strip():
                raise StreamsynthError(f"--header {header!r} is not NAME: VALUE",
                                       hint="write --header 'X-Customer: {customer_id}'")
            _fields(value.strip(), "--header")
            pairs.append((name.strip(), value.strip()))
        if batch < 1:
            raise StreamsynthError(f"--batch {batch} is below 1", hint="give --batch 1 or more events per request")
        return cls(url=url, method=method, headers=tuple(pairs), batch=batch)

    @property
    def columns(self) -> list[str]:
        """Every column the URL and header templates name."""
        names = _fields(self.url, "--to")
        for _, value in self.headers:
            names += _fields(value, "--header")
        return list(dict.fromkeys(names))

    def check(self, batch: pl.DataFrame) -> None:
        """Refuse a template naming a column the stream lacks (before the first request leaves)."""
        missing = [c for c in self.columns if c not in batch.columns]
        if missing:
            raise StreamsynthError(f"--to/--header name column {missing[0]!r}, which the source does not have",
                                   hint=f"the source's columns: {', '.join(batch.columns)}")

    def render(self, batch: pl.DataFrame,
               truths: Callable[[pl.DataFrame], list[bool]] | None = None) -> Iterator[Request]:
        """The requests of one batch of events, ``self.batch`` events each; ``truths`` gives each
        event's --expect truth, and a request is true when any of its events is."""
        columns = self.columns
        truth_of = truths(batch) if truths is not None else None
        has_label, has_truth = LABEL in batch.columns, IS_ANOMALY in batch.columns
        bodies = json_lines(batch)
        values = batch.select(pl.col(c).cast(pl.String) for c in columns).rows() if columns else None
        labels = batch.get_column(LABEL).to_list() if has_label else None
        truth = batch.get_column(IS_ANOMALY).to_list() if has_truth else None
        if self.batch == 1 and not values:  # the common case, a request an event: no slices, one URL
            yield from self._one_each(bodies, labels, truth, truth_of)
            return
        for i in range(0, batch.height, self.batch):
            j = min(i + self.batch, batch.height)
            raw = {c: "" if v is None else v for c, v in zip(columns, values[i], strict=True)} if values else {}
            # path values are percent-encoded (a '/' in a value must not add a path segment)
            url = self.url.format(**{c: quote(v, safe="") for c, v in raw.items()})
            headers = {name: value.format(**raw) for name, value in self.headers}
            if self.batch == 1:
                body = bodies[i]
            else:
                body = b"[" + b",".join(bodies[i:j]) + b"]"
            yield Request(url, headers, body, _label(labels, i, j),
                          any(truth[i:j]) if truth is not None else None,
                          any(truth_of[i:j]) if truth_of is not None else None)

    def _one_each(self, bodies: list[bytes], labels: list[str | None] | None, truth: list[bool] | None,
                  truth_of: list[bool] | None) -> Iterator[Request]:
        """:meth:`render` for one event a request and templates naming no column: the URL and the
        headers are the same for every request (formatted once, so a doubled brace is still one),
        and each request is its event's body, label and truths."""
        url = self.url.format()
        headers = {name: value.format() for name, value in self.headers}
        n = len(bodies)
        labels = [label or NORMAL for label in labels] if labels is not None else [UNLABELLED] * n
        anomalies = [bool(t) for t in truth] if truth is not None else [None] * n
        truths = [bool(t) for t in truth_of] if truth_of is not None else [None] * n
        for body, label, anomaly, true in zip(bodies, labels, anomalies, truths, strict=True):
            yield Request(url, headers, body, label, anomaly, true)


def _label(labels: list[str | None] | None, i: int, j: int) -> str:
    """The label of a request: its events' label, or, for a batch mixing them, the first label
    that is not ``normal`` (so an injected scenario's events are never hidden among normal ones)."""
    if labels is None:
        return UNLABELLED
    chosen = labels[i] or NORMAL
    for label in labels[i:j]:
        if label and label != NORMAL:
            return label
    return chosen
