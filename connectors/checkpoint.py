"""The replay checkpoint: how many events of the source are acknowledged, written atomically.

A resumed replay skips that many events of the (deterministic) source, so nothing acknowledged
is sent twice and nothing unacknowledged is lost; only events after the last checkpoint repeat.
``sink_state`` is what the sink needs to continue exactly there (a file sink: the open part and
its durable length).

One replay at a time owns a checkpoint: :class:`CheckpointLock` holds an ``flock`` on
``<checkpoint>.lock`` for the whole run. The kernel drops it when the process ends however it
ends (``kill -9`` included), so a stale lock never blocks. A run that ends normally removes the
lock file; a killed one leaves it behind, empty of meaning, for the next run to take.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamsynth.errors import StreamsynthError

VERSION = 1


@dataclass
class Checkpoint:
    """Position in the source, what it was for, and the counts acknowledged so far."""

    source: dict[str, Any]
    sink: str
    position: int = 0
    done: bool = False
    counts: dict[str, Any] = field(default_factory=dict)
    sink_state: dict[str, Any] = field(default_factory=dict)
    updated_at: str = ""
    version: int = VERSION

    def save(self, path: str | Path) -> None:
        path = Path(path)
        self.updated_at = datetime.now(UTC).isoformat()
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("w") as fh:
                json.dump(asdict(self), fh, indent=2, default=str)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):  # no temporary to remove when its folder is a file
                tmp.unlink(missing_ok=True)  # interrupted or failed: the previous checkpoint stands
            if not isinstance(exc, OSError):
                raise
            raise StreamsynthError(f"cannot write checkpoint {path}: {exc.strerror}",
                                   hint="choose a writable path for --checkpoint") from None

    @classmethod
    def load(cls, path: str | Path) -> Checkpoint | None:
        """The checkpoint at ``path``, or ``None`` when there is none yet."""
        path = Path(path)
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict):
                raise ValueError(f"it holds a JSON {type(record).__name__}, not an object")
            if record.get("version") != VERSION:
                raise ValueError(f"version {record.get('version')!r}")
            return cls(**{k: record[k] for k in cls.__dataclass_fields__ if k in record})
        except (ValueError, TypeError, KeyError) as exc:
            raise StreamsynthError(f"checkpoint {path} is not valid ({exc})",
                                   hint="remove it to start the replay from the beginning") from None

    def check_matches(self, source: dict[str, Any], sink: str, path: str | Path) -> None:
        """A checkpoint only resumes the same source into the same sink."""
        if self.source != source:
            raise StreamsynthError(
                f"checkpoint {path} belongs to another source ({self.source})",
                hint="give the same SOURCE and options, or another --checkpoint file",
            )
        if self.sink != sink:
            raise StreamsynthError(
                f"checkpoint {path} belongs to sink {self.sink!r}, not {sink!r}",
                hint="give the same --to URL, or another --checkpoint file",
            )


class CheckpointLock:
    """An exclusive, non-blocking lock on a checkpoint for one replay; a second one fails clearly."""

    def __init__(self, path: str | Path) -> None:
        self.checkpoint = Path(path)
        self.path = self.checkpoint.with_name(self.checkpoint.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> CheckpointLock:
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                os.close(fd)
                raise StreamsynthError(
                    f"checkpoint {self.checkpoint} is in use by another replay"
                    + (f" (process {holder})" if holder else ""),
                    hint="wait for it to finish or stop it, or give this replay its own --checkpoint",
                ) from None
            # The file may have been removed by a run finishing between our open and our lock:
            # a lock on a removed file guards nothing, so take the file at the path again.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)  # who holds it, for the message above
        self._fd = fd
        return self

    def _open(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StreamsynthError(f"cannot lock checkpoint {self.checkpoint}: {exc.strerror}",
                                   hint="choose a writable path for --checkpoint") from None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self.path.unlink(missing_ok=True)  # while still held: a waiting run re-checks the path
            os.close(fd)  # closing the descriptor drops the flock

    def __enter__(self) -> CheckpointLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
