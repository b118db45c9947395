"""The command line's edges as a shell sees them, through a real subprocess: usage errors exit 2
with a usage line and no traceback, a closed stdout (``| head``) ends quietly, and every
``streamsynth ...`` command that a help text, hint or generated file prints really parses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streamsynth.cli import main


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamsynth", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sample", "demo"], "Missing option '--output'"),
        (["sample", "demo", "-n", "ten", "-o", "x.parquet"], "'-n'"),
        (["smaple", "demo"], "No such command 'smaple'"),
        (["stream", "demo", "--to", "-"], "No such option: --to"),
    ],
    ids=["missing -o", "-n ten", "mistyped command", "--to on stream"],
)
def test_usage_errors_exit_2_with_usage_and_no_traceback(args, message, tmp_path):
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert message in done.stderr
    assert "Usage:" in done.stderr and "--help" in done.stderr
    assert len(done.stderr.splitlines()) <= 6, done.stderr


@pytest.mark.parametrize("batch_size", ["1", "20000"], ids=["small batches", "batches over the pipe buffer"])
def test_a_closed_stdout_ends_the_stream_quietly(batch_size, tmp_path):
    """``streamsynth stream demo | head -c 10``: the reader leaves after a few bytes."""
    with subprocess.Popen(
        [sys.executable, "-m", "streamsynth", "stream", "demo", "--batch-size", batch_size],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    ) as process:
        assert process.stdout.read(10).startswith(b'{"event_id')
        process.stdout.close()
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail("the stream kept running after its reader left")
        err = process.stderr.read().decode()
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert code == 0, err


# -- every command the tool itself prints parses -------------------------------------------------
ROOT = Path(__file__).resolve().parents[2]
PRINTED = re.compile(r"`streamsynth ([^`]+)`|(?:next|Generate|Stream|Replay): +streamsynth ([^\n\"']+)")
#: placeholders in hints and help texts -> a value of the right kind
PLACEHOLDERS = {
    "DATA": "data.csv", "DIR": "model", "FILE": "scenario.yaml", "URL": "file:///tmp/out.jsonl", "N": "10",
    "OUT": "out.parquet", "KIND": "baseline", "EXAMPLE": "payments", "{path}": "schema.yaml",
    "{example}": "payments", "{sink}": "file:///tmp/out.jsonl", "{name}": "card_testing_burst",
}


def printed_commands() -> list[tuple[str, str]]:
    """(where, command) for every ``streamsynth ...`` in the package's strings, docs and example files."""
    found = []
    for folder in ("streamsynth", "scenarios", "connectors"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".yaml", ".md") or "test" in path.name:
                continue
            for match in PRINTED.finditer(path.read_text()):
                command = (match.group(1) or match.group(2)).split("   ")[0].strip().rstrip(".,;:")
                found.append((f"{path.relative_to(ROOT)}", command))
    return found


def _args(command: str) -> list[str]:
    out = []
    for token in command.split(" | ")[0].split():  # `stream model/ | head`: the shell's pipe is not ours
        token = token.split("|")[0]  # "payments|weblogs|metrics": one of them
        for key, value in PLACEHOLDERS.items():
            token = value if token == key else token.replace(key, value) if key.startswith("{") else token
        out.append(token)
    return out


def _parses(args: list[str]) -> None:
    """Parse ``args`` the way the real CLI does, down to the (sub)command, without running it."""
    import typer.main

    from streamsynth.cli import app, register_commands

    register_commands()
    command = typer.main.get_command(app)
    ctx = command.make_context("streamsynth", list(args))
    while hasattr(command, "resolve_command"):  # a group: find the subcommand, parse its arguments
        # click keeps a group's unparsed arguments in (_)protected_args + args, by version
        rest = [*getattr(ctx, "_protected_args", getattr(ctx, "protected_args", [])), *ctx.args]
        if not rest:
            return  # `streamsynth scenario`: a group named in prose
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)


def test_the_package_prints_commands_at_all():
    commands = [c for _, c in printed_commands()]
    assert len(commands) >= 15 and any(c.startswith("sample schema.yaml") or "sample {path}" in c for c in commands)


@pytest.mark.parametrize(("where", "command"), printed_commands(), ids=lambda v: v)
def test_every_printed_command_parses(where, command, capsys):
    args = _args(command)
    if len(args) == 1:  # `streamsynth replay`: a reference to the command, not a command line
        assert main([args[0], "--help"]) == 0, (where, command)
        return
    try:
        _parses(args)
    except Exception as exc:  # a usage error says what is wrong with the printed command
        if type(exc).__name__ == "Exit" and getattr(exc, "exit_code", 1) == 0:
            return  # `... --help`
        pytest.fail(f"{where}: `streamsynth {command}` does not parse: {exc}")


def _all_commands() -> list[list[str]]:
    import typer.main

    from streamsynth.cli import app, register_commands

    register_commands()

    def walk(command, path):
        yield path
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*path, name])

    return list(walk(typer.main.get_command(app), []))


@pytest.mark.parametrize("command", _all_commands(), ids=lambda c: " ".join(c) or "streamsynth")
def test_every_command_has_help(command, capsys):
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage" in out and len(out.splitlines()) > 5
