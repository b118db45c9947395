"""Container health check: the metrics endpoint of the running streamsynth command answers.

The port is read from the command line of PID 1 (``--metrics-port P``), or from
``STREAMSYNTH_METRICS_PORT``; a command that serves no metrics is healthy when the package imports.
Exit 0 healthy, 1 not (Docker's HEALTHCHECK convention).
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.request
from pathlib import Path


def metrics_port(argv: list[str]) -> int | None:
    """The value of ``--metrics-port`` in a command line (either ``--metrics-port P`` or ``=P``)."""
    for i, arg in enumerate(argv):
        if arg == "--metrics-port" and i + 1 < len(argv):
            return int(argv[i + 1])
        if arg.startswith("--metrics-port="):
            return int(arg.partition("=")[2])
    return None


def command_line(path: Path) -> list[str]:
    try:
        raw = path.read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def check(cmdline: Path, timeout: float) -> str | None:
    """None when healthy, else why not."""
    env = os.environ.get("STREAMSYNTH_METRICS_PORT")
    port = int(env) if env else metrics_port(command_line(cmdline))
    if port is None:
        try:
            import streamsynth  # noqa: F401 - importing is the check
        except Exception as exc:  # any failure to import means the image is broken
            return f"streamsynth does not import: {exc}"
        return None
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read()
    except OSError as exc:
        return f"{url}: {exc}"
    if b"streamsynth_" not in body:
        return f"{url} answers but serves no streamsynth metrics"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cmdline", type=Path, default=Path("/proc/1/cmdline"),
                        help="NUL-separated command line to read --metrics-port from")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    problem = check(args.cmdline, args.timeout)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
