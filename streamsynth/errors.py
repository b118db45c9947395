"""The one error type for problems a user can cause, with a hint that says how to fix them."""

from __future__ import annotations


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
