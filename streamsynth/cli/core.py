"""Core commands: fit a model, sample or stream from a source, inspect data, run the demo."""

from __future__ import annotations

import io
import sys
import time as clock
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer
from typer.core import TyperCommand

from streamsynth.cli import app, closed_stdout
from streamsynth.cli.options import Progress, print_table
from streamsynth.cli.source_options import SourceOptions, source_options
from streamsynth.contract import check_count, take
from streamsynth.errors import StreamsynthError, refuse_without
from streamsynth.models import MODELS

MODEL_KINDS = list(MODELS)


def _remember_model(ctx: typer.Context, value: str) -> str:
    # --model is eager, so `fit --model X --help` knows X when the help is printed
    ctx.meta["streamsynth.model"] = value
    return value


class _FitCommand(TyperCommand):
    """``fit --help`` ends with the ``--option`` keys of the model named before it."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        super().format_help(ctx, formatter)
        model = ctx.meta.get("streamsynth.model")
        if model is None:
            typer.echo("Each model's --option keys: `streamsynth fit --model KIND --help` or `streamsynth models`")
        else:
            _print_model_options(model)


@app.command(cls=_FitCommand)
def fit(
    data: Annotated[Path, typer.Argument(help="CSV, Parquet, JSON Lines file, or a directory of them.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model directory to write.")],
    model: Annotated[
        str,
        typer.Option("--model", "-m", help=f"Model kind: {', '.join(MODEL_KINDS)}.", is_eager=True,
                     callback=_remember_model),
    ] = "baseline",
    time: Annotated[str | None, typer.Option("--time", help="Event-time column, or DATE+TIME columns.")] = None,
    entity: Annotated[str | None, typer.Option("--entity", help="Entity (sequence key) column.")] = None,
    schema_file: Annotated[Path | None, typer.Option("--schema", help="YAML with roles to override.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", help="Model option KEY=VALUE (e.g. epochs=5), listed by `fit --model KIND --help`. "
                     "Repeatable."),
    ] = None,
    dp_epsilon: Annotated[
        float | None,
        typer.Option("--dp-epsilon", help="Train with DP-SGD within this epsilon per entity (transformer, timegan)."),
    ] = None,
    dp_delta: Annotated[
        float | None, typer.Option("--dp-delta", help="The delta of the DP budget (default: 1/(10 x entities)).")
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option("--preset", help="A model's named settings: transformer fast, auto (default: sized from "
                     "the data) or best; timegan fast (default) or paper; --option values override it."),
    ] = None,
) -> None:
    """Learn a model from real data and save it as JSON + safetensors."""
    from streamsynth.models import create

    started = clock.perf_counter()
    options = parse_options(option)
    _check_flag_options(options)
    # the DP budget is the models' dp_epsilon/dp_delta options under a flag of its own
    options.update({k: v for k, v in (("dp_epsilon", dp_epsilon), ("dp_delta", dp_delta)) if v is not None})
    if preset is not None:
        options["preset"] = preset
    if {"dp_epsilon", "dp_delta"} & set(options):
        _check_private(model)
    synthesizer = create(model, seed=seed, **options)  # a bad model name fails before reading
    frame, schema = read_with_schema(data, time, entity, schema_file)
    synthesizer.fit(frame, schema)
    if _is_main_process():
        roles = synthesizer.schema
        typer.echo(f"roles: time {roles.time}, entity {roles.entity or '(none)'}, label {roles.label or '(none)'} "
                   "(override with --time, --entity or --schema)", err=True)
        if synthesizer.dependencies:
            typer.echo("dependencies kept exactly: " + "; ".join(d.describe() for d in synthesizer.dependencies),
                       err=True)
        if synthesizer.continuities:
            continued = "; ".join(c.describe() for c in synthesizer.continuities)
            typer.echo(f"continued from the previous event: {continued}", err=True)
        if synthesizer.relations:
            typer.echo("columns following others: " + "; ".join(r.describe() for r in synthesizer.relations),
                       err=True)
        for line in synthesizer.learned():
            typer.echo(line, err=True)
        synthesizer.save(output)
        typer.echo(
            f"fitted {model} on {frame.height:,} events of {synthesizer.fitted_entities:,} "
            f"{'entity' if synthesizer.fitted_entities == 1 else 'entities'} "
            f"in {clock.perf_counter() - started:.1f}s -> {output}",
            err=True,
        )


@app.command()
@source_options()
def sample(
    source: SourceOptions,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Output file (.parquet, .csv, .jsonl); with --ray a folder.")
    ],
    ray: Annotated[
        bool, typer.Option("--ray", help="Run --shards N Ray tasks, each writing output/part-K-of-N.parquet "
                           "(needs the ray extra); a local runtime unless --ray-address.")
    ] = False,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="Join this Ray cluster ('auto', HOST:PORT, "
                                 "ray://HOST:10001); implies --ray.")
    ] = None,
    shards: Annotated[int | None, typer.Option("--shards", help="With --ray: how many shards (tasks).")] = None,
    ray_cpus: Annotated[float, typer.Option("--ray-cpus", help="With --ray: CPUs per task.")] = 1.0,
    ray_gpus: Annotated[float, typer.Option("--ray-gpus", help="With --ray: GPUs per task.")] = 0.0,
) -> None:
    """Write a finite, labelled sample with a manifest beside it."""
    from streamsynth.manifest import ManifestCounter, build_manifest, write_manifest
    from streamsynth.outputs import Staged

    if ray or ray_address is not None:
        _sample_ray(source, output, shards, ray_address, (ray_cpus, ray_gpus))
        return
    # --shards, --ray-cpus and --ray-gpus mean nothing without --ray: say so, not ignore them
    refuse_without("--ray", "add --ray (and the ray extra), or use --shard K/N for one shard here",
                   shards=shards is not None, ray_cpus=ray_cpus != 1.0, ray_gpus=ray_gpus != 0.0)
    src = source.open()
    counter = ManifestCounter(time=src.time)
    # the sample and its manifest replace an earlier pair together, or not at all
    with Staged() as stage:
        with Progress(total=source.n_events, label="sampling") as progress:
            batches = (progress.advance(counter.add(b)) for b in src.stream)
            _write(batches, output, stage)
        record = build_manifest(counter=counter, output=output, model=src.description,
                                seed=source.resolved_seed(src.description))
        path = write_manifest(record, output, stage)
    typer.echo(f"wrote {counter.events:,} events to {output} (manifest {path.name})", err=True)


def _sample_ray(source: SourceOptions, output: Path, shards: int | None, address: str | None,
                per_task: tuple[float, float]) -> None:
    """``sample --ray``: the shards as Ray tasks (streamsynth.ray_sample), one manifest."""
    from streamsynth.ray_sample import RayResources, write_parts

    if shards is None:
        raise StreamsynthError("--ray needs --shards N: how many shards (Ray tasks) to split the entities into",
                               hint="e.g. --ray --shards 4")
    resources = RayResources(cpus=per_task[0], gpus=per_task[1], address=address)
    started = clock.perf_counter()
    path, counter = write_parts(source.source, source.request(), shards=shards, output=output,
                                resources=resources)
    typer.echo(f"wrote {counter.events:,} events in {shards} parts to {output}/ (manifest {path.name}) "
               f"in {clock.perf_counter() - started:.1f}s", err=True)


@app.command()
@source_options(batch_size=True)
def stream(
    source: SourceOptions,
    output: Annotated[str, typer.Option("--output", "-o", help="'-' for JSON lines on stdout, or a file.")] = "-",
) -> None:
    """Generate an endless (or limited) stream as fast as possible; Ctrl-C stops it cleanly.

    For paced delivery to Kafka, HTTP or rotating files, use `streamsynth replay`.
    """
    src = source.open(endless=True)
    written = 0
    try:
        if output == "-":
            out = sys.stdout.buffer
            buffer = io.BytesIO()
            for batch in src.stream:
                # serialised here and written by Python: polars 1.x swallows a closed pipe's error
                # when it writes to a file object, and the stream would then run forever
                buffer.seek(0)
                buffer.truncate()
                batch.write_ndjson(buffer)
                out.write(buffer.getbuffer())
                out.flush()
                written += batch.height
        else:
            written = _write(src.stream, Path(output))
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # the reader left (`| head`): the normal end of an endless stream
        closed_stdout()
        return
    typer.echo(f"streamed {written:,} events", err=True)


@app.command()
def models(
    kind: Annotated[str | None, typer.Argument(help="One model kind (default: all).")] = None,
) -> None:
    """List the model kinds and each one's --option keys: default, meaning, rough CPU cost."""
    for name in [kind] if kind else MODEL_KINDS:
        _print_model_options(name)


@app.command()
def inspect(
    data: Annotated[Path, typer.Argument(help="CSV, Parquet, JSON Lines file, or a directory of them.")],
    time: Annotated[str | None, typer.Option("--time", help="Event-time column, or DATE+TIME columns.")] = None,
    entity: Annotated[str | None, typer.Option("--entity", help="Entity (sequence key) column.")] = None,
    schema_file: Annotated[Path | None, typer.Option("--schema", help="YAML with roles to override.")] = None,
    write_schema: Annotated[Path | None, typer.Option("--write-schema", help="Save the inferred schema.")] = None,
) -> None:
    """Show each column's role, type, cardinality and nulls, and sequence statistics."""
    from streamsynth import continuity, relations
    from streamsynth.dependencies import discover
    from streamsynth.schema import sequence_stats

    frame, schema = read_with_schema(data, time, entity, schema_file)
    rows = [
        [c.name, c.role.value + (f" ({c.kind})" if c.kind else ""), c.dtype, f"{c.cardinality:,}", f"{c.nulls:,}"]
        for c in schema.columns
    ]
    print_table(f"{data}: {frame.height:,} rows", ["column", "role", "type", "distinct", "nulls"], rows)
    stats = sequence_stats(frame, schema)
    facts = [["entity column", schema.entity or "-"], ["time column", schema.time or "-"],
             ["label column", schema.label or "-"]]
    facts += [[k.replace("_", " "), _fmt(v)] for k, v in stats.items()]
    print_table("sequences", ["statistic", "value"], facts)
    dependencies = discover(frame, schema)
    if dependencies:
        print_table("dependencies (kept exactly in samples; `dependencies:` in a schema file changes them)",
                    ["determined by", "column", "rows"],
                    [[" + ".join(d.determinants), d.determines, f"{d.support:.2%}"] for d in dependencies])
    ordered = frame.sort([c for c in (schema.entity, schema.time) if c], maintain_order=True)
    continued = continuity.discover(ordered, schema, dependencies)
    if continued:
        print_table("continued from the entity's previous event (kept in samples)",
                    ["column", "equals the previous", "events"],
                    [[c.column, c.follows, f"{c.support:.2%}"] for c in continued])
    fixed = {n for d in dependencies for n in (*d.determinants, d.determines)}
    following = relations.discover(frame, schema, fixed=fixed)
    if following:
        print_table("numeric columns following others (their variance explained, on held-out rows)",
                    ["follows", "column", "explained"],
                    [[" + ".join(r.parents), r.child, f"{r.score:.0%}"] for r in following])
    if write_schema:
        schema.to_yaml(write_schema)
        typer.echo(f"schema written to {write_schema}", err=True)


@app.command()
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for the demo's files.")] = Path(
        "demo-output"
    ),
    n_events: Annotated[int, typer.Option("--events", "-n", help="Synthetic events to sample.")] = 200_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
) -> None:
    """Simulate card payments, fit the baseline, sample a labelled stream, write Parquet + manifest."""
    from streamsynth import io
    from streamsynth.datasets import payments
    from streamsynth.manifest import ManifestCounter, build_manifest, write_manifest
    from streamsynth.models.baseline import BaselineSynthesizer
    from streamsynth.outputs import Staged

    started = clock.perf_counter()
    check_count(n_events, "--events (-n)")
    typer.echo("1/4 simulating card payments (2,000 customers, 30 days) ...", err=True)
    real = payments(n_customers=2000, n_days=30, seed=seed)
    real_path = io.write(real, output / "payments_real.parquet")
    typer.echo("2/4 fitting the statistical baseline ...", err=True)
    model = BaselineSynthesizer(seed=seed).fit(real)
    model_dir = model.save(output / "model")
    typer.echo(f"3/4 sampling {n_events:,} synthetic events ...", err=True)
    synth_path = output / "payments_synthetic.parquet"
    counter = ManifestCounter(time=model.schema.time)
    with Staged() as stage:
        with Progress(total=n_events, label="sampling") as progress:
            batches = model.stream(batch_size=20_000)
            _write((progress.advance(counter.add(b)) for b in take(batches, n_events)), synth_path, stage)
        record = build_manifest(
            counter=counter, output=synth_path, seed=seed,
            model={"kind": "model", "path": str(model_dir), "model": model.name, "trained_on": str(real_path)},
        )
        manifest = write_manifest(record, synth_path, stage)
    typer.echo("4/4 summary", err=True)
    synth = pl.read_parquet(synth_path)
    rows = [
        ["events", f"{real.height:,}", f"{synth.height:,}"],
        ["entities", f"{real['customer_id'].n_unique():,}", f"{synth['customer_id'].n_unique():,}"],
        ["fraud rate", f"{real['is_fraud'].mean():.3%}", f"{synth['is_fraud'].mean():.3%}"],
        ["median amount", f"{real['amount'].median():.2f}", f"{synth['amount'].median():.2f}"],
        ["p99 amount", f"{real['amount'].quantile(0.99):.2f}", f"{synth['amount'].quantile(0.99):.2f}"],
        ["merchant categories", f"{real['merchant_category'].n_unique()}", f"{synth['merchant_category'].n_unique()}"],
    ]
    print_table("real vs synthetic", ["", "real", "synthetic"], rows)
    labels = [[k, f"{v:,}"] for k, v in counter.labels.items()]
    print_table("synthetic events per label", ["label", "events"], labels)
    typer.echo(
        f"wrote {synth_path}, {manifest}, model in {model_dir} ({clock.perf_counter() - started:.1f}s)", err=True
    )


# -- helpers ---------------------------------------------------------------------------------------
def read_with_schema(
    data: Path, time: str | None, entity: str | None, schema_file: Path | None
) -> tuple[pl.DataFrame, Any]:
    """Read a data file and infer its schema, with --time/--entity and a schema file's overrides."""
    from streamsynth import io
    from streamsynth.schema import Schema, overrides_from_yaml, text_overrides

    spec: dict[str, Any] = overrides_from_yaml(schema_file) if schema_file else {}
    time = time or spec.get("time")  # a schema file's time column is parsed as --time is
    frame = io.read(data, time=time, time_format=spec.get("time_format"), text_columns=text_overrides(spec))
    schema = Schema.infer(
        frame,
        entity=entity or spec.get("entity"),
        time=_parsed_time_name(frame, time),
        label=spec.get("label"),
        overrides=spec.get("columns"),
    )
    schema.dependencies = spec.get("dependencies", "auto")
    schema.constraints = spec.get("constraints", [])
    return frame, schema


def parse_options(items: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` model options, with numbers and booleans converted."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise StreamsynthError(f"--option {item!r} is not KEY=VALUE", hint="e.g. --option epochs=5")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML 1.1 reads 3e-3 (no dot) as text
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        out[key.strip().replace("-", "_")] = parsed
    return out


def _write(batches: Any, path: Path, stage: Any = None) -> int:
    from streamsynth import io

    count = 0

    def counted() -> Any:
        nonlocal count
        for batch in batches:
            count += batch.height
            yield batch

    io.write_batches(counted(), path, stage)
    return count


def _parsed_time_name(frame: pl.DataFrame, time: str | None) -> str | None:
    if time is None:
        return None
    if "+" in time:
        return "ts" if "ts" in frame.columns else "event_ts"
    return time


def _print_model_options(model: str) -> None:
    from streamsynth.models.options import describe

    rows = describe(model)
    if rows:
        print_table(f"{model}: fit --model {model} --option KEY=VALUE", ["option", "default", "meaning", "cost"], rows)
    else:
        typer.echo(f"{model}: no --option keys (only --seed)")


def _check_flag_options(options: dict[str, Any]) -> None:
    """Keys with a flag of their own (seed, the DP budget) are refused as --option."""
    from streamsynth.models.options import NOT_OPTIONS

    for key in options:
        if key in NOT_OPTIONS:
            raise StreamsynthError(f"--option {key}=... is not a model option", hint=f"use {NOT_OPTIONS[key]}")


def _check_private(model: str) -> None:
    """Only models trained by SGD take a DP budget; say so before reading any data."""
    from streamsynth.models.options import model_options

    if "dp_epsilon" not in {option.name for option in model_options(model)}:
        raise StreamsynthError(
            f"the {model} model cannot train with differential privacy (DP-SGD needs gradient training)",
            hint="use --model transformer or --model timegan, or drop --dp-epsilon/--dp-delta",
        )


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
