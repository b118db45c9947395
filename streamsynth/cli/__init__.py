"""The ``streamsynth`` command line: one typer app, commands registered from small modules.

Each module in ``COMMAND_MODULES`` adds its commands to :data:`app` when imported. Errors a
user can cause (:class:`StreamsynthError`) are printed in a line or two, without a traceback,
and the exit code is 2.

The command functions import the work they run (models and torch, evaluation, scenarios,
delivery clients) inside their bodies, not at the top of their modules: ``streamsynth --help``
and a usage error then load only the command modules, not torch. This is the one place where
the package imports its own modules inside functions for that reason.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
import warnings

import typer

from streamsynth.errors import StreamsynthError

app = typer.Typer(
    name="streamsynth",
    help="Learn event streams, inject labelled rare events, deliver them in real time.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

COMMAND_MODULES = [
    "streamsynth.cli.core",
    "streamsynth.cli.delivery",
    "streamsynth.cli.evaluate",
    "streamsynth.cli.load",
    "streamsynth.cli.rules",
    "streamsynth.cli.scenarios",
]

EXIT_USER_ERROR = 2


def register_commands() -> None:
    """Import every command module, which adds its commands to :data:`app`."""
    for module in COMMAND_MODULES:
        importlib.import_module(module)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    from streamsynth import threads

    threads.configure()  # before the commands import polars and torch, so their pools take the budget
    register_commands()
    try:
        with warnings.catch_warnings():
            # What a command noticed (a mixed column, a guessed date layout, emulated bf16) is
            # one line on stderr, as errors are, not Python's two lines with a source location.
            warnings.showwarning = _show_warning
            # Without standalone mode, click returns (not raises) a command's typer.Exit code.
            code = app(args=argv, standalone_mode=False)
    except StreamsynthError as exc:
        typer.secho(f"error: {exc.message}", fg="red", err=True)
        if exc.hint:
            typer.echo(f"  hint: {exc.hint}", err=True)
        return EXIT_USER_ERROR
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        # BrokenPipeError from Python's writes; polars' Rust writer raises a plain OSError
        # "Broken pipe (os error 32)" without errno set.
        if not (exc.errno == errno.EPIPE or f"(os error {errno.EPIPE})" in str(exc)):
            raise
        return closed_stdout()
    except typer.TyperException as exc:
        # click's usage errors (exit 2: a missing option, `-n ten`, an unknown command). typer
        # 0.28+ vendors click and installs no `click`; its exceptions derive from this public
        # type, which is why pyproject asks for typer>=0.28.
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            typer.echo(f"Error: {exc.format_message()}", err=True)
        return exc.exit_code
    return code if isinstance(code, int) else 0


def _show_warning(message: Warning | str, *_: object, **__: object) -> None:
    typer.echo(f"warning: {message}", err=True)


def closed_stdout() -> int:
    """The reader of stdout went away (``streamsynth stream model/ | head``): stop quietly.

    As the Python docs advise for SIGPIPE, point stdout at devnull so that the interpreter's
    final flush of what is still buffered cannot raise a second BrokenPipeError at exit.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout already closed or not a real file (tests)
        pass
    return 0


def run() -> None:  # pragma: no cover - thin wrapper for the console script
    sys.exit(main())
