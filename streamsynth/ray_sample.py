"""Sharded sampling on Ray: the ``--ray`` form of ``sample``, and :func:`sample_ray`.

The unit of work is the shard-exact generator that ``--shard K/N`` runs: each Ray task opens the
source through :func:`streamsynth.pipeline.open_source` with ``shard=(K, N)``, exactly as
``sample --shard K/N`` does, and either writes its own Parquet part or returns its rows as an Arrow
table. Ray only places and runs the tasks (with ``num_cpus``/``num_gpus`` each); which rows a
shard holds is decided where it always is, so the union of the parts is the unsharded stream.

Runs are bounded by time (``end``, or the model's or scenario's own span), never by an event
count: the unsharded stream's first N events are not the union of each shard's first N/K (nor of
its first N), so an ``n_events`` request is refused with the fix.

Ray is an optional extra and imported only here, inside the functions that need it.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from streamsynth.contract import as_utc
from streamsynth.errors import StreamsynthError
from streamsynth.io import BatchFileWriter
from streamsynth.manifest import ManifestCounter, build_manifest, write_manifest
from streamsynth.outputs import Staged
from streamsynth.pipeline import Request, open_source

RAY_EXTRA = 'pip install -e ".[ray]" (from a checkout) or pip install "streamsynth[ray]"'
#: scenario event counts that are per shard, so the merged manifest sums them
_SHARD_COUNTS = ("rows_added", "rows_changed", "rows_removed")


@dataclass(frozen=True)
class RayResources:
    """Where the tasks run and what each one takes: ``address`` None starts a local runtime (or
    joins ``RAY_ADDRESS``), ``"auto"`` or ``host:port`` / ``ray://host:10001`` join a cluster."""

    cpus: float = 1.0
    gpus: float = 0.0
    address: str | None = None

    def __post_init__(self) -> None:
        for name, flag in (("cpus", "--ray-cpus"), ("gpus", "--ray-gpus")):
            if getattr(self, name) < 0:
                raise StreamsynthError(f"{flag} {getattr(self, name)} is negative",
                                       hint=f"give {flag} 0 or more (resources per Ray task)")


@dataclass
class ShardResult:
    """What one task reports back: its shard, part file (if any), counts and source description."""

    shard: tuple[int, int]
    part: str | None
    counter: ManifestCounter
    description: dict[str, Any]


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or the error that names the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401  - the Dataset API needs pandas, which only ray[data] brings
    except ImportError as exc:
        missing = exc.name or "ray"
        raise StreamsynthError(f"running on Ray (--ray, sample_ray) needs Ray Data, but {missing} is not installed",
                               hint=f"install the ray extra: {RAY_EXTRA}") from None
    return ray


def check_request(request: Request, shards: int) -> Request:
    """The request every shard runs, with what cannot be split refused (naming the option)."""
    check_split("--shards", shards, n_events=request.n_events, shard=request.shard)
    return request


def check_split(option: str, count: Any, *, n_events: int | None, shard: Any) -> None:
    """Refuse what a split into ``count`` Ray shards (``--shards`` tasks, ``--workers`` actors)
    cannot do, naming the option and the fix."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise StreamsynthError(f"{option} {count!r} is not a positive whole number", hint=f"use e.g. {option} 4")
    if n_events is not None:
        raise StreamsynthError(
            "--ray splits the stream by entity, so -n/--events cannot say where each shard stops: "
            "the unsharded stream's first N events are not the union of the shards' first events",
            hint="bound the run by time with --end (or leave it out for the model's or scenario's own span)",
        )
    if shard is not None:
        raise StreamsynthError("--ray makes the shards itself, so --shard K/N does not apply",
                               hint=f"drop --shard; {option} N sets how many Ray shards there are")


def generate_shard(source: str, request: Request, part: str | None) -> tuple[Any, ShardResult]:
    """One Ray task: the source's shard ``request.shard``, written to ``part`` (Parquet) or
    returned as an Arrow table (``part`` None). The same generator as ``sample --shard K/N``."""
    src = open_source(source, request)
    counter = ManifestCounter(time=src.time)
    if part is None:
        frames = [counter.add(batch) for batch in src.stream]
        table = (pl.concat(frames) if frames else pl.DataFrame()).to_arrow()
    else:
        table = None
        with BatchFileWriter(Path(part), "parquet") as writer:
            for batch in src.stream:
                writer.write(counter.add(batch))
    return table, ShardResult(request.shard, part, counter, src.description)


def sample_ray(source: str | Path, *, shards: int, cpus: float = 1.0, gpus: float = 0.0,
               address: str | None = None, **request: Any) -> Any:
    """The source's stream as a ``ray.data.Dataset`` of ``shards`` blocks, one Ray task each.

    ``source`` is what ``streamsynth sample`` takes (a model directory, a rules schema, a scenario
    file, a data file, ``"demo"``); ``request`` holds :class:`streamsynth.pipeline.Request`'s
    fields (``end``, ``start`` as datetimes or ISO text, ``n_entities``, ``seed``, ``conditions``,
    ``batch_size``); ``n_events`` is refused (see the module's note). Joins the running Ray
    runtime, or starts one (``address`` as :class:`RayResources` takes it) that stays up for the
    Dataset's sake: ``ray.shutdown()`` when done with it.
    """
    for key in ("start", "end"):
        if isinstance(request.get(key), str | datetime):
            request[key] = as_utc(request[key])
    base = check_request(Request(**request), shards)
    resources = RayResources(cpus, gpus, address)
    ray = connect(resources.address)
    refs = _submit(ray, _located(source), base, shards, resources, None)
    results = _get(ray, [result for _, result in refs])
    # a shard without events may not know the columns (its source never made a batch): its empty
    # block would clash with the others' schema, and adds nothing
    tables = [table for (table, _), result in zip(refs, results, strict=True) if result.counter.events]
    return ray.data.from_arrow_refs(tables or [refs[0][0]])


def write_parts(source: str, request: Request, *, shards: int, output: Path,
                resources: RayResources) -> tuple[Path, ManifestCounter]:
    """``sample --ray``: ``output/part-K-of-N.parquet`` from N Ray tasks and one merged manifest
    beside the folder (``output.manifest.json``). The folder and manifest are staged and replace
    an earlier pair together, or not at all. Returns the manifest's path and the merged counts."""
    check_request(request, shards)
    _check_output(output)
    with runtime(resources.address) as ray, Staged() as stage:
        folder = stage.folder(output).resolve()
        refs = _submit(ray, _located(source), request, shards, resources, folder)
        results = _get(ray, [result for _, result in refs])
        _give_empty_parts_the_columns(folder, results)
        counter = ManifestCounter(time=None)
        for result in results:
            counter.absorb(result.counter)
        record = build_manifest(
            counter=counter, output=output, model=merge_descriptions([r.description for r in results], source),
            seed=results[0].description.get("seed"),
            extra={"shards": [_shard_entry(r) for r in results],
                   "ray": {"address": resources.address, "cpus_per_task": resources.cpus,
                           "gpus_per_task": resources.gpus}},
        )
        path = write_manifest(record, output, stage)
    return path, counter


def part_name(k: int, n: int) -> str:
    return f"part-{k}-of-{n}.parquet"


def merge_descriptions(descriptions: list[dict[str, Any]], source: str) -> dict[str, Any]:
    """One source description for the whole run: the shards agree on everything but their shard
    and the per-shard counts (a scenario event's rows, a model's new dependency draws), summed."""
    merged = copy.deepcopy(descriptions[0])
    merged["shard"] = None
    if "path" in merged:  # the tasks were given an absolute path; the manifest keeps the user's
        merged["path"] = source
    events = (merged.get("scenario") or {}).get("events") or []
    for i, event in enumerate(events):
        for key in _SHARD_COUNTS:
            if key in event:
                event[key] = sum(d["scenario"]["events"][i][key] for d in descriptions)
    dependencies = merged.get("dependencies")
    if dependencies and "rows_with_new_determinants" in dependencies:  # {"rows": n, column: n, ...}
        drawn: Counter = Counter()
        for d in descriptions:
            drawn.update(d["dependencies"]["rows_with_new_determinants"])
        dependencies["rows_with_new_determinants"] = dict(drawn)
    return merged


@contextmanager
def runtime(address: str | None) -> Iterator[Any]:
    """Ray for one command: the caller's runtime if one is up, else one started (or joined) here
    and shut down afterwards."""
    ray = import_ray()
    owned = not ray.is_initialized()
    if owned:
        connect(address)
    try:
        yield ray
    finally:
        if owned:
            ray.shutdown()


def connect(address: str | None) -> Any:
    """Join the running runtime, or start/join the one ``address`` names."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=address, logging_level="ERROR")
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise StreamsynthError(f"cannot reach the Ray cluster at {address or 'RAY_ADDRESS'}: {exc}",
                               hint="check --ray-address ('auto', HOST:PORT or ray://HOST:10001), "
                               "or leave it out to start a local runtime") from None
    return ray


# -- helpers ---------------------------------------------------------------------------------------
def _submit(ray: Any, source: str, request: Request, shards: int, resources: RayResources,
            folder: Path | None) -> list[tuple[Any, Any]]:
    """Start one task per shard; (table ref, result ref) each, in shard order."""
    task = ray.remote(generate_shard).options(num_cpus=resources.cpus, num_gpus=resources.gpus, num_returns=2)
    refs = []
    for k in range(shards):
        part = None if folder is None else str(folder / part_name(k, shards))
        table, result = task.remote(source, replace(request, shard=(k, shards)), part)
        refs.append((table, result))
    return refs


def _get(ray: Any, refs: list[Any]) -> list[ShardResult]:
    """The tasks' results; a task's own StreamsynthError comes back as itself, not wrapped."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, StreamsynthError):
            raise exc.cause from None
        raise


def _located(source: str | Path) -> str:
    """An absolute path for a local file or folder: a task's working folder is not the driver's."""
    path = Path(source)
    return str(path.resolve()) if path.exists() else str(source)


def _check_output(output: Path) -> None:
    """``--ray`` writes a folder of parts; refuse a file name and a folder holding other files,
    which replacing the folder would delete."""
    if output.suffix.lower() in (".parquet", ".csv", ".jsonl", ".json"):
        raise StreamsynthError(f"--output {output} names a file, but --ray writes a folder of Parquet parts",
                               hint=f"give a folder, e.g. -o {output.with_suffix('')}/")
    if output.exists() and not output.is_dir():
        raise StreamsynthError(f"--output {output} is a file, but --ray writes a folder of Parquet parts",
                               hint="give a new or empty folder")
    if output.is_dir():
        others = sorted(p.name for p in output.iterdir() if not (p.name.startswith("part-") and p.suffix == ".parquet"))
        if others:
            raise StreamsynthError(
                f"--output {output} holds files other than Parquet parts ({', '.join(others[:3])}), "
                "and --ray replaces the whole folder",
                hint="give a new or empty folder",
            )


def _give_empty_parts_the_columns(folder: Path, results: list[ShardResult]) -> None:
    """Rewrite a part without events with the other parts' columns, so the folder reads as one
    table: a shard whose source made no batch at all could not know them."""
    full = next((r for r in results if r.counter.events), None)
    if full is None:
        return
    schema = pl.read_parquet_schema(full.part)
    for result in results:
        if not result.counter.events:
            pl.DataFrame(schema=schema).write_parquet(result.part)


def _shard_entry(result: ShardResult) -> dict[str, Any]:
    k, n = result.shard
    entry: dict[str, Any] = {"shard": f"{k}/{n}", "output": part_name(k, n), "counts": result.counter.to_dict()}
    events = (result.description.get("scenario") or {}).get("events")
    if events:
        entry["rows_added"] = [e.get("rows_added", 0) for e in events]
    return entry
