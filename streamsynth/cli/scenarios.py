"""``streamsynth scenario list|show|validate|run`` and ``streamsynth rebalance``."""

from __future__ import annotations

import time as clock
from pathlib import Path
from typing import Annotated

import typer

from streamsynth.cli import app
from streamsynth.cli.options import Progress, print_table
from streamsynth.errors import StreamsynthError

scenario_app = typer.Typer(
    help="Scenarios: timed rare events (fraud, outages, surges) injected with exact labels.",
    no_args_is_help=True,
)
app.add_typer(scenario_app, name="scenario")

ScenarioArg = Annotated[str, typer.Argument(help="A scenario file, or the name of a library scenario.")]


@scenario_app.command("list")
def list_command() -> None:
    """The library's ready-made scenarios and what each is for."""
    from streamsynth.scenarios.catalog import library

    rows = []
    for s in library():
        kinds = ", ".join(dict.fromkeys(e.kind for e in s.events))
        rows.append([s.name, s.base.source, kinds, " ".join(s.description.split())])
    print_table("scenario library", ["name", "base", "events", "description"], rows)


@scenario_app.command("show")
def show(name: ScenarioArg) -> None:
    """Print a scenario file (e.g. a library one, to copy and adapt)."""
    from streamsynth.scenarios.catalog import find

    typer.echo(find(name).read_text(), nl=False)


@scenario_app.command("validate")
def validate(
    file: ScenarioArg,
    base: Annotated[
        bool, typer.Option("--base/--no-base", help="Also open the base and check the columns events name.")
    ] = True,
) -> None:
    """Check a scenario file: keys, types, injector kinds and parameters, event windows, and
    (unless --no-base) that the base has every column the events refer to."""
    from streamsynth.scenarios.catalog import find
    from streamsynth.scenarios.spec import load_scenario

    path = find(file)
    scenario = load_scenario(path)
    if base:
        from streamsynth.pipeline import open_scenario_run

        run = open_scenario_run(scenario)
        next(run.stream, None)  # the events check their columns against the first base batch
        run.stream.close()
    typer.echo(f"{file}: ok ({scenario.name}, {len(scenario.events)} events)")


@scenario_app.command("run")
def run_command(
    file: ScenarioArg,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output file (.parquet, .csv, .jsonl).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Override the scenario's seed.")] = None,
    n_events: Annotated[int | None, typer.Option("--events", "-n", help="Stop the base after N events.")] = None,
    entities: Annotated[int | None, typer.Option("--entities", help="Override the base population.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Events per batch.")] = None,
) -> None:
    """Run a scenario and write the labelled events with a manifest beside them.

    For delivery to Kafka or HTTP with pacing, use `streamsynth replay FILE --to URL`.
    """
    from streamsynth import io
    from streamsynth.contract import StreamChecker
    from streamsynth.manifest import ManifestCounter, build_manifest, write_manifest
    from streamsynth.outputs import Staged
    from streamsynth.pipeline import open_scenario_run
    from streamsynth.scenarios.catalog import find
    from streamsynth.scenarios.spec import load_scenario

    started = clock.perf_counter()
    path = find(file)
    scenario = load_scenario(path)
    output = output or _output_from_spec(scenario, path)
    run = open_scenario_run(scenario, seed=seed, n_entities=entities, n_events=n_events, batch_size=batch_size)
    counter = ManifestCounter(time=run.time)
    checker = StreamChecker(time=run.time, entity=run.entity, check_unique_ids=False)
    with Staged() as stage:  # the events and their manifest replace an earlier pair together
        with Progress(total=None, label=f"scenario {scenario.name}") as progress:
            batches = (progress.advance(counter.add(checker.check(b))) for b in run.stream)
            io.write_batches(batches, output, stage)
        base = {k: v for k, v in run.description.items() if k != "scenario"}
        record = build_manifest(
            counter=counter, output=output, model=base, seed=run.report["seed"], scenario=run.report
        )
        manifest = write_manifest(record, output, stage)
    rows = [
        [e["kind"], e["label"], e["window_start"], e["window_end"],
         f"{e['rows_added']:,}", f"{e['rows_changed']:,}", f"{e['rows_removed']:,}"]
        for e in run.report["events"]
    ]
    print_table(f"{scenario.name}", ["event", "label", "from", "to", "added", "changed", "removed"], rows)
    typer.echo(
        f"wrote {counter.events:,} events ({counter.anomalies:,} anomalies) to {output} "
        f"(manifest {manifest.name}) in {clock.perf_counter() - started:.1f}s",
        err=True,
    )


def _output_from_spec(scenario: object, path: Path) -> Path:
    """The spec's ``output.sink`` when it is a file; otherwise ask for ``-o``."""
    sink = getattr(getattr(scenario, "output", None), "sink", None)
    if sink and (sink.startswith("file://") or "://" not in sink):
        target = Path(sink.removeprefix("file://"))
        return target if target.is_absolute() else Path.cwd() / target
    hint = "give --output FILE"
    if sink:
        hint += f", or deliver to {sink} with `streamsynth replay {path} --to {sink}`"
    raise StreamsynthError(f"{path}: no output file to write", hint=hint)


@app.command()
def rebalance(
    data: Annotated[Path, typer.Argument(help="The real training data (CSV, Parquet, JSON Lines).")],
    label: Annotated[str, typer.Option("--label", help="The class column, e.g. is_fraud.")],
    ratio: Annotated[float, typer.Option("--ratio", help="Wanted share of the minority class, e.g. 0.2.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output file (.parquet, .csv, .jsonl).")],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="A model directory that takes conditions (default: "
                                 "fit the baseline on DATA).")
    ] = None,
    minority: Annotated[
        str | None, typer.Option("--minority", help="The class to add (default: the rarest value).")
    ] = None,
    time: Annotated[str | None, typer.Option("--time", help="Event-time column.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
) -> None:
    """Build a training set with the asked class ratio from real plus marked synthetic rows."""
    from streamsynth import io
    from streamsynth.outputs import Staged
    from streamsynth.rebalance import rebalance as run_rebalance

    started = clock.perf_counter()
    frame = io.read(data, time=time)
    result = run_rebalance(frame, label=label, ratio=ratio, model=model, minority=minority, seed=seed,
                           source=str(data))
    with Staged() as stage:
        io.write_batches([result.frame], output, stage)
        manifest = result.write_manifest(output, stage)
    s = result.summary
    typer.echo(
        f"wrote {result.frame.height:,} rows ({s['real_rows']:,} real + {s['synthetic_rows']:,} synthetic); "
        f"{label}={s['minority']!r} share {s['achieved_ratio']:.4f} (asked {ratio}) to {output} "
        f"(manifest {manifest.name}) in {clock.perf_counter() - started:.1f}s",
        err=True,
    )
