"""The event loop a run sends from: uvloop when it is installed (``pip install 'streamsynth[fast]'``),
else asyncio's own.

uvloop (libuv under a Cython event loop) does the loop's own work -- the selector, callbacks,
futures' wake-ups, socket writes and reads -- in C; the runner spends most of its event-loop time
there: measured, the same schedule costs a fifth to a third less CPU a request (docs/load.md).
It is an optional extra rather than a dependency because it does not run on Windows, and
everything here stays correct without it.

``$STREAMSYNTH_EVENT_LOOP`` picks the loop: ``auto`` (the default: uvloop when importable),
``uvloop`` (an error when it is not installed) or ``asyncio``. An environment variable rather than
an option, so that every worker of ``--workers`` (spawned processes, which inherit it) and every
caller of :func:`.runner.run_load` honour it alike.

Neither loop's clock measures here: uvloop's ``loop.time()`` is libuv's, in whole milliseconds, so
the runner takes its times from ``time.monotonic()`` (which asyncio's ``loop.time()`` is, and which
every process of a ``--workers`` run shares).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from streamsynth.errors import StreamsynthError

ENV = "STREAMSYNTH_EVENT_LOOP"
CHOICES = ("auto", "uvloop", "asyncio")


def chosen(name: str | None = None) -> str:
    """The loop a run uses, ``"uvloop"`` or ``"asyncio"``: ``name``, else ``$STREAMSYNTH_EVENT_LOOP``,
    else ``auto``; an unknown name, or ``uvloop`` where it is not installed, is an error."""
    asked = (name if name is not None else os.environ.get(ENV, "auto")).strip().lower() or "auto"
    if asked not in CHOICES:
        raise StreamsynthError(f"{ENV}={asked!r} is not an event loop streamsynth knows",
                               hint=f"set it to one of {', '.join(CHOICES)}, or unset it")
    if asked == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if asked == "uvloop":
            raise StreamsynthError(f"{ENV}=uvloop, but uvloop is not installed",
                                   hint="pip install 'streamsynth[fast]' (uvloop; not on Windows), "
                                        f"or unset {ENV}") from None
        return "asyncio"
    return "uvloop"


def factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """A new-loop function for ``asyncio.Runner`` (``name`` as :func:`chosen` returns it)."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop
