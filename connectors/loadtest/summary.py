"""The report of a run: the figures thresholds read, the live status line, the end-of-run table
(stdout) and the JSON summary (``--summary-json``).

Latencies are in milliseconds; "errors" are requests without a response plus 5xx answers, as a
share of the requests sent; "dropped" a share of the requests scheduled; bytes are those of the
request and response bodies.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from streamsynth.connectors.loadtest.expect import Confusion, precision, recall
from streamsynth.connectors.loadtest.measure import ERROR_CLASSES, LabelStats, Measurements, latency_summary
from streamsynth.connectors.loadtest.thresholds import Threshold, label_key


def figures(m: Measurements, confusion: Confusion | None, elapsed: float,
            thresholds: Iterable[Threshold] = ()) -> dict[str, float | None]:
    """Metric name -> value over the run so far, as :mod:`.thresholds` names them; for each label a
    threshold names (and the run has seen), that label's figures too, as ``metric{label=NAME}``."""
    out = _figures(m.total(), confusion.counts if confusion is not None else None, elapsed)
    for label in dict.fromkeys(t.label for t in thresholds if t.label is not None):
        stats = m.labels.get(label)
        if stats is not None:
            cells = confusion.by_label.get(label, Counter()) if confusion is not None else None
            out |= {label_key(k, label): v for k, v in _figures(stats, cells, elapsed).items()}
    return out


def _figures(stats: LabelStats, cells: Counter[str] | None, elapsed: float) -> dict[str, float | None]:
    """The figures of one set of requests (all, or one label's) and its --expect cells."""
    out: dict[str, float | None] = dict(latency_summary(stats.from_scheduled))
    out |= {f"sent_{k}": v for k, v in latency_summary(stats.from_sent).items()}
    out["errors"] = stats.failed / stats.sent if stats.sent else None
    out["dropped"] = stats.dropped / stats.scheduled if stats.scheduled else None
    out["rps"] = stats.answered / elapsed if elapsed > 0 else None
    out["precision"] = precision(cells) if cells is not None else None
    out["recall"] = recall(cells) if cells is not None else None
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def status_line(m: Measurements, numbers: dict[str, float | None], elapsed: float, in_flight: int) -> str:
    """One line a second: the last whole second's answered rate against its target, and so far
    p99 (from scheduled), errors, dropped and the requests in flight."""
    index = int(elapsed) - 1
    last = m.seconds[index] if 0 <= index < len(m.seconds) else None
    rate = f"{last.completed:,}/s (target {last.target:,})" if last else "-"
    errors, dropped = numbers["errors"], numbers["dropped"]
    return (f"[{elapsed:5.0f}s] {rate}  p99 {_ms(numbers['p99'])} ms  "
            f"errors {0 if errors is None else errors:.2%}  dropped {0 if dropped is None else dropped:.2%}  "
            f"in flight {in_flight:,}")


def _label_dict(stats: LabelStats) -> dict[str, Any]:
    return {
        "scheduled": stats.scheduled, "sent": stats.sent, "dropped": stats.dropped,
        "answered": stats.answered, "failed": stats.failed,
        "latency_ms": {"from_scheduled": latency_summary(stats.from_scheduled),
                       "from_sent": latency_summary(stats.from_sent)},
        "status": {str(code): n for code, n in sorted(stats.statuses.items())},
        "errors": {name: stats.errors[name] for name in ERROR_CLASSES},
        "bytes_sent": stats.bytes_sent, "bytes_received": stats.bytes_received,
    }


def to_dict(result: Any) -> dict[str, Any]:
    """The JSON summary of a :class:`~.runner.LoadResult` (``--summary-json``)."""
    m: Measurements = result.measurements
    return {
        "ended": result.ended,
        "workers": result.workers,
        "workers_lost": list(result.lost),
        "event_loop": result.event_loop,
        "source_ended_early": source_ended_early(result) is not None,
        "elapsed_s": round(result.elapsed, 3),
        "figures": result.figures,
        "thresholds": {"crossed": [t.text for t in result.crossed],
                       "held": [t.text for t in result.thresholds if t not in result.crossed],
                       "unseen_labels": {t.text: why for t in result.thresholds
                                         if (why := unseen_label(result, t)) is not None}},
        "total": _label_dict(m.total()),
        "labels": {label: _label_dict(stats) for label, stats in sorted(m.labels.items())},
        "unfinished": m.unfinished,
        "per_second": [{"second": i, "target": s.target, "sent": s.sent, "completed": s.completed,
                        "dropped": s.dropped, "failed": s.failed} for i, s in enumerate(m.seconds)],
        "confusion": result.confusion.to_dict() if result.confusion is not None else None,
    }


def table(result: Any) -> str:
    """The end-of-run summary as text: one row per label and a total row, then the confusion
    matrix and the thresholds."""
    m: Measurements = result.measurements
    rows = [(label, stats) for label, stats in sorted(m.labels.items())] + [("total", m.total())]
    head = (f"{'label':<24}{'sched':>8}{'sent':>8}{'drop':>7}{'fail':>7}"
            f"{'p50':>9}{'p90':>9}{'p99':>9}{'p99.9':>9}{'max':>9}  {'sent p50':>9}{'sent p99':>9}  status")
    lines = [f"ended: {result.ended} after {result.elapsed:.1f}s{by_workers(result)}; "
             f"{result.figures['rps'] or 0:,.1f} answered/s; latency in ms from the scheduled send "
             "(and from the actual send)", *lost_workers(result), head]
    early = source_ended_early(result)
    if early is not None:
        lines.insert(1, early)
    for label, stats in rows:
        sched, sent = latency_summary(stats.from_scheduled), latency_summary(stats.from_sent)
        codes = " ".join(f"{code}:{n}" for code, n in sorted(stats.statuses.items()))
        errors = " ".join(f"{name}:{n}" for name, n in sorted(stats.errors.items()) if n)
        lines.append(f"{label[:23]:<24}{stats.scheduled:>8}{stats.sent:>8}{stats.dropped:>7}{stats.failed:>7}"
                     + "".join(f"{_ms(sched[k]):>9}" for k in ("p50", "p90", "p99", "p99.9", "max"))
                     + f"  {_ms(sent['p50']):>9}{_ms(sent['p99']):>9}  {codes}" + (f" {errors}" if errors else ""))
    total = m.total()
    lines.append(f"body bytes sent {total.bytes_sent:,}, received {total.bytes_received:,}; "
                 f"{m.unfinished} unfinished at the stop")
    if result.confusion is not None:
        c = result.confusion.to_dict()
        precision = "-" if c["precision"] is None else f"{c['precision']:.3f}"
        recall = "-" if c["recall"] is None else f"{c['recall']:.3f}"
        lines.append(f"expect: tp {c['tp']}  fp {c['fp']}  fn {c['fn']}  tn {c['tn']}  "
                     f"precision {precision}  recall {recall}  unanswered {c['unanswered']}")
    for threshold in result.thresholds or result.crossed:
        verdict = "crossed" if threshold in result.crossed else "held"
        value = unseen_label(result, threshold) or f"is {figure_text(result.figures, threshold.metric, threshold.key)}"
        lines.append(f"threshold {verdict}: {threshold.text} ({value})")
    return "\n".join(lines)


def by_workers(result: Any) -> str:
    """" by N workers" after "ended: ..." for a ``--workers`` run, else nothing."""
    return f" by {result.workers} workers" if result.workers > 1 else ""


def lost_workers(result: Any) -> list[str]:
    """A line for each worker that died during the run."""
    return [f"lost: {why}; what it measured after its last report (each second) is missing" for why in result.lost]


def source_ended_early(result: Any) -> str | None:
    """The note of a run cut short by its source (None when the source lasted)."""
    if result.ended != "source exhausted":
        return None
    m: Measurements = result.measurements
    target = sum(s.target for s in m.seconds)
    return (f"the source ended early: {m.total().scheduled:,} of {target:,} arrivals scheduled "
            "(--loop replays a finite source)")


def unseen_label(result: Any, threshold: Threshold) -> str | None:
    """Why a threshold on a label the run never saw is crossed (None for any other threshold)."""
    seen = result.measurements.labels
    if threshold.label is None or threshold.label in seen:
        return None
    return f"no events labelled {threshold.label!r}; the labels seen: {', '.join(sorted(seen)) or 'none'}"


def figure_text(numbers: dict[str, float | None], metric: str, key: str | None = None) -> str:
    """One figure of :func:`figures` with its unit, as the table and the HTML report show it;
    ``key`` names a label's figure of ``metric`` (:attr:`.Threshold.key`)."""
    value = numbers.get(key or metric)
    if value is None:
        return "-"
    if metric in ("errors", "dropped"):
        return f"{value:.3%}"
    if metric in ("rps", "precision", "recall"):
        return f"{value:.3f}"
    return f"{value:.1f}ms"
