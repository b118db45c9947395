"""The lean client's deadlines: one sweep over the requests in flight, not a timer per request."""

from __future__ import annotations

import asyncio

import pytest
from streamsynth.connectors.loadtest.client import ConnectionPool, wire
from test_load import Stalls

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


async def _serve(answer: bool):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readuntil(b"\r\n\r\n"):
            if answer:
                writer.write(OK)
            # else: read and never answer (a stalled service)
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_a_request_past_its_deadline_times_out_about_on_time():
    async def main() -> tuple[float, ConnectionPool]:
        server, port = await _serve(answer=False)
        pool = ConnectionPool(f"http://127.0.0.1:{port}/x", timeout=0.2)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TimeoutError):
            await pool.request(wire("GET", "/x", f"127.0.0.1:{port}", {}, None))
        took = loop.time() - start
        await asyncio.sleep(0.1)  # the sweep that found nothing left in flight does not re-arm
        pool.close()
        server.close()
        return took, pool

    with Stalls() as stalls:
        took, pool = asyncio.run(main())
    # at most one sweep late, plus 10 ms, plus twice the longest stall while it ran (a loaded
    # machine's: the timer and the sweep may each wake late)
    assert 0.2 <= took < 0.2 + 0.2 / 8 + 0.01 + 2 * stalls.longest_ms(0, float("inf")) / 1000
    assert pool.sweeper is None and not pool.busy


def test_answered_requests_leave_the_sweep_and_their_connections_stay_open():
    async def main() -> ConnectionPool:
        server, port = await _serve(answer=True)
        pool = ConnectionPool(f"http://127.0.0.1:{port}/x", timeout=0.2)
        data = wire("GET", "/x", f"127.0.0.1:{port}", {}, None)
        for _ in range(20):
            assert await pool.request(data) == (200, b"{}")
        await asyncio.sleep(0.3)  # past every deadline: nothing expires
        assert await pool.request(data) == (200, b"{}")
        assert len(pool.every) == 1 and not pool.busy
        pool.close()
        server.close()
        return pool

    assert asyncio.run(main()).sweeper is None
