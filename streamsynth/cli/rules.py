"""``streamsynth schema init|check``: write a commented example rules schema, or check one.

Sampling and streaming from a schema go through the usual ``sample``/``stream`` commands,
which accept a schema YAML as their SOURCE.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from streamsynth.cli import app
from streamsynth.errors import StreamsynthError
from streamsynth.outputs import write_text

schema_app = typer.Typer(
    help="Rule-based schemas: start from rules and distributions when there is no data yet.",
    no_args_is_help=True,
)
app.add_typer(schema_app, name="schema")


def example_text(name: str) -> str:
    """The commented text of a shipped example schema."""
    from streamsynth.rules import EXAMPLES

    if name not in EXAMPLES:
        raise StreamsynthError(
            f"there is no example schema {name!r}", hint=f"examples are: {', '.join(EXAMPLES)}"
        )
    return resources.files("streamsynth.rules").joinpath("examples", f"{name}.yaml").read_text()


@schema_app.command("init")
def init(
    example: Annotated[str, typer.Argument(help="payments, weblogs or metrics.")] = "payments",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: EXAMPLE.yaml).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented example schema to edit, then `streamsynth sample FILE -n N -o OUT`."""
    text = example_text(example)
    path = output or Path(f"{example}.yaml")
    if str(path) == "-":
        typer.echo(text, nl=False)
        return
    if path.exists() and not force:
        raise StreamsynthError(f"{path} already exists", hint="pass --force to overwrite it, or -o OTHER.yaml")
    write_text(path, text)
    typer.echo(f"wrote the {example} example schema to {path}", err=True)
    typer.echo(f"next: streamsynth sample {path} -n 10000 -o {example}.parquet", err=True)


@schema_app.command("check")
def check(path: Annotated[Path, typer.Argument(help="A rules schema YAML file.")]) -> None:
    """Validate a schema file and list the columns it generates."""
    from streamsynth.models.rules import RuleSynthesizer

    model = RuleSynthesizer.from_file(path)
    spec = model.spec
    typer.echo(f"{path}: ok ({spec.name}: {spec.entity.count:,} {spec.entity.name} entities)")
    for column in model.schema.columns:
        kind = f" ({column.kind})" if column.kind else ""
        typer.echo(f"  {column.name:<24} {column.role.value:<12} {column.dtype}{kind}")
