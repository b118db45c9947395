"""The ``file://`` sink: Parquet, JSON Lines or CSV, rotated by size or time, finalised atomically.

Each output file is written under a hidden temporary name and renamed into place when complete,
so a reader never sees half a file. With ``?live=true`` (JSON Lines and CSV) the open part is
written under its final name instead, so ``tail -f`` follows a real-time replay; a reader may
then see a last line still being written, and what a crash leaves past the last checkpoint is
cut back when the replay resumes. Without rotation the output is the named file; with rotation,
or when a replay resumes, it is parts ``stem-00000.ext``, ``stem-00001.ext``, ... beside it.

What is acknowledged (and so checkpointed) is what is durably on disk, per format:

* JSON Lines and CSV are appendable: every flush point (``--flush-every``) flushes and fsyncs
  the open part and acknowledges everything written; :meth:`FileSink.state` records the part
  and its byte length there. A replay resumed after a crash (``kill -9``) truncates the
  temporary part back to that length and goes on appending to it, so nothing acknowledged is
  lost and nothing is written twice. Only a crash between a rotation's rename and the next
  checkpoint leaves events in a finished part that the checkpoint does not cover: they are
  written again, and counted (:attr:`FileSink.repeated`).
* A Parquet file cannot be appended to after a crash (no footer, no file), and its row groups
  are unreadable until the footer is written. When the replay checkpoints (``durable``), each
  flush point therefore closes the open part (fsync, rename) and the next events start a new
  one: parts are at least ``--flush-every`` long. Without a checkpoint nothing can resume, so
  the output stays one file (or the rotation's parts) and is acknowledged when closed.
"""

from __future__ import annotations

import os
import queue
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
from streamsynth.connectors.base import Sink, SinkURL
from streamsynth.connectors.records import label_counts

from streamsynth.errors import StreamsynthError
from streamsynth.io import format_of

OPTIONS = "rotate_size (e.g. 64MB), rotate_every (e.g. 10m), fsync (true/false), live (true/false)"


def target_path(url: SinkURL) -> Path:
    """The file a ``file://`` URL names; ``file://out.jsonl`` is relative, ``file:///x`` absolute."""
    path = url.netloc + url.path if url.netloc not in ("", "localhost") else url.path
    if not path:
        raise StreamsynthError(f"sink URL {url.redacted()!r} names no file",
                               hint="write file:///dir/out.parquet or file://out.jsonl")
    return Path(path)


def output_files(target: Path) -> list[Path]:
    """The finished files of an output: the named file if present, then its parts in order."""
    files = [target] if target.is_file() else []
    return files + [p for _, p in _parts(target)]


def _parts(target: Path) -> list[tuple[int, Path]]:
    pattern = re.compile(re.escape(target.stem) + r"-(\d{5,})" + re.escape(target.suffix) + "$")
    if not target.parent.is_dir():
        return []
    found = []
    for p in target.parent.iterdir():
        match = pattern.match(p.name)
        if match and p.is_file():
            found.append((int(match.group(1)), p))
    return sorted(found)


class ParquetPart:
    """One Parquet file written by polars' own streaming Parquet writer (parallel column encoding,
    the same writer as ``DataFrame.write_parquet``), fed batch by batch.

    The writer runs ``sink_parquet`` on a worker thread over an IO-plugin source that takes batches
    from a small queue, so memory stays flat however long the part; row groups hold about
    ``max_buffer`` bytes of in-memory data and reach the file as they fill. A failure on the worker
    surfaces at the next write or at close.
    """

    def __init__(self, path: Path, max_buffer: int = 32 * 2**20) -> None:
        self.path = path
        self.max_buffer = max_buffer
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._worker: threading.Thread | None = None
        self._error: BaseException | None = None
        path.open("wb").close()  # fail now, not in the worker, on an unwritable path

    def write(self, batch: pl.DataFrame) -> None:
        if self._worker is None:
            self._start(batch)
        self._put(batch)

    def _start(self, first: pl.DataFrame) -> None:
        from polars.io.plugins import register_io_source

        rows = max(1, self.max_buffer * first.height // max(first.estimated_size(), 1))
        stream = register_io_source(self._batches, schema=first.schema)
        self._worker = threading.Thread(target=self._run, args=(stream, rows), name="parquet-part",
                                        daemon=True)
        self._worker.start()

    def _run(self, stream: pl.LazyFrame, rows: int) -> None:
        try:
            stream.sink_parquet(self.path, compression="zstd", row_group_size=rows)
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that writes or closes
            self._error = exc

    def _batches(self, with_columns, predicate, n_rows, batch_size) -> Iterator[pl.DataFrame]:
        """The IO-plugin source: batches as they are queued, until the end marker (None)."""
        while (batch := self._queue.get()) is not None:
            yield batch

    def _put(self, item: pl.DataFrame | None) -> None:
        while True:
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if not self._worker.is_alive():  # it stopped taking batches: it failed
                    self._raise()

    def _raise(self) -> None:
        error = self._error or RuntimeError("the Parquet writer stopped")
        raise StreamsynthError(f"cannot write {self.path}: {error}",
                               hint="check free disk space and permissions, and that every batch "
                               "has the same columns and types") from None

    def close(self) -> None:
        if self._worker is None:
            pl.DataFrame().write_parquet(self.path)
            return
        self._put(None)
        self._worker.join()
        if self._error is not None:
            self._raise()


class TextPart:
    """One JSON Lines or CSV file, appended batch by batch; :meth:`sync` makes it durable and
    returns its length, and a part can be reopened at that length after a crash."""

    def __init__(self, path: Path, fmt: str, *, resume_at: int | None = None, rows: int = 0) -> None:
        self.path, self.fmt, self.rows = path, fmt, rows
        if resume_at is None:
            self._fh = open(path, "wb")  # noqa: SIM115 - closed by close()
        else:
            self._fh = open(path, "r+b")  # noqa: SIM115
            self._fh.truncate(resume_at)  # drop what was written after the last checkpoint
            self._fh.seek(resume_at)

    def write(self, batch: pl.DataFrame) -> None:
        if self.fmt == "csv":
            batch.write_csv(self._fh, include_header=self.rows == 0)
        else:
            batch.write_ndjson(self._fh)
        self.rows += batch.height

    def sync(self, fsync: bool) -> int:
        self._fh.flush()
        if fsync:
            os.fsync(self._fh.fileno())
        return self._fh.tell()

    def close(self) -> None:
        self._fh.close()


def _count_rows(path: Path, fmt: str) -> int:
    """Events in a finished JSON Lines or CSV part (for counting what a resume repeats)."""
    with path.open("rb") as fh:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    return max(lines - 1, 0) if fmt == "csv" else lines


class FileSink(Sink):
    """Writes batches to the current part; rotation and close finalise it (fsync, then rename)."""

    scheme = "file"

    def __init__(self, url: SinkURL, **kwargs) -> None:
        super().__init__(url, **kwargs)
        self.target = target_path(url)
        self.fmt = format_of(self.target)
        self.rotate_size = url.size("rotate_size", None)
        self.rotate_every = url.duration("rotate_every", None)
        self.fsync = url.boolean("fsync", True)
        # live: the open part is written under its own name, so `tail -f` follows a real-time replay.
        self.live = url.boolean("live", False)
        url.finish(OPTIONS)
        if self.live and self.fmt == "parquet":
            raise StreamsynthError(
                f"sink {url.redacted()}: live=true is for JSON Lines and CSV",
                hint="a Parquet file is unreadable until it is closed: write .jsonl or .csv to follow it, "
                "or rotate Parquet parts with rotate_every")
        # Checkpointed Parquet closes a part at each flush point (see the module's docstring).
        in_parts = (self.rotate_size is not None or self.rotate_every is not None
                    or (self.durable and self.fmt == "parquet"))
        existing = _parts(self.target)
        if self.append:
            self._next_part = existing[-1][0] + 1 if existing else (1 if self.target.exists() else 0)
            self._use_parts = True
        elif in_parts and existing:
            raise StreamsynthError(
                f"{self.target.parent}: holds parts of an earlier output ({existing[0][1].name}, ...)",
                hint="remove them or write to a new name; a replay that resumes adds parts itself",
            )
        else:
            self._next_part = 0
            self._use_parts = in_parts
        self.files: list[Path] = []  # finished files, in order
        self._writer: TextPart | ParquetPart | None = None
        self._final: Path | None = None
        self._tmp: Path | None = None
        self._opened_at = 0.0
        self._rows = 0
        self._bytes_seen = 0
        self._durable_part: dict | None = None  # the open part at the last flush point
        #: events the checkpoint did not cover but a finished part already held: written again
        self.repeated = 0
        self._check_writable()
        if self.append:
            self._resume_part(self.resume_state.get("part"))

    def _resume_part(self, part: dict | None) -> None:
        """Continue the part that was open at the checkpoint, and drop the debris of a crash."""
        keep = None
        if part and self.fmt != "parquet":
            tmp, final = Path(part["tmp"]), Path(part["final"])
            if tmp.is_file() and tmp.stat().st_size >= part["bytes"]:
                self._writer = TextPart(tmp, self.fmt, resume_at=part["bytes"], rows=part["rows"])
                self._final, self._tmp, keep = final, tmp, tmp
                self._rows, self._bytes_seen = part["rows"], part["bytes"]
                self._opened_at = time.monotonic()
                self._durable_part = dict(part)
            elif tmp.is_file():
                raise StreamsynthError(
                    f"{tmp} is shorter than the checkpoint says ({tmp.stat().st_size} of "
                    f"{part['bytes']} bytes): events it acknowledged are gone",
                    hint="written with ?fsync=false before a power loss? remove the checkpoint and "
                    "the output to replay from the start")
            elif final.is_file():
                # Finished (renamed) after the checkpoint: what it holds beyond it comes again.
                self.repeated = max(_count_rows(final, self.fmt) - part["rows"], 0)
            number = re.search(r"-(\d{5,})" + re.escape(self.target.suffix) + "$", final.name)
            if number and final.stem.startswith(self.target.stem):
                self._next_part = max(self._next_part, int(number.group(1)) + 1)
        # Temporary files of this output left by a crashed run hold only unacknowledged events.
        stale = re.compile(r"\." + re.escape(self.target.stem) + r"(-\d{5,})?" + re.escape(self.target.suffix)
                           + r"\.tmp-\d+$")
        for p in self.target.parent.iterdir():
            if p != keep and stale.match(p.name):
                p.unlink(missing_ok=True)

    def state(self) -> dict:
        return {"part": self._durable_part} if self._durable_part else {}

    def _check_writable(self) -> None:
        parent = self.target.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            probe = parent / f".{self.target.name}.probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StreamsynthError(
                f"cannot write to {self.target}: {exc.strerror or exc}",
                hint="choose a directory you can write to",
            ) from None

    def _open_part(self) -> None:
        if self._use_parts:
            final = self.target.with_name(f"{self.target.stem}-{self._next_part:05d}{self.target.suffix}")
            self._next_part += 1
        else:
            final = self.target
        tmp = final if self.live else final.with_name(f".{final.name}.tmp-{os.getpid()}")
        try:
            if self.fmt == "parquet":
                # Small buffers under size rotation, so parts come out near the size asked for.
                limit = self.rotate_size // 2 if self.rotate_size else 32 * 2**20
                self._writer = ParquetPart(tmp, max_buffer=limit)
            else:
                self._writer = TextPart(tmp, self.fmt)
        except OSError as exc:
            raise StreamsynthError(f"cannot write {tmp}: {exc.strerror}",
                                   hint="choose a writable path") from None
        self._final, self._tmp = final, tmp
        self._opened_at = time.monotonic()
        self._rows = 0
        self._bytes_seen = 0

    def write(self, batch: pl.DataFrame) -> None:
        if batch.height == 0:
            return
        if self._writer is None:
            self._open_part()
        start = time.perf_counter()
        try:
            self._writer.write(batch)
        except OSError as exc:
            raise StreamsynthError(f"cannot write {self._tmp}: {exc.strerror}",
                                   hint="check free disk space and permissions") from None
        self.written += batch.height
        self._rows += batch.height
        size = self._tmp.stat().st_size
        self.metrics.delivered(self.scheme, label_counts(batch), max(size - self._bytes_seen, 0))
        self.metrics.latency(self.scheme, time.perf_counter() - start)
        self._bytes_seen = size
        if self._due(size):
            self._finish_part()

    def _due(self, size: int) -> bool:
        if self.rotate_size is not None and size >= self.rotate_size:
            return True
        return self.rotate_every is not None and time.monotonic() - self._opened_at >= self.rotate_every

    def poll(self) -> None:
        if self._writer is not None and self.rotate_every is not None and self._due(0):
            self._finish_part()

    def _finish_part(self) -> None:
        writer, tmp, final = self._writer, self._tmp, self._final
        self._writer = None
        try:
            writer.close()
        except BaseException:
            if not self.live:  # a live part may hold acknowledged events: a resume cuts it back
                tmp.unlink(missing_ok=True)  # never finished, never acknowledged: sent again on resume
            raise
        if self.fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, final)
        self.files.append(final)
        self._durable_part = None
        self.acked = self.written  # every event written is in this part or an earlier one

    def flush(self) -> None:
        """Make what was written durable and acknowledge it (see the module's docstring)."""
        if isinstance(self._writer, TextPart):
            size = self._writer.sync(self.fsync)
            self._durable_part = {"final": str(self._final), "tmp": str(self._tmp), "bytes": size,
                                  "rows": self._writer.rows}
            self.acked = self.written
        elif self._writer is not None and self.durable:
            self._finish_part()

    def close(self) -> None:
        if self._writer is not None:
            self._finish_part()

    def abort(self) -> None:
        """Drop the unfinished part's unacknowledged events (a resumed replay sends them again).

        A text part whose head was acknowledged at a flush point is cut back to that point and
        finished, so what was acknowledged is in the output (a resumed replay goes on after it)."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            try:
                writer.close()
            except (OSError, StreamsynthError):
                pass  # the part is dropped anyway; the error that led here is the one to report
            if self._durable_part is not None:
                try:
                    os.truncate(self._tmp, self._durable_part["bytes"])
                    os.replace(self._tmp, self._final)
                    self.files.append(self._final)
                    return
                except OSError:
                    return  # left as it is: a resumed replay cuts it back itself
            self._tmp.unlink(missing_ok=True)

    @classmethod
    def read_back(cls, url: SinkURL, *, timeout: float = 10.0) -> Iterator[pl.DataFrame]:
        target = target_path(url)
        files = output_files(target)
        if not files:
            raise StreamsynthError(f"{target}: no output files found",
                                   hint="give the path the replay wrote to")
        for path in files:
            fmt = format_of(path)
            if fmt == "parquet":
                yield pl.read_parquet(path)
            elif fmt == "csv":
                yield pl.read_csv(path, infer_schema_length=0)
            else:
                # Every row decides the types: a column null for the first thousand rows
                # (scenario_id) is not a null column.
                yield pl.read_ndjson(path, infer_schema_length=None)
