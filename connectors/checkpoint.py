"""The replay checkpoint: how many events of the source are acknowledged, written atomically.

A resumed replay skips that many events of the (deterministic) source, so nothing acknowledged
is sent twice and nothing unacknowledged is lost; only events after the last checkpoint repeat.
"""

from __future__ import annotations

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
        except OSError as exc:
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
