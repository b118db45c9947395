"""Outputs that are never half-written: staged beside their targets, renamed into place together.

Every command that writes (a sample and its manifest, a rebalanced set, a scenario run, a report,
a model folder) writes under a hidden temporary name in the target's own folder, and only when
everything is complete renames each file or folder over its target (``os.replace``: atomic within
one file system). On any failure the temporaries are removed and the previous output, manifest
included, is left as it was. Operating-system write errors become one :class:`StreamsynthError`
naming the path and the cause (disk full, permission, missing folder, file size limit).
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import shutil
from pathlib import Path
from types import TracebackType

from streamsynth.errors import StreamsynthError

#: errno -> (what happened, what to do)
CAUSES = {
    errno.ENOSPC: ("the disk is full", "free space or write somewhere else"),
    errno.EDQUOT: ("the disk quota is used up", "free space or write somewhere else"),
    errno.EFBIG: ("the file is over this process's file size limit", "raise `ulimit -f` or write less"),
    errno.EACCES: ("permission denied", "choose a folder you may write to"),
    errno.EPERM: ("permission denied", "choose a folder you may write to"),
    errno.EROFS: ("the file system is read-only", "choose a writable folder"),
    errno.ENOENT: ("a folder on the way does not exist", "create the folder first"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "check the path"),
    errno.EEXIST: ("a part of the path is a file, not a folder", "check the path"),
    errno.EISDIR: ("it is a folder", "give a file name"),
}
_counter = itertools.count()


def errno_in(text: str) -> int:
    """The error number in a library's message: pyarrow's "[Errno 28]", Rust's "(os error 28)"."""
    found = re.search(r"\[Errno (\d+)\]|os error (\d+)", text)
    return int(found.group(1) or found.group(2)) if found else 0


def write_error(path: str | Path, exc: OSError) -> StreamsynthError:
    """The one-line error for an operating-system failure writing ``path``."""
    code = exc.errno if exc.errno is not None else errno_in(str(exc))
    cause, hint = CAUSES.get(code, (exc.strerror or str(exc), "check the path and the disk"))
    return StreamsynthError(f"cannot write {path}: {cause}", hint=hint + "; nothing was changed there")


def write_text(path: str | Path, text: str) -> Path:
    """Write a whole text file (UTF-8) in place of ``path``, or leave ``path`` as it was."""
    with Staged() as stage:
        stage.file(path).write_text(text, encoding="utf-8")
    return Path(path)


class Staged:
    """Files and folders written under temporary names, renamed over their targets on success.

    ``with Staged() as stage: write(stage.file(target))`` -- each :meth:`file` or :meth:`folder`
    names a temporary beside its target (same suffix, so the format still reads off the name);
    leaving the block normally renames them all into place, in the order asked for; an exception
    removes them and changes nothing. An :class:`OSError` leaves as a :func:`write_error`.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []
        self._pending_seen: list[tuple[Path, Path]] = []  # kept after discard(), to name a failure

    def file(self, target: str | Path) -> Path:
        """A temporary path beside ``target``; its folder is created when missing."""
        target = Path(target)
        temporary = target.with_name(f".{target.stem}.partial-{os.getpid()}-{next(_counter)}{target.suffix}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(target, exc) from None
        self._pending.append((temporary, target))
        self._pending_seen.append((temporary, target))
        return temporary

    def folder(self, target: str | Path) -> Path:
        """A new, empty temporary folder beside ``target``."""
        temporary = self.file(target)
        try:
            temporary.mkdir()
        except OSError as exc:
            self._pending.pop()
            raise write_error(target, exc) from None
        return temporary

    def commit(self) -> None:
        """Rename every temporary over its target; a folder target is swapped whole."""
        for temporary, target in self._pending:
            try:
                if temporary.is_dir():
                    _swap_folder(temporary, target)
                else:
                    os.replace(temporary, target)
            except OSError as exc:
                self.discard()
                raise write_error(target, exc) from None
        self._pending.clear()

    def discard(self) -> None:
        """Remove every temporary left; the targets are untouched."""
        for temporary, _ in self._pending:
            if temporary.is_dir():
                shutil.rmtree(temporary, ignore_errors=True)
            else:
                temporary.unlink(missing_ok=True)
        self._pending.clear()

    def __enter__(self) -> Staged:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.commit()
            return
        self.discard()
        if isinstance(exc, OSError):
            raise write_error(self._target_of(exc), exc) from None

    def _target_of(self, exc: OSError) -> Path | str:
        """The target whose temporary the failed call named (the first target otherwise)."""
        named = str(exc.filename or "") + str(exc)
        for temporary, target in self._pending_seen:
            if temporary.name in named:
                return target
        return self._pending_seen[0][1] if self._pending_seen else "the output"


def _swap_folder(temporary: Path, target: Path) -> None:
    """Put the finished folder in place of ``target``: the old one (if any) moves aside first
    and is removed only once the new one is in place."""
    if not target.exists():
        os.replace(temporary, target)
        return
    if not target.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "the target is a file", str(target))
    aside = target.with_name(f".{target.name}.old-{os.getpid()}-{next(_counter)}")
    os.replace(target, aside)
    try:
        os.replace(temporary, target)
    except OSError:
        os.replace(aside, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)
