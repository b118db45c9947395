"""Replay on Ray: the ``--ray`` form of ``replay``, :func:`start_replay` and its handle :class:`RayReplay`.

N Ray actors each replay one shard of the source: worker K opens it through
:func:`streamsynth.pipeline.open_source` with ``shard=(K, N)`` (the shard-exact generator of
``replay --shard K/N``) and runs the ordinary :class:`~streamsynth.connectors.job.ReplayJob`, with
its own checkpoint (``--checkpoint-dir``/``worker-K-of-N.checkpoint``) and its own manifest
(beside the merged one, ``<manifest>.worker-K-of-N.json``). Ray only places, restarts and stops
the workers; what a worker sends, acknowledges and checkpoints is decided where it always is.

The driver polls the workers about twice a second: it prints one progress line (their counts
summed, at most once a second), serves their sum on ``--metrics-port``, tells of a worker that
Ray restarted (a restarted worker resumes from its checkpoint, as ``replay --checkpoint`` does)
and, on SIGINT/SIGTERM, tells every worker to stop; each then flushes what it sent and writes
its manifest, and the driver writes one merged manifest whose per-worker counts add up.

Ray is an optional extra and imported only inside the functions that need it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge

from streamsynth.connectors.base import SinkURL
from streamsynth.connectors.job import (
    EXIT_ABORTED,
    EXIT_LOSS,
    Interrupted,
    ReplayJob,
    ReplaySettings,
    SignalTrap,
    counter_from,
    default_manifest,
)
from streamsynth.connectors.metrics import MetricsEndpoint
from streamsynth.connectors.pacing import Pacing
from streamsynth.errors import StreamsynthError
from streamsynth.manifest import ManifestCounter, build_manifest
from streamsynth.outputs import write_text
from streamsynth.pipeline import Request, open_source
from streamsynth.progress import SWITCH_ENV
from streamsynth.ray_sample import check_split, connect, import_ray, merge_descriptions, runtime

#: Ray restarts a dead worker this often (and retries the replay task on the new one)
MAX_RESTARTS = 3
#: CPUs each worker reserves: a replay mostly waits on pacing and the sink, so workers share cores
WORKER_CPUS = 0.5
POLL_SECONDS = 0.5
PROGRESS_EVERY = 1.0


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class WorkerPlan:
    """What worker K of N replays: its shard's request, the source's recorded arguments (with
    ``shard`` set, so its checkpoint and manifest describe the shard) and its own settings."""

    shard: tuple[int, int]
    source: str
    request: Request
    source_args: dict[str, Any]
    settings: ReplaySettings


class ReplayWorker:
    """One Ray actor (threaded: ``run`` goes on while ``status`` and ``stop`` are answered)."""

    def __init__(self, plan: WorkerPlan) -> None:
        os.environ[SWITCH_ENV] = "off"  # the driver prints the progress of all workers
        self.plan = plan
        self.stopping = threading.Event()
        self.lines: deque[str] = deque(maxlen=1000)
        self.job: ReplayJob | None = None

    def pid(self) -> int:
        return os.getpid()

    def run(self) -> dict[str, Any]:
        """Replay the shard (resuming from the checkpoint, if any); returns the exit code, the
        manifest and the lines the job said that the driver has not collected yet."""
        plan = self.plan
        self.job = ReplayJob(plan.settings, plan.source_args, lambda: open_source(plan.source, plan.request),
                             requested_seed=plan.request.seed, say=self.lines.append, stop=self.stopping)
        code = self.job.run()
        manifest = plan.settings.manifest
        record = json.loads(manifest.read_text()) if manifest is not None and manifest.exists() else None
        return {"code": code, "record": record, "lines": self._drain(), "pid": os.getpid()}

    def stop(self) -> None:
        self.stopping.set()

    def status(self) -> dict[str, Any]:
        progress = self.job.progress if self.job is not None else None
        return {"pid": os.getpid(), "stopping": self.stopping.is_set(), "lines": self._drain(),
                "position": progress.position if progress else 0,
                "written": progress.written if progress else 0,
                "labels": dict(progress.counter.labels) if progress else {}}

    def _drain(self) -> list[str]:
        lines = []
        while self.lines:
            lines.append(self.lines.popleft())
        return lines


class RayReplayMetrics(MetricsEndpoint):
    """The driver's endpoint: the workers' counts summed (gauges, as a restarted worker starts
    its own counts again from its checkpoint), and the restarts."""

    def __init__(self) -> None:
        super().__init__()
        reg = self.registry
        self.position = Gauge("streamsynth_replay_position", "Events acknowledged, summed over the workers",
                              registry=reg)
        self.written = Gauge("streamsynth_events_written", "Events handed to the sink, summed over the workers",
                             registry=reg)
        self.acked = Gauge("streamsynth_events_acknowledged", "Events acknowledged by label, summed "
                           "over the workers", ["label"], registry=reg)
        self.running = Gauge("streamsynth_ray_workers_running", "Workers still replaying", registry=reg)
        self.restarts = Counter("streamsynth_ray_worker_restarts", "Workers restarted by Ray", registry=reg)

    def update(self, statuses: list[dict[str, Any]], running: int) -> None:
        self.position.set(sum(s["position"] for s in statuses))
        self.written.set(sum(s["written"] for s in statuses))
        labels: dict[str, int] = {}
        for s in statuses:
            for label, n in s["labels"].items():
                labels[label] = labels.get(label, 0) + n
        for label, n in labels.items():
            self.acked.labels(label).set(n)
        self.running.set(running)


@dataclass
class RayReplayResult:
    """How the replay ended: the exit code, the merged manifest and its record."""

    code: int
    manifest: Path
    record: dict[str, Any]
    restarts: list[int] = field(default_factory=list)  # per worker


def check_options(source: Any, settings: ReplaySettings, workers: int) -> None:
    """Refuse, naming the option, what the workers cannot do; before Ray starts."""
    check_split("--workers", workers, n_events=source.n_events, shard=source.shard)
    if settings.checkpoint is not None:
        raise StreamsynthError("--checkpoint names one file, but each Ray worker keeps its own checkpoint",
                               hint="use --checkpoint-dir PATH (worker K writes PATH/worker-K-of-N.checkpoint)")
    Pacing(speed=settings.speed, rate=settings.rate)
    sink = SinkURL.parse(settings.to)
    if sink.scheme in ("file", "stdout"):
        # N processes (on other machines, in a cluster) cannot write one file or the driver's stdout
        raise StreamsynthError(f"--ray workers each deliver their own shard, so they cannot share the {sink.scheme} "
                               f"sink {sink.redacted()!r}", hint="replay with --ray to kafka:// or http(s)://, "
                               "or leave out --ray for a file or stdout")


def worker_manifest(merged: Path, k: int, n: int) -> Path:
    """``replay.manifest.json`` -> ``replay.manifest.worker-K-of-N.json``."""
    return merged.with_name(f"{merged.stem}.worker-{k}-of-{n}{merged.suffix or '.json'}")


def plans(source: Any, settings: ReplaySettings, workers: int, checkpoint_dir: Path | None) -> list[WorkerPlan]:
    """One plan per worker: shard K/N, rate R/N (``--speed`` as is: event time is shared),
    paths made absolute (a worker's working folder is not the driver's)."""
    merged = (settings.manifest or default_manifest(SinkURL.parse(settings.to))).resolve()
    request = source.request()
    located = Path(source.source).resolve() if Path(source.source).exists() else None
    out = []
    for k in range(workers):
        own = replace(
            settings, rate=settings.rate / workers if settings.rate is not None else None,
            checkpoint=(checkpoint_dir / f"worker-{k}-of-{workers}.checkpoint").resolve() if checkpoint_dir else None,
            manifest=worker_manifest(merged, k, workers), metrics_port=None)
        out.append(WorkerPlan(shard=(k, workers), source=str(located or source.source),
                              request=replace(request, shard=(k, workers)),
                              source_args=source.as_args() | {"shard": f"{k}/{workers}"}, settings=own))
    return out


def start_replay(source: Any, settings: ReplaySettings, *, workers: int, checkpoint_dir: Path | None = None,
                 say: Callable[[str], None] = _stderr) -> RayReplay:
    """Start ``workers`` Ray actors replaying ``source`` (a :class:`streamsynth.cli.source_options.
    SourceOptions`, or anything with its ``source``, ``n_events``, ``shard``, ``seed``,
    ``request()`` and ``as_args()``) as ``settings`` say; joins the running Ray runtime or starts
    a local one. Returns the handle: its ``actors``, :meth:`RayReplay.stop` and :meth:`RayReplay.wait`.
    With ``settings.metrics_port``, the summed metrics are served (from before the workers start,
    so a port in use fails first) until :meth:`RayReplay.wait` returns."""
    check_options(source, settings, workers)
    ray = connect(None)
    metrics = RayReplayMetrics()
    if settings.metrics_port is not None:
        port = metrics.serve(settings.metrics_port, settings.metrics_host)
        say(f"metrics on http://{settings.metrics_host}:{port}/metrics")
    try:
        worker = ray.remote(ReplayWorker).options(max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS,
                                                  max_concurrency=4, num_cpus=WORKER_CPUS)
        worker_plans = plans(source, settings, workers, checkpoint_dir)
        actors = [worker.remote(plan) for plan in worker_plans]
        pids = ray.get([a.pid.remote() for a in actors])
    except BaseException:
        metrics.close()
        raise
    return RayReplay(ray, actors, worker_plans, pids, metrics, settings, say)


class RayReplay:
    """A running replay on Ray: the ``actors`` (worker K is ``actors[K]``), ``stop()`` (what a
    signal does) and ``wait()`` (watch the workers, then write the merged manifest)."""

    def __init__(self, ray: Any, actors: list[Any], worker_plans: list[WorkerPlan], pids: list[int],
                 metrics: RayReplayMetrics, settings: ReplaySettings, say: Callable[[str], None]) -> None:
        self.ray, self.actors, self.plans, self.pids = ray, actors, worker_plans, pids
        self.metrics, self.settings, self.say = metrics, settings, say
        self.source_args = worker_plans[0].source_args | {"shard": None}  # the unsharded source's
        self.runs = [a.run.remote() for a in actors]
        self.statuses: list[dict[str, Any]] = [{"position": 0, "written": 0, "labels": {}, "stopping": False}
                                               for _ in actors]
        self.restarts = [0] * len(actors)
        self.stopping = False
        self.started = time.monotonic()
        self._said_at = 0.0

    @property
    def n(self) -> int:
        return len(self.actors)

    def stop(self) -> None:
        """Tell every worker to stop: each flushes what it sent and writes its manifest."""
        self.stopping = True
        for actor in self.actors:
            actor.stop.remote()

    def wait(self) -> RayReplayResult:
        """Watch the workers until every one has ended; then write the merged manifest."""
        try:
            pending = list(self.runs)
            while pending:
                _, pending = self.ray.wait(pending, num_returns=len(pending), timeout=POLL_SECONDS)
                self._poll(running=len(pending))
            outcomes = [self._outcome(k, ref) for k, ref in enumerate(self.runs)]
        finally:
            self.metrics.close()
        return self._finish(outcomes)

    def close(self) -> None:
        """End the actors (they hold their share of the cluster until then) and the metrics endpoint."""
        self.metrics.close()
        for actor in self.actors:
            self.ray.kill(actor, no_restart=True)

    # -- watching ----------------------------------------------------------------------------------
    def _poll(self, running: int) -> None:
        refs = [a.status.remote() for a in self.actors]
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=POLL_SECONDS)
        for k, ref in enumerate(refs):
            if ref not in ready:
                continue  # restarting, or busy: its last status stands
            try:
                status = self.ray.get(ref)
            except self.ray.exceptions.RayError:
                continue
            self._take(k, status)
        self.metrics.update(self.statuses, running)
        now = time.monotonic()
        if running and now - self._said_at >= PROGRESS_EVERY:
            self._said_at = now
            self.say(self._progress_line(running))

    def _take(self, k: int, status: dict[str, Any]) -> None:
        tag = f"worker {k}/{self.n}"
        self._check_restart(k, status["pid"])
        for line in status.pop("lines"):
            self.say(f"{tag}: {line}")
        if self.stopping and not status["stopping"]:
            self.actors[k].stop.remote()  # a worker restarted after the stop was sent
        self.statuses[k] = status

    def _check_restart(self, k: int, pid: int) -> None:
        """A worker answering from another process was restarted by Ray: say so (once)."""
        if pid == self.pids[k]:
            return
        self.restarts[k] += 1
        self.metrics.restarts.inc()
        checkpoint = self.plans[k].settings.checkpoint
        how = (f"it resumes from its checkpoint {checkpoint}" if checkpoint
               else "without --checkpoint-dir it replays its shard from the start (duplicates)")
        self.say(f"worker {k}/{self.n} restarted by Ray (process {self.pids[k]} ended; restart "
                 f"{self.restarts[k]} of at most {MAX_RESTARTS}); {how}")
        self.pids[k] = pid

    def _progress_line(self, running: int) -> str:
        written = sum(s["written"] for s in self.statuses)
        acked = sum(s["position"] for s in self.statuses)
        seconds = time.monotonic() - self.started
        return (f"replay on {self.n} Ray workers ({running} running): {written:,} events sent, "
                f"{acked:,} acknowledged in {seconds:.0f} s")

    def _outcome(self, k: int, ref: Any) -> dict[str, Any]:
        """Worker K's result, or the error that ended it (its own error unwrapped)."""
        tag = f"worker {k}/{self.n}"
        try:
            outcome = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            cause = exc.cause
            message = cause.message if isinstance(cause, StreamsynthError) else str(cause)
            return {"code": None, "record": None, "error": message, "worker": tag,
                    "hint": cause.hint if isinstance(cause, StreamsynthError) else None}
        except self.ray.exceptions.RayError as exc:  # died more often than Ray restarts it
            return {"code": None, "record": None, "error": f"died ({type(exc).__name__})", "worker": tag,
                    "hint": "run the same command again to resume from the checkpoints"}
        self._check_restart(k, outcome.pop("pid"))  # a restart the polls did not catch
        for line in outcome.pop("lines"):
            self.say(f"{tag}: {line}")
        return outcome

    # -- the end -----------------------------------------------------------------------------------
    def _finish(self, outcomes: list[dict[str, Any]]) -> RayReplayResult:
        merged = (self.settings.manifest or default_manifest(SinkURL.parse(self.settings.to))).resolve()
        record = merged_manifest(self.plans, outcomes, self.source_args, self.settings, self.restarts)
        # as with one replay: workers that could not open their source or sink (none began) leave
        # the manifest of an earlier run alone
        began = any(o.get("record") for o in outcomes)
        if began:
            merged.parent.mkdir(parents=True, exist_ok=True)
            write_text(merged, json.dumps(record, indent=2, default=str) + "\n")
        errors = [o for o in outcomes if o.get("error")]
        if errors:
            by_message: dict[str, list[str]] = {}
            for o in errors:  # N workers failing alike (a broker that is down) say it once
                by_message.setdefault(o["error"], []).append(o["worker"])
            text = "; ".join(f"{', '.join(tags)}: {message}" for message, tags in by_message.items())
            raise StreamsynthError(text + (f" (merged manifest {merged})" if began else ""),
                                   hint=errors[0]["hint"] or "fix the cause, then run the same command again")
        codes = [o["code"] for o in outcomes]
        code = EXIT_ABORTED if EXIT_ABORTED in codes else (EXIT_LOSS if EXIT_LOSS in codes else 0)
        sent = record["sent"]["to"]
        seconds = time.monotonic() - self.started
        self.say(f"{'stopped' if record['ended'] == 'stopped' else 'replayed'}: {sent:,} events acknowledged "
                 f"by {record['sink']} from {self.n} Ray workers in {seconds:.1f} s"
                 + (f"; {sum(self.restarts)} worker restart(s)" if sum(self.restarts) else "")
                 + f"; manifest {merged}")
        return RayReplayResult(code, merged, record, list(self.restarts))


def merged_manifest(worker_plans: list[WorkerPlan], outcomes: list[dict[str, Any]], source_args: dict[str, Any],
                    settings: ReplaySettings, restarts: list[int]) -> dict[str, Any]:
    """One manifest for the run: the workers' counts summed, and each worker's own entry (its
    shard's source arguments and how many of its events were acknowledged, for ``verify``)."""
    counter = ManifestCounter(time=None)
    entries, descriptions, ends = [], [], []
    for plan, outcome, restarted in zip(worker_plans, outcomes, restarts, strict=True):
        record = outcome.get("record") or {}
        counts = record.get("counts") or {}
        counter.absorb(counter_from(counts))
        ends.append(record.get("ended", "failed"))
        if record.get("model"):
            descriptions.append(record["model"])
        k, n = plan.shard
        entries.append({"shard": f"{k}/{n}", "source_args": plan.source_args,
                        "sent": record.get("sent", {"from": 0, "to": counts.get("events", 0)}),
                        "counts": counts, "ended": ends[-1], "restarts": restarted,
                        "manifest": str(plan.settings.manifest),
                        "checkpoint": str(plan.settings.checkpoint) if plan.settings.checkpoint else None,
                        "unacknowledged": (record.get("replay") or {}).get("unacknowledged"),
                        "error": outcome.get("error")})
    ended = ("complete" if all(e == "complete" for e in ends) else
             "failed" if any(e in ("failed", "aborted") for e in ends) else "stopped")
    model = (merge_descriptions(descriptions, source_args["source"])
             if len(descriptions) == len(entries) else None)
    extra = {"source_args": source_args, "sink": SinkURL.parse(settings.to).redacted(),
             "sent": {"from": 0, "to": sum(e["sent"]["to"] for e in entries)},
             "complete": ended == "complete", "ended": ended,
             "replay": Pacing(speed=settings.speed, rate=settings.rate).describe()
             | {"flush_every": settings.flush_every},
             "ray": {"workers": len(entries), "max_restarts": MAX_RESTARTS, "cpus_per_worker": WORKER_CPUS},
             "workers": entries}
    seed = model.get("seed") if model else source_args.get("seed")
    return build_manifest(counter=counter, output=extra["sink"], model=model, seed=seed, extra=extra)


def replay_on_ray(source: Any, settings: ReplaySettings, *, workers: int, checkpoint_dir: Path | None,
                  address: str | None, say: Callable[[str], None] = _stderr) -> int:
    """``replay --ray``: start the workers, stop them on SIGINT/SIGTERM (a second signal ends at
    once), wait, write the merged manifest; returns the exit code as ``replay`` has it."""
    check_options(source, settings, workers)
    import_ray()  # the error naming the extra, before anything starts
    with runtime(address):
        job = start_replay(source, settings, workers=workers, checkpoint_dir=checkpoint_dir, say=say)
        try:
            with _DriverSignals(job, say):
                result = job.wait()
        except Interrupted as exc:
            say(f"{exc}: the workers are ended; resume with the same command"
                + (f" (checkpoints in {checkpoint_dir})" if checkpoint_dir else ""))
            return EXIT_ABORTED
        finally:
            job.close()
    return result.code


class _DriverSignals(SignalTrap):
    """SIGINT/SIGTERM on the driver: the first stops the workers cleanly, a second ends at once."""

    def __init__(self, job: RayReplay, say: Callable[[str], None]) -> None:
        self.job, self.say = job, say

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.job.stopping:
            raise Interrupted(f"stopped at once by a second {name}")
        self.say(f"\n{name}: stopping {self.job.n} Ray workers; each flushes what it sent "
                 "(again to stop at once)")
        self.job.stop()
