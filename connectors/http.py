"""The ``http://`` and ``https://`` sink: batched JSON POSTs with concurrency, retries and dead letters.

Events are POSTed in batches (a JSON array, or JSON Lines) by a small pool of keep-alive
connections. 429, 408, 5xx, timeouts and connection errors are retried with exponential backoff
and jitter, honouring ``Retry-After``; a batch that still fails goes to the dead-letter file as
JSON Lines (replayable as a source), or, without one, makes :meth:`HttpSink.flush` raise.
"""

from __future__ import annotations

import http.client
import os
import random
import socket
import ssl
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import polars as pl
from streamsynth.connectors.base import Sink, SinkURL
from streamsynth.connectors.records import json_array, label_counts, ndjson_bytes, slice_label_counts

from streamsynth.errors import StreamsynthError

OPTIONS = ("batch (events per request), concurrency, timeout, retries, backoff, max_backoff, "
           "linger, dead_letter (file), auth_env (variable holding the header value), "
           "auth_header, format (json|ndjson)")
_MAX_RETRY_AFTER = 600.0


def _retryable(status: int) -> bool:
    return status in (408, 429) or 500 <= status < 600


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


class _Failed(Exception):
    """A batch that exhausted its retries or was refused outright."""


class HttpSink(Sink):
    """POSTs batches of ``batch`` events from ``concurrency`` threads; acknowledges on flush."""

    scheme = "http"

    def __init__(self, url: SinkURL, **kwargs) -> None:
        super().__init__(url, **kwargs)
        self.batch_size = url.integer("batch", 500, minimum=1)
        self.concurrency = url.integer("concurrency", 4, minimum=1)
        self.timeout = url.duration("timeout", 10.0)
        self.retries = url.integer("retries", 8)
        self.backoff = url.duration("backoff", 0.2)
        self.max_backoff = url.duration("max_backoff", 30.0)
        self.linger = url.duration("linger", 0.1)
        dead_letter = url.text("dead_letter")
        auth_env = url.text("auth_env")
        auth_header = url.text("auth_header", "Authorization")
        self.format = url.text("format", "json", choices=("json", "ndjson"))
        url.finish(OPTIONS)
        if self.timeout <= 0:
            raise StreamsynthError(f"sink URL {url.redacted()!r}: timeout must be above 0",
                                   hint="e.g. ?timeout=10s")
        self.secure = url.scheme == "https"
        if url.userinfo is not None:
            raise StreamsynthError(
                f"sink URL {url.redacted()!r} carries credentials",
                hint="put the Authorization header value in an environment variable and name it "
                "with ?auth_env=VAR (URLs end up in logs and manifests)",
            )
        self.host, _, port = url.netloc.partition(":")
        if not self.host:
            raise StreamsynthError(f"sink URL {url.redacted()!r} names no host",
                                   hint="write http://host:port/path")
        try:
            self.port = int(port) if port else (443 if self.secure else 80)
        except ValueError:
            raise StreamsynthError(f"sink URL {url.redacted()!r}: port {port!r} is not a number",
                                   hint="write http://host:port/path") from None
        self.path = url.path or "/"
        self.headers = {
            "Content-Type": "application/json" if self.format == "json" else "application/x-ndjson",
            "Connection": "keep-alive",
        }
        if auth_env:
            secret = os.environ.get(auth_env)
            if not secret:
                raise StreamsynthError(
                    f"sink URL {url.redacted()!r}: environment variable {auth_env} is not set",
                    hint=f"export {auth_env} with the value of the {auth_header} header",
                )
            self.headers[auth_header] = secret
        self.dead_letter_path = Path(dead_letter) if dead_letter else None
        if self.dead_letter_path is not None:
            try:
                self.dead_letter_path.parent.mkdir(parents=True, exist_ok=True)
                self.dead_letter_path.open("ab").close()
            except OSError as exc:
                raise StreamsynthError(
                    f"cannot write the dead-letter file {self.dead_letter_path}: {exc.strerror}",
                    hint="choose a writable path for ?dead_letter=",
                ) from None
        self._probe()
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="http-sink")
        self._slots = threading.BoundedSemaphore(self.concurrency * 2)
        self._lock = threading.Lock()
        self._futures: list[Future] = []
        # Delivered since the last _publish(), noted by the pool's threads under _lock.
        self._done_labels: dict[str, int] = {}
        self._done_bytes = 0
        self._done_latencies: list[float] = []
        self._failures: list[str] = []
        self._undelivered = 0
        self._buffer: list[pl.DataFrame] = []
        self._buffered = 0
        self._buffer_since = 0.0

    def _probe(self) -> None:
        """Fail early and clearly on a host that cannot be reached at all (typo, wrong port)."""
        try:
            socket.create_connection((self.host, self.port), timeout=min(self.timeout, 5.0)).close()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise StreamsynthError(
                f"cannot reach {self.url.without_options()}: {reason}",
                hint="check the host and port, and that the receiver is running",
            ) from None

    # -- handing events over -------------------------------------------------------------------
    def write(self, batch: pl.DataFrame) -> None:
        if batch.height == 0:
            return
        if not self._buffer:
            self._buffer_since = time.monotonic()
        self._buffer.append(batch)
        self._buffered += batch.height
        self.written += batch.height
        if self._buffered >= self.batch_size:
            merged = (self._buffer[0] if len(self._buffer) == 1
                      else pl.concat(self._buffer, how="vertical", rechunk=False))
            full = (merged.height // self.batch_size) * self.batch_size
            counts = slice_label_counts(merged.slice(0, full), self.batch_size)
            for offset, labels in zip(range(0, full, self.batch_size), counts, strict=True):
                self._submit(merged.slice(offset, self.batch_size), labels)
            rest = merged.slice(full)
            self._buffer = [rest] if rest.height else []
            self._buffered = rest.height
            self._buffer_since = time.monotonic()
        else:
            self.poll()
        self._publish()

    def poll(self) -> None:
        if self._buffer and time.monotonic() - self._buffer_since >= self.linger:
            self._submit_buffer()
        self._publish()

    def _submit_buffer(self) -> None:
        if self._buffer:
            chunk = pl.concat(self._buffer, how="vertical")
            self._submit(chunk, label_counts(chunk))
            self._buffer, self._buffered = [], 0

    def _submit(self, chunk: pl.DataFrame, labels: dict[str, int]) -> None:
        # At most 2 x concurrency batches in flight: the caller blocks here when the endpoint is slow.
        if not self._slots.acquire(blocking=False):
            waiting = time.monotonic()
            self._slots.acquire()
            self.blocked += time.monotonic() - waiting
        try:
            future = self._pool.submit(self._deliver, chunk, labels)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _f: self._slots.release())
        self._futures.append(future)

    def flush(self) -> None:
        self._submit_buffer()
        futures, self._futures = self._futures, []
        for future in futures:
            while True:
                try:
                    future.result(timeout=0.25)
                    break
                except TimeoutError:  # waited in slices, so a shutdown cutoff is noticed
                    cut = self.cut_short()
                    if cut is not None:
                        raise cut from None
        self._publish()
        with self._lock:
            failures, self._failures = self._failures, []
            undelivered, self._undelivered = self._undelivered, 0
        if failures:
            raise self.giving_up(StreamsynthError(
                f"{undelivered} events could not be delivered to {self.url.without_options()} "
                f"({failures[-1]})",
                hint="add ?dead_letter=FILE to keep batches that still fail, raise ?retries=, "
                "or fix the endpoint; the checkpoint keeps the last delivered position",
            ))
        self.acked = self.written

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._pool.shutdown(wait=True)
            conn = getattr(self._local, "conn", None)
            if conn is not None:
                conn.close()

    def abort(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._publish()

    def _publish(self) -> None:
        """Move what the pool's threads delivered into the metrics, on the caller's thread: the
        threads only note it (one lock), so Prometheus' own locks and label lookups are paid once
        per write, poll or flush rather than once per request."""
        with self._lock:
            if not self._done_latencies:
                return
            labels, nbytes, latencies = self._done_labels, self._done_bytes, self._done_latencies
            self._done_labels, self._done_bytes, self._done_latencies = {}, 0, []
        for seconds in latencies:
            self.metrics.latency(self.scheme, seconds)
        self.metrics.delivered(self.scheme, labels, nbytes)

    # -- delivery, on the pool's threads ---------------------------------------------------------
    def _deliver(self, chunk: pl.DataFrame, labels: dict[str, int]) -> None:
        body = json_array(chunk) if self.format == "json" else ndjson_bytes(chunk)
        start = time.perf_counter()
        try:
            self._post_with_retries(body)
        except _Failed as exc:
            self._give_up(chunk, labels, str(exc))
            return
        seconds = time.perf_counter() - start
        with self._lock:
            done = self._done_labels
            for label, count in labels.items():
                done[label] = done.get(label, 0) + count
            self._done_bytes += len(body)
            self._done_latencies.append(seconds)

    def _post_with_retries(self, body: bytes) -> None:
        attempt = 0
        while True:
            retry_after = None
            try:
                status, retry_header = self._post(body)
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                kind = "timeout" if isinstance(exc, TimeoutError) else "connection"
                last = f"{kind} error: {exc}"
            else:
                if 200 <= status < 300:
                    return
                kind, last = str(status), f"HTTP {status}"
                if not _retryable(status):
                    self.metrics.error(self.scheme, kind, outage=False)
                    raise _Failed(f"{last}, not retried")
                retry_after = retry_after_seconds(retry_header)
            self.metrics.error(self.scheme, kind)
            if attempt >= self.retries:
                raise _Failed(f"{last} after {attempt + 1} attempts")
            # Backoff in slices: once a stop is asked for, no retry may outlast the shutdown timeout.
            end = time.monotonic() + self._delay(attempt, retry_after)
            while (left := end - time.monotonic()) > 0:
                if self.cutoff is not None and time.monotonic() > self.cutoff:
                    raise _Failed(f"{last}; retries stopped at shutdown")
                time.sleep(min(left, 0.1))
            self.metrics.retry(self.scheme)
            attempt += 1

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(self.max_backoff, self.backoff * (2**attempt))
        # "Equal jitter": at least half the exponential step, so retries spread but still back off.
        jittered = ceiling / 2 + random.uniform(0, ceiling / 2)
        if retry_after is not None:
            # The server said when; a little jitter keeps the pool's threads from retrying in step.
            return retry_after + random.uniform(0, min(0.1, ceiling / 10))
        return jittered

    def _post(self, body: bytes) -> tuple[int, str | None]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.secure:
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                   context=ssl.create_default_context())
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.conn = conn
        conn.request("POST", self.path, body=body, headers=self.headers)
        response = conn.getresponse()
        response.read()
        if response.will_close:
            self._drop_connection()
        return response.status, response.getheader("Retry-After")

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _give_up(self, chunk: pl.DataFrame, counts: dict[str, int], reason: str) -> None:
        if self.dead_letter_path is None:
            with self._lock:
                self._failures.append(reason)
                self._undelivered += chunk.height
            return
        data = ndjson_bytes(chunk)
        with self._lock:
            with self.dead_letter_path.open("ab") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            self.dead_lettered += chunk.height
        self.metrics.dead_letter(self.scheme, counts)


class HttpsSink(HttpSink):
    """``https://``: the same sink over TLS (certificates checked against the system store)."""

    scheme = "https"
