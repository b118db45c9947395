"""The built-in scenario library: list its scenarios and find one by name or path."""

from __future__ import annotations

from pathlib import Path

from streamsynth.scenarios.spec import Scenario, load_scenario

from streamsynth.errors import StreamsynthError

LIBRARY = Path(__file__).parent / "library"


def library_files() -> list[Path]:
    return sorted(LIBRARY.glob("*.yaml"))


def library() -> list[Scenario]:
    """Every library scenario, validated."""
    return [load_scenario(path) for path in library_files()]


def find(name: str) -> Path:
    """A scenario file: an existing path, or the name of a library scenario."""
    path = Path(name)
    if path.is_file():
        return path
    candidate = LIBRARY / f"{name.removesuffix('.yaml')}.yaml"
    if candidate.is_file():
        return candidate
    raise StreamsynthError(
        f"no scenario file or library scenario named {name!r}",
        hint=f"library scenarios are: {', '.join(p.stem for p in library_files())}",
    )
