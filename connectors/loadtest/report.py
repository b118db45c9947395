"""The HTML report of a load run (``load --report PATH.html``): one self-contained file with the
summary per label, the --expect confusion matrix, the thresholds held and crossed, and two inline
SVG charts -- latency per second (p50/p99 from the scheduled send) and achieved against target rate.

The charts are the evaluation report's hand-written SVG (:mod:`streamsynth.evaluate.plots`), so the
page needs no plotting library and no network; the numbers are those of :mod:`.summary`.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from streamsynth.connectors.loadtest.measure import ERROR_CLASSES, LabelStats, Measurements, latency_summary
from streamsynth.connectors.loadtest.summary import (
    by_workers,
    figure_text,
    lost_workers,
    source_ended_early,
    to_dict,
    unseen_label,
)

from streamsynth.evaluate import plots
from streamsynth.evaluate.report import table
from streamsynth.outputs import write_text

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1a202c}
h2{border-bottom:1px solid #cbd5e0;padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #e2e8f0;padding:3px 8px;
text-align:right;font-size:13px}th{background:#edf2f7}td:first-child,th:first-child{text-align:left}
.held{background:#c6f6d5}.crossed{background:#fed7d7}.note{color:#718096;font-size:13px}
.figs{display:flex;flex-wrap:wrap;gap:12px}.fig{background:#fff;border:1px solid #e2e8f0}
.fig .t{font-size:12px;font-weight:600}.fig .k{font-size:10px;fill:#4a5568}.fig .frame{fill:none;stroke:#a0aec0}
"""
P50, P99, TARGET, ACHIEVED = plots.REAL, plots.SYNTH, "#718096", plots.REAL
_LATENCY_KEYS = ("p50", "p90", "p99", "p99.9", "max")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return escape(str(value))


def _label_rows(m: Measurements) -> list[list[Any]]:
    rows = []
    for label, stats in [*sorted(m.labels.items()), ("total", m.total())]:
        rows.append(_label_row(label, stats))
    return rows


def _label_row(label: str, stats: LabelStats) -> list[Any]:
    sched, sent = latency_summary(stats.from_scheduled), latency_summary(stats.from_sent)
    codes = ", ".join(f"{code}: {n}" for code, n in sorted(stats.statuses.items()))
    errors = ", ".join(f"{name}: {stats.errors[name]}" for name in ERROR_CLASSES if stats.errors[name])
    return [label, stats.scheduled, stats.sent, stats.dropped, stats.failed,
            *(sched[k] for k in _LATENCY_KEYS), sent["p50"], sent["p99"], codes or "-", errors or "-"]


def _summary(result: Any) -> str:
    m: Measurements = result.measurements
    header = ["label", "scheduled", "sent", "dropped", "failed",
              *(f"{k} ms" for k in _LATENCY_KEYS), "sent p50 ms", "sent p99 ms", "status", "errors"]
    total = m.total()
    note = (f'<p class="note">Latency in milliseconds from the scheduled send time (what a user '
            f"arriving on schedule waits) and from the actual send (\"sent\": what the service took). "
            f"Failed: no response or a 5xx. Body bytes sent {total.bytes_sent:,}, received "
            f"{total.bytes_received:,}; {m.unfinished} unfinished at the stop.</p>")
    return "<h2>Summary by label</h2>" + table(header, _label_rows(m), cell=_cell) + note


def _confusion(result: Any) -> str:
    if result.confusion is None:
        return ""
    c = result.confusion.to_dict()
    matrix = table(["", "service flagged", "service passed"],
                   [["anomaly (ground truth)", c["tp"], c["fn"]], ["normal (ground truth)", c["fp"], c["tn"]]],
                   cell=_cell)
    by_label = table(["label", "tp", "fp", "fn", "tn"],
                     [[label, n["tp"], n["fp"], n["fn"], n["tn"]] for label, n in c["by_label"].items()],
                     cell=_cell)
    return ("<h2>Expectation (--expect)</h2>" + matrix
            + f"<p>precision {_cell(c['precision'])}, recall {_cell(c['recall'])}, "
            f"unanswered {c['unanswered']}</p>" + by_label)


def _thresholds(result: Any) -> str:
    if not result.thresholds and not result.crossed:
        return ""
    rows, classes = [], []
    for threshold in result.thresholds or result.crossed:
        verdict = "crossed" if threshold in result.crossed else "held"
        value = unseen_label(result, threshold) or figure_text(result.figures, threshold.metric, threshold.key)
        rows.append([threshold.text, value, verdict])
        classes.append(verdict)
    return "<h2>Thresholds</h2>" + table(["threshold", "value", "verdict"], rows, classes, cell=_cell)


def _charts(m: Measurements) -> str:
    """Latency per second and achieved against target rate; seconds past the schedule's end
    (answers still arriving while the run drained) are shown too."""
    seconds = m.seconds
    if not seconds:
        return ""
    x = list(range(len(seconds)))
    # both charts from 0, so a flat line reads as flat and not as a swing between close values
    p50, p99 = [s.latency_ms(50) for s in seconds], [s.latency_ms(99) for s in seconds]
    top_ms = max([v for v in p99 if v is not None] or [1.0]) * 1.1
    top_rate = max([max(s.target, s.completed) for s in seconds] or [1]) * 1.25  # room for the key
    latency = plots.lines(
        "Latency from the scheduled send, per second", x,
        {"p50": (p50, P50), "p99": (p99, P99)},
        "second of the run", (0.0, top_ms), y_label="ms", named_legend=True)
    rate = plots.lines(
        "Achieved (answered) against target rate", x,
        {"target": ([float(s.target) for s in seconds], TARGET),
         "answered": ([float(s.completed) for s in seconds], ACHIEVED)},
        "second of the run", (0.0, float(top_rate)), y_label="requests/s", named_legend=True)
    return "<h2>Over time</h2>" + f'<div class="figs">{latency}{rate}</div>'


def render(result: Any, title: str = "streamsynth load test") -> str:
    """The report of a :class:`~.runner.LoadResult` as one HTML string (no external resources)."""
    rps = result.figures.get("rps") or 0.0
    head = (f"<h1>{escape(title)}</h1><p>ended: {escape(result.ended)} after {result.elapsed:.1f} s"
            f"{by_workers(result)}; {rps:,.1f} answered/s</p>")
    head += "".join(f'<p class="note">{escape(line)}</p>' for line in lost_workers(result))
    early = source_ended_early(result)
    if early is not None:
        head += f'<p class="note">{escape(early)}</p>'
    body = head + _summary(result) + _confusion(result) + _thresholds(result) + _charts(result.measurements)
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>{body}"
            # the JSON summary too, so the page alone holds every number of the run
            f'<script type="application/json" id="summary">{_json(result)}</script></body></html>')


def _json(result: Any) -> str:
    # "</" would end the script element early: escape it inside the JSON
    return json.dumps(to_dict(result)).replace("</", "<\\/")


def write_report(result: Any, path: str | Path) -> Path:
    """Write the report in place of ``path`` (all or nothing, :func:`streamsynth.outputs.write_text`)."""
    return write_text(path, render(result))
