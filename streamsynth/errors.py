"""The one error type for problems a user can cause, with a hint that says how to fix them."""

from __future__ import annotations

import difflib


class StreamsynthError(Exception):
    """Bad input a user can fix: a file, column, key, URL or model directory.

    ``message`` names the input and what is wrong; ``hint`` says what to do. The CLI
    prints both without a traceback and exits non-zero.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


def closest(name: str, options: list[str]) -> str | None:
    """The option most like ``name`` (for a "did you mean" in a message), or None."""
    found = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    if not found:
        lowered = {o.lower(): o for o in options}
        return lowered.get(name.lower())
    return found[0]


def refuse_without(flag: str, hint: str, **given: bool) -> None:
    """Refuse options that mean nothing without ``flag`` (``given``: option name -> whether it was
    set), rather than ignore them; ``hint`` says what to do instead."""
    named = [f"--{name.replace('_', '-')}" for name, value in given.items() if value]
    if named:
        verb = "applies" if len(named) == 1 else "apply"
        raise StreamsynthError(f"{' and '.join(named)} only {verb} with {flag}", hint=hint)
