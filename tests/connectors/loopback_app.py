"""An aiohttp application served on its own event loop in a thread, on a free loopback port: the
services the load tests send to."""

from __future__ import annotations

import asyncio
import socket
import threading

from aiohttp import web


class LoopbackApp:
    """Serves ``app`` from construction until :meth:`close`."""

    def __init__(self, app: web.Application) -> None:
        self.loop = asyncio.new_event_loop()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(app, ready), daemon=True).start()
        assert ready.wait(10)

    def _serve(self, app: web.Application, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.SockSite(self.runner, self.sock).start())
        ready.set()
        self.loop.run_forever()

    def url(self, path: str = "/score") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
