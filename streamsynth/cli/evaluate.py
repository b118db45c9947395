"""The ``evaluate`` command: compare synthetic with real data, write HTML and JSON, gate CI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from streamsynth.cli import app
from streamsynth.errors import StreamsynthError

EXIT_GATE_FAILED = 1

_FAIL_HELP = (
    "KEY=VALUE: fail (exit code 1) when metric KEY is worse than VALUE; repeatable. "
    "Lower is better for every key but fraud_auc_ratio, dcr_ratio and nndr. Keys: ks, "
    "wasserstein, tv, dependencies, correlation, association, autocorrelation, inter_arrival, "
    "events_per_entity, hour_of_day, day_of_week, discriminator_auc, discriminative, predictive, predictive_ratio, "
    "fraud_auc_ratio, dcr_ratio, row_copies_excess, sequence_copies_excess, nndr, mia_auc, "
    "attribute_advantage, attribute_leakage, label_rate, and "
    "ks.COLUMN / wasserstein.COLUMN / tv.COLUMN. "
    "`streamsynth evaluate --list-metrics` explains them."
)


def _list_metrics(value: bool) -> None:
    if value:
        from streamsynth.evaluate.scorecard import describe_keys

        typer.echo(describe_keys())
        raise typer.Exit(0)


@app.command()
def evaluate(
    real: Annotated[Path, typer.Argument(help="Real data: CSV, Parquet, JSON Lines, or a directory.")],
    synth: Annotated[Path, typer.Argument(help="Synthetic data in the same columns.")],
    schema_file: Annotated[Path | None, typer.Option(
        "--schema", help="Schema YAML (as written by inspect, or role overrides).")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Write the HTML report here.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write every number as JSON here.")] = None,
    fail_under: Annotated[list[str] | None, typer.Option("--fail-under", help=_FAIL_HELP)] = None,
    time: Annotated[str | None, typer.Option("--time", help="Event-time column of both tables.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of samples, splits and classifiers.")] = 0,
    window: Annotated[int | None, typer.Option(
        "--window", help="Events per sequence window (default: median, <= 24).")] = None,
    iterations: Annotated[int, typer.Option(
        "--iterations", help="Most training steps of each GRU score (the paper: 2000/5000); the "
        "discriminative one stops earlier once a validation part of its windows stops improving.")] = 1000,
    max_windows: Annotated[int, typer.Option("--max-windows", help="Windows per side for the GRUs.")] = 2000,
    no_gru: Annotated[bool, typer.Option("--no-gru", help="Skip the GRU scores (the slow part).")] = False,
    device: Annotated[str | None, typer.Option(
        "--device", help="torch device (default: cuda if present).")] = None,
    train: Annotated[Path | None, typer.Option(
        "--train", help="The model's training data (REAL being held-out data): adds the membership attack.")] = None,
    sensitive: Annotated[str | None, typer.Option(
        "--sensitive", help="Column for the attribute-inference attack.")] = None,
    list_metrics: Annotated[bool, typer.Option(
        "--list-metrics", callback=_list_metrics, is_eager=True, help="Explain the metric keys.")] = False,
) -> None:
    """Score synthetic data against real data: fidelity, utility, privacy, label balance."""
    from streamsynth import io
    from streamsynth.evaluate import EvaluateOptions, SequenceOptions, parse_gates, write_report
    from streamsynth.evaluate import evaluate as run_evaluation

    gates = parse_gates(fail_under or [])
    _check_counts(window=window, iterations=iterations, max_windows=max_windows)
    for option, path in (("--report", report), ("--json", json_path)):
        _check_output(option, path)
    real_frame, schema = _real_and_schema(real, schema_file, time)
    time_column = schema.time if schema else time
    options = EvaluateOptions(
        seed=seed, fail_under=gates, gru=not no_gru, device=device, sensitive=sensitive,
        sequences=SequenceOptions(window=window, max_windows=max_windows, discriminative_iterations=iterations,
                                  predictive_iterations=iterations, device=device),
        train=io.read(train, time=time_column) if train else None,
    )
    result = run_evaluation(real_frame, io.read(synth, time=time_column), schema, options)
    for option, path, write in (
        ("--report", report, lambda p: write_report(result, p)),
        ("--json", json_path, result.write_json),
    ):
        if path:
            write(path)  # in place once complete, or a one-line error naming the path
            typer.echo(f"{'report' if option == '--report' else 'metrics'}: {path}", err=True)
    _print_result(result)
    if result.failed_gates:
        raise typer.Exit(EXIT_GATE_FAILED)


def _print_result(result: Any) -> None:
    """The scorecard, the worst broken dependency, the discriminator, notes and failed gates."""
    _print_scorecard(result)
    deps = result.fidelity.dependencies
    if deps is not None and deps.dependencies and deps.dependencies[0].broken_share > 0:
        worst = deps.dependencies[0]
        example = ", ".join(f"{k}={v}" for k, v in (worst.example or {}).items())
        typer.echo(f"dependencies: {worst.broken_share:.1%} of synthetic rows break {worst.rule}"
                   + (f", e.g. {example}" if example else ""), err=True)
    _print_discriminator(result)
    for note in result.utility.notes:
        typer.echo(f"note: {note}", err=True)
    for check in result.failed_gates:
        shown = "not computed" if check.value is None else f"{check.value:.4g}"
        direction = ">=" if check.higher_is_better else "<="
        typer.secho(f"FAILED {check.key}: {shown}, required {direction} {check.threshold:g}", fg="red", err=True)


def _check_counts(*, window: int | None, iterations: int, max_windows: int) -> None:
    """The GRU options are counts: a window needs 2 events, the GRUs a step and a window."""
    for option, value, least, example in (
        ("--window", window, 2, 8),
        ("--iterations", iterations, 1, 1000),
        ("--max-windows", max_windows, 10, 2000),
    ):
        if value is not None and value < least:
            raise StreamsynthError(
                f"{option} {value}: must be at least {least}", hint=f"e.g. {option} {example}"
            )


def _check_output(option: str, path: Path | None) -> None:
    """Fail before minutes of evaluation when the report or JSON could not be written."""
    if path is None:
        return
    if path.is_dir():
        raise StreamsynthError(f"{option} {path} is a directory", hint="give a file path")
    if not path.parent.is_dir():
        raise StreamsynthError(
            f"{option} {path}: folder {path.parent} does not exist", hint="create it first"
        )


def _real_and_schema(path: Path, schema_file: Path | None, time: str | None) -> tuple[Any, Any]:
    from streamsynth import io
    from streamsynth.schema import Schema, overrides_from_yaml

    if schema_file is None:
        frame = io.read(path, time=time)
        return frame, None
    spec = overrides_from_yaml(schema_file)
    columns = spec.get("columns") or {}
    full = any(isinstance(v, dict) and "dtype" in v for v in columns.values())
    frame = io.read(path, time=time or spec.get("time"))
    if full:
        return frame, Schema.from_dict(spec, source=str(schema_file))
    schema = Schema.infer(
        frame,
        entity=spec.get("entity"),
        time=next((t for t in (time, spec.get("time")) if t and t in frame.columns), None),
        label=spec.get("label"),
        overrides=columns,
    )
    return frame, schema


def _print_discriminator(result: Any, top: int = 3) -> None:
    d = result.fidelity.discriminator
    if d is None:
        return
    leans = ", ".join(f"{c.feature} ({c.importance:.3f})" for c in d.columns[:top])
    typer.echo(f"discriminator: AUC {d.auc:.3f}; the columns it leans on most: {leans}", err=True)


def _print_scorecard(result: Any) -> None:
    width = max((len(c.key) for c in result.scorecard), default=10)
    for check in result.scorecard:
        status = {True: "pass", False: "FAIL", None: "    "}[check.passed]
        value = "n/a" if check.value is None else f"{check.value:.4g}"
        limit = ""
        if check.threshold is not None:
            limit = f"{'>=' if check.higher_is_better else '<='} {check.threshold:g}"
        gate = " (gate)" if check.gate else ""
        typer.echo(f"{status}  {check.key:<{width}}  {value:>10}  {limit}{gate}")
