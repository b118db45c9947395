"""A lean HTTP/1.1 client for the open-loop runner: request bytes over keep-alive connections.

Why not aiohttp, which sent the requests before: its request machinery (session, request and
response objects, header multidicts, stream readers) costs about 200 us of Python a request, so
one core could not keep more than ~2,500 requests a second on schedule, while the runner needs
little of it: one request at a time per connection, keep-alive, a deadline, TLS, the status and
the body. Here each request is rendered to its bytes once (on the feeder thread, beside the JSON
body), written to an idle connection of a pool, and its response parsed by ``httptools`` (the C
parser of the Node.js project that uvicorn uses): about 60 us a request.

Deadlines are checked by one sweep over the connections awaiting a response, every
``timeout / 8`` (at most 50 ms), rather than by a timer per request: a loop timer is a handle
made, pushed on the loop's heap and cancelled, some microseconds a request at thousands a
second. A request past its deadline fails at most one sweep late (50 ms of a 10 s timeout).

A connection the server closes (``Connection: close``, or an idle one it drops) leaves the pool.
Failures are the exceptions :func:`streamsynth.connectors.loadtest.runner.classify` sorts: a
``TimeoutError`` past the deadline, ``ConnectionRefusedError`` on connecting,
``ConnectionResetError`` when the connection ends before the response does, and
:class:`ProtocolError` for a response that is not HTTP.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httptools

from streamsynth import __version__

_SWEEP_AT_MOST = 0.05  # seconds between deadline sweeps, whatever the timeout


class ProtocolError(Exception):
    """The service answered something that is not an HTTP/1.x response."""


def wire(method: str, target: str, host: str, headers: dict[str, str], body: bytes | None) -> bytes:
    """One request as it goes on the connection: request line, headers, body."""
    before, after = _head(method, target, host, headers, body is not None)
    return before if body is None else before + b"%d" % len(body) + after + body


def _head(method: str, target: str, host: str, headers: dict[str, str], with_body: bool) -> tuple[bytes, bytes]:
    """A request's head in the two parts around its body's length (the value of Content-Length):
    request line, Host, User-Agent, with a body Content-Type and Content-Length, the headers."""
    top = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"User-Agent: streamsynth/{__version__}"]
    rest = [f"{name}: {value}" for name, value in headers.items()]
    if not with_body:
        return ("\r\n".join(top + rest) + "\r\n\r\n").encode("latin-1", errors="replace"), b""
    before = "\r\n".join([*top, "Content-Type: application/json", "Content-Length: "])
    after = "\r\n".join(["", *rest]) + "\r\n\r\n"
    return before.encode("latin-1", errors="replace"), after.encode("latin-1", errors="replace")


class Framer:
    """:func:`wire` for one run's requests, the head made again only when the URL or the headers
    change (by identity: a template naming no column gives every request the same two objects, so
    the whole run), about a microsecond of the feeder's time a request."""

    def __init__(self, method: str, pool: ConnectionPool, with_body: bool) -> None:
        self.method, self.pool, self.with_body = method, pool, with_body
        self.url: str | None = None
        self.headers: dict[str, str] | None = None
        self.before = self.after = b""

    def __call__(self, url: str, headers: dict[str, str], body: bytes) -> bytes:
        if url is not self.url or headers is not self.headers:
            self.url, self.headers = url, headers
            self.before, self.after = _head(self.method, self.pool.target(url), self.pool.netloc, headers,
                                            self.with_body)
        return self.before + b"%d" % len(body) + self.after + body if self.with_body else self.before


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []
        self.open = True
        self.deadline = 0.0  # loop time by which the response of the request in flight must be in
        self.loop: asyncio.AbstractEventLoop | None = None  # its loop, asked once (asking costs a getpid)
        self.done: Callable[[asyncio.Future[Any]], None] | None = None  # the pool's done callback, made once
        self.then: Callable[[asyncio.Future[Any]], None] | None = None  # the caller's, for the request in flight

    # -- asyncio.Protocol ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"not an HTTP response ({exc})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError("the connection ended before the response did"))

    # -- httptools callbacks --------------------------------------------------------------------------
    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        if not self.parser.should_keep_alive():
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), b"".join(self.body)))

    # -- the pool's side ---------------------------------------------------------------------------
    def send(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        self.body = []
        self.waiter = self.loop.create_future()
        self.transport.write(data)
        return self.waiter

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def expire(self) -> None:
        self._fail(TimeoutError("no response before the deadline"))

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.close()


class ConnectionPool:
    """Keep-alive connections to one origin; a request takes an idle one or opens another (the
    runner bounds requests in flight, so it bounds connections too)."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        self.host, self.tls = parts.hostname or "", parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.netloc = parts.netloc
        self.timeout = timeout
        self.context = ssl.create_default_context() if self.tls else None
        self.idle: list[_Connection] = []
        self.every: set[_Connection] = set()
        self.busy: set[_Connection] = set()  # awaiting a response: what the deadline sweep looks at
        self.sweep_every = min(timeout / 8, _SWEEP_AT_MOST)
        self.sweeper: asyncio.TimerHandle | None = None

    def target(self, url: str) -> str:
        """The request target (path and query) of a URL of this origin."""
        rest = url[len(self.origin):] if url.startswith(self.origin) else urlsplit(url).path
        return rest or "/"

    async def request(self, data: bytes) -> tuple[int, bytes]:
        """Send ``data`` (from :func:`wire`) and return the response's status and body; raises
        TimeoutError past the deadline (connecting included) and the connection's errors."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        connection = await self._take(deadline)
        return await self._dispatch(connection, data, deadline)

    def send(self, data: bytes, then: Callable[[asyncio.Future[Any]], None] | None = None
             ) -> asyncio.Future[tuple[int, bytes]] | None:
        """:meth:`request` without a coroutine, on an idle connection: the response's future, or
        None when no connection is idle (then :meth:`request` connects). ``then(future)`` runs once
        it is done, right after the connection is back in the pool: one done callback instead of
        two (each is a loop handle scheduled and run, a microsecond a request)."""
        connection = self._idle()
        if connection is None:
            return None
        return self._dispatch(connection, data, connection.loop.time() + self.timeout, then)

    def _dispatch(self, connection: _Connection, data: bytes, deadline: float,
                  then: Callable[[asyncio.Future[Any]], None] | None = None) -> asyncio.Future[tuple[int, bytes]]:
        waiter = connection.send(data)
        connection.deadline = deadline
        connection.then = then
        self.busy.add(connection)
        if self.sweeper is None:
            self.sweeper = connection.loop.call_later(self.sweep_every, self._sweep)
        waiter.add_done_callback(connection.done)
        return waiter

    def _sweep(self) -> None:
        """Fail the requests past their deadline; again after ``sweep_every`` while any is out."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for connection in [c for c in self.busy if c.deadline <= now]:
            self.busy.discard(connection)
            connection.expire()
        self.sweeper = loop.call_later(self.sweep_every, self._sweep) if self.busy else None

    def _finished(self, connection: _Connection, waiter: asyncio.Future[Any]) -> None:
        """The connection back to the pool after its response, or closed after a failure or a
        cancelled request (its response may still come, and must not be read as the next's);
        then the caller's ``then``."""
        then, connection.then = connection.then, None
        self.busy.discard(connection)
        if waiter.cancelled() or waiter.exception() is not None:
            connection.close()
        if connection.open:
            self.idle.append(connection)
        else:
            self.every.discard(connection)
        if then is not None:
            then(waiter)

    async def open(self, n: int) -> None:
        """Open ``n`` idle connections ahead of the first requests (failures are left to them)."""
        loop = asyncio.get_running_loop()
        for _ in range(n - len(self.idle)):
            try:
                self.idle.append(await self._connect(loop.time() + self.timeout))
            except (OSError, TimeoutError):
                return

    def _idle(self) -> _Connection | None:
        """An idle connection still open (closed ones leave the pool), or None."""
        while self.idle:
            connection = self.idle.pop()
            if connection.open:
                return connection
            self.every.discard(connection)
        return None

    async def _take(self, deadline: float) -> _Connection:
        connection = self._idle()
        return connection if connection is not None else await self._connect(deadline)

    async def _connect(self, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        opening = loop.create_connection(_Connection, self.host, self.port, ssl=self.context,
                                         server_hostname=self.host if self.tls else None)
        _, connection = await asyncio.wait_for(opening, max(deadline - loop.time(), 0.001))
        connection.done = functools.partial(self._finished, connection)
        self.every.add(connection)
        return connection

    def close(self) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        self.busy.clear()
        for connection in self.every:
            connection.close()
        self.every.clear()
        self.idle.clear()
