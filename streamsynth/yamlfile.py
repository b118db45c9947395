"""Reading a user's YAML file, with errors that name the file, the line and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from streamsynth.errors import StreamsynthError


def read_yaml(
    path: str | Path,
    *,
    what: str,
    missing_hint: str = "check the path",
    syntax_hint: str = "check indentation and quoting",
) -> Any:
    """The parsed content of ``path``; ``what`` names the kind of file in messages."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise StreamsynthError(f"{what} {path} does not exist", hint=missing_hint) from None
    except OSError as exc:
        raise StreamsynthError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise StreamsynthError(
            f"{path}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}", hint=syntax_hint
        ) from None
