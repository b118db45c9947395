"""A stand-in fraud-scoring service to try ``streamsynth load`` against, with decisions one can check.

``python -m streamsynth.connectors.loadtest.demo_service --port 8080`` answers every request to
any path: 402 ``{"decision": "decline"}`` or 200 ``{"decision": "approve"}``. It reads the event's
own ground truth, so the confusion matrix of a load test is known in advance: it declines an
injected anomaly (``is_anomaly`` true) with probability ``--catch`` and a normal event with
probability ``--false-alarm``, each drawn from a hash of the ``event_id`` (the same event always
gets the same answer). Each answer waits ``--delay-ms``. A request holding a JSON array is
answered by its first event. Loopback only unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
from typing import Any

from aiohttp import web


def declines(event: dict[str, Any], catch: float, false_alarm: float) -> bool:
    """The service's decision for ``event``: a draw from its id against the rate for its truth."""
    digest = hashlib.blake2b(str(event.get("event_id", "")).encode(), digest_size=8).digest()
    draw = int.from_bytes(digest, "big") / 2**64
    return draw < (catch if event.get("is_anomaly") else false_alarm)


def make_app(*, catch: float = 0.9, false_alarm: float = 0.01, delay_ms: float = 2.0) -> web.Application:
    """The service as an aiohttp application (tests run it on a port of their own)."""

    async def answer(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            event = json.loads(body) if body else {}
        except ValueError:
            return web.json_response({"error": "the body is not JSON"}, status=400)
        if isinstance(event, list):
            event = event[0] if event else {}
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        if isinstance(event, dict) and declines(event, catch, false_alarm):
            return web.json_response({"decision": "decline"}, status=402)
        return web.json_response({"decision": "approve"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--catch", type=float, default=0.9, help="share of anomalies declined (default 0.9)")
    parser.add_argument("--false-alarm", type=float, default=0.01,
                        help="share of normal events declined (default 0.01)")
    parser.add_argument("--delay-ms", type=float, default=2.0, help="wait before each answer (default 2)")
    args = parser.parse_args(argv)
    print(f"demo service on http://{args.host}:{args.port}/ (Ctrl-C stops it)", flush=True)
    web.run_app(make_app(catch=args.catch, false_alarm=args.false_alarm, delay_ms=args.delay_ms),
                host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
