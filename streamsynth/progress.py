"""The one progress reporter of streamsynth: training phases, sampling, replays, evaluation.

On a terminal it draws a rich bar (done/total, ETA, extra fields such as the loss). Anywhere
else (CI logs, files, ``nohup``) it prints a plain line on stderr at most every
``STREAMSYNTH_PROGRESS_EVERY`` seconds (10 by default) and a final line when the work ends,
so a long fit or replay is never silent. A background ticker prints even when a single step
takes longer than the interval. ``STREAMSYNTH_PROGRESS=off`` (or ``enabled=False``, e.g. a
model's ``progress=False``) keeps it quiet.

A field value may be a zero-argument callable: it is called only when a line is about to be
drawn, so a loss that lives on a GPU is copied to the host a few times a second at most,
not at every step.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, TextIO

EVERY_ENV = "STREAMSYNTH_PROGRESS_EVERY"
SWITCH_ENV = "STREAMSYNTH_PROGRESS"
DEFAULT_EVERY = 10.0
TTY_REFRESH = 0.25  # seconds between field updates of a terminal bar


def interval() -> float:
    """Seconds between plain progress lines (``STREAMSYNTH_PROGRESS_EVERY``, default 10)."""
    try:
        return max(0.01, float(os.environ.get(EVERY_ENV, DEFAULT_EVERY)))
    except ValueError:
        return DEFAULT_EVERY


def switched_off() -> bool:
    return os.environ.get(SWITCH_ENV, "").strip().lower() in ("0", "off", "false", "no", "quiet")


class Progress:
    """Progress of one piece of work: ``with Progress(label="timegan joint", total=n) as p: p.advance(loss=x)``.

    ``total`` may be None (an endless stream): then the count and the rate are shown, no ETA.
    ``done`` is where a resumed job starts (it does not count toward the rate).
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        unit: str = "",
        done: int = 0,
        enabled: bool = True,
        every: float | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.done = self._start_done = done
        self.enabled = enabled and not switched_off()
        self.every = interval() if every is None else every
        self.stream = stream
        self.fields: dict[str, Any] = {}
        self._sources: dict[str, Any] = {}
        self._next_resolve = 0.0
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._bar: Any = None
        self._task: Any = None
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False

    # -- life cycle ----------------------------------------------------------------------------
    def __enter__(self) -> Progress:
        return self.start()

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        self.close(failed=exc_type is not None)

    def start(self) -> Progress:
        self._started = time.monotonic()
        if not self.enabled:
            return self
        out = self._out()
        if out.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[extra]}"),
                console=Console(file=out), transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, completed=self.done, extra="")
        else:
            self._ticker = threading.Thread(target=self._tick, name=f"progress {self.label}", daemon=True)
            self._ticker.start()
        return self

    def close(self, failed: bool = False) -> None:
        """Stop the bar or ticker; a plain stream gets a final line (also after a failure)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._bar is not None:
            self._bar.stop()
        elif self.enabled:
            self._resolve()
            self._print(self.line(final=True, failed=failed))

    # -- reporting -----------------------------------------------------------------------------
    def advance(self, step: Any = 1, **fields: Any) -> Any:
        """Count ``step`` more (an int, or a batch whose ``height`` is counted) and set fields;
        returns ``step``, so it fits in a generator expression over batches."""
        n = step if isinstance(step, int) else int(getattr(step, "height", 1))
        self._set(self.done + n, fields)
        return step

    def update(self, done: int, **fields: Any) -> None:
        """Set the count reached so far (e.g. events acknowledged by a sink)."""
        self._set(done, fields)

    def _set(self, done: int, fields: dict[str, Any]) -> None:
        self.done = done
        if not self.enabled:
            return
        if fields:
            self._sources.update(fields)
        now = time.monotonic()
        if now >= self._next_resolve:  # callables run here, on the caller's thread, rarely
            self._resolve()
            self._next_resolve = now + (TTY_REFRESH if self._bar is not None else min(self.every, 1.0))
            if self._bar is not None:
                self._bar.update(self._task, completed=done, extra=self._fields_text())
                return
        if self._bar is not None:
            self._bar.update(self._task, completed=done)

    def _resolve(self) -> None:
        resolved = {k: (v() if callable(v) else v) for k, v in self._sources.items()}
        with self._lock:
            self.fields.update(resolved)

    # -- plain lines ---------------------------------------------------------------------------
    def line(self, final: bool = False, failed: bool = False) -> str:
        """``label: done/total pct rate ETA fields`` (the final line: elapsed instead of ETA)."""
        elapsed = time.monotonic() - self._started
        done, total = self.done, self.total
        rate = (done - self._start_done) / elapsed if elapsed > 0 else 0.0
        unit = f" {self.unit}" if self.unit else ""
        count = f"{done:,}/{total:,}{unit}" if total is not None else f"{done:,}{unit}"
        if total:
            count += f" ({100 * done / total:.0f}%)"
        parts = [f"{self.label}:", count, f"{_rate(rate)}/s"]
        if final:
            parts.append(("stopped after " if failed or (total is not None and done < total) else "done in ")
                         + _duration(elapsed))
        elif total is not None and rate > 0:
            parts.append(f"ETA {_duration(max(total - done, 0) / rate)}")
        else:
            parts.append(f"elapsed {_duration(elapsed)}")
        text = self._fields_text()
        return " ".join(parts) + (f" {text}" if text else "")

    def _fields_text(self) -> str:
        with self._lock:
            items = list(self.fields.items())
        return " ".join(f"{k} {_value(v)}" for k, v in items)

    def _tick(self) -> None:
        while not self._stop.wait(self.every):
            self._print(self.line())

    def _print(self, text: str) -> None:
        out = self._out()
        try:
            out.write(text + "\n")
            out.flush()
        except (ValueError, OSError):  # stderr closed (e.g. a broken pipe): nothing to report to
            pass

    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | tuple):
        return "/".join(_value(x) for x in v)
    return str(v)


def _rate(r: float) -> str:
    return f"{r:,.0f}" if r >= 100 else f"{r:.3g}"


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"

