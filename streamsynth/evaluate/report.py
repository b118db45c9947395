"""The HTML report: one self-contained file, a scorecard on top, inline SVG figures below.

A small script at the end counts the figures the browser actually laid out and writes the
count into ``#render-check`` (the headless-Chromium test reads it back).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

from streamsynth.evaluate import plots
from streamsynth.evaluate.privacy import HOLDOUT_SHARE, SEQUENCE_HOLDOUT_SHARE
from streamsynth.evaluate.result import EvaluationResult, RowDiscriminator
from streamsynth.outputs import write_text

#: Features the report lists under the discriminator, the most telling first.
TOP_FEATURES = 10

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1a202c}
h1{margin-bottom:4px}h2{border-bottom:1px solid #cbd5e0;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #e2e8f0;padding:3px 8px;
text-align:right;font-size:13px}th{background:#edf2f7}td:first-child,th:first-child{text-align:left}
.pass{background:#c6f6d5}.fail{background:#fed7d7}.info{color:#718096}
.figs{display:flex;flex-wrap:wrap;gap:12px}.fig{background:#fff;border:1px solid #e2e8f0}
.fig .t{font-size:12px;font-weight:600}.fig .k{font-size:10px;fill:#4a5568}
.fig .frame{fill:none;stroke:#a0aec0}.fig .diag{stroke:#a0aec0;stroke-dasharray:4 3}
.note{color:#718096;font-size:13px}.card td:last-child{text-align:left}
"""

COPIES_NOTE = (
    "Exact copies: real data repeats itself (the same purchase on two days), so even rows the "
    "model never saw can equal a real row. The holdout column is that chance rate: the share of "
    f"real rows ({HOLDOUT_SHARE:.0%} of them, held out; {SEQUENCE_HOLDOUT_SHARE:.0%} of sequences) "
    "equal to one of the other real rows. 'Beyond the holdout's share' is the synthetic share "
    "minus the holdout's (0 when below): the copying the model adds, which the scorecard's "
    "row_copies_excess and sequence_copies_excess check."
)

RENDER_CHECK = """
(function(){
  var figs=document.querySelectorAll('svg.fig'), ok=0;
  figs.forEach(function(f){
    var box=f.getBoundingClientRect(), drawn=0;
    f.querySelectorAll('rect,circle,polyline,line').forEach(function(el){
      var b=el.getBBox(); if(b.width>0||b.height>0){drawn++;}
    });
    if(box.width>0&&box.height>0&&drawn>0){ok++;}
  });
  var out=document.getElementById('render-check');
  out.setAttribute('data-rendered', String(ok));
  out.textContent=ok+' of '+figs.length+' figures rendered';
})();
"""


def _num(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "n/a"
        return f"{v:.4g}"
    return escape(str(v))


def table(header: list[str], rows: list[list[Any]], classes: list[str] | None = None,
          cell: Callable[[Any], str] = _num) -> str:
    """An HTML table: escaped header cells, each row's values shown by ``cell``, a row's class
    from ``classes`` (this report's and the load report's)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _scorecard(result: EvaluationResult) -> str:
    rows, classes = [], []
    for c in result.scorecard:
        status = {True: "PASS", False: "FAIL", None: "info"}[c.passed]
        direction = ">=" if c.higher_is_better else "<="
        limit = f"{direction} {c.threshold:g}" if c.threshold is not None else ""
        rows.append([c.key + (" (gate)" if c.gate else ""), c.value, limit, status, c.description])
        classes.append({True: "pass", False: "fail", None: "info"}[c.passed])
    failed = [c.key for c in result.scorecard if c.passed is False]
    summary = (
        f"<p><b>{len(failed)} of {sum(c.passed is not None for c in result.scorecard)} checks "
        f"failed</b>: {escape(', '.join(failed))}</p>"
        if failed
        else "<p><b>All checks with a threshold passed.</b></p>"
    )
    card = table(["metric", "value", "threshold", "status", "meaning"], rows, classes)
    return summary + card.replace("<table>", '<table class="card">', 1)


def _discriminator(d: RowDiscriminator) -> str:
    """AUC and the features it leans on: what to fix or constrain first."""
    top = d.importance[:TOP_FEATURES]
    total = sum(max(i.importance, 0.0) for i in d.importance) or 1.0
    rows = [[i.feature, i.importance, f"{max(i.importance, 0.0) / total:.0%}"] for i in top]
    lead = (
        f"<p><b>ROC AUC {_num(d.auc)}</b> (+- {_num(d.auc_std)} over {d.folds} folds of held-out "
        f"entities, {d.rows_per_side:,} rows per side; 0.5: indistinguishable). Gradient boosting "
        "on each event's fields, its previous event's fields and the gap between them. "
        "The features below are the ones it leans on most: the AUC lost when each alone is "
        "shuffled in the held-out rows. The top ones are what to fix or constrain first.</p>"
    )
    by_column = ", ".join(f"{c.feature} {_num(c.importance)}" for c in d.columns[:5])
    columns = f"<p>By column (its value, decimals and previous event's value): {escape(by_column)}</p>"
    excluded = ""
    if d.excluded:
        excluded = (
            f'<p class="note">left out (labels, and columns that alone give the label away): '
            f"{escape(', '.join(d.excluded))}</p>"
        )
    return lead + columns + table(["feature", "AUC drop when shuffled", "share"], rows) + excluded


def _figures(items: list[str]) -> str:
    return '<div class="figs">' + "".join(items) + "</div>"


class _Page:
    """The report's sections as they are written, and how many figures they hold (the page's
    script checks that it drew them all)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.figure_count = 0

    def add(self, html: str) -> None:
        self.parts.append(html)

    def figures(self, items: list[str]) -> str:
        self.figure_count += len(items)
        return _figures(items)

    def table_section(self, title: str, header: list[str], rows: list[list[Any]]) -> None:
        """A section that opens with a table."""
        self.add(f"<h2>{title}</h2>")
        self.add(table(header, rows))


def _tells_apart(page: _Page, result: EvaluationResult) -> None:
    """What tells real from synthetic events: the row-and-lag discriminator."""
    f = result.fidelity
    if f.discriminator:
        page.add("<h2>What tells real from synthetic events</h2>")
        page.add(_discriminator(f.discriminator))


def _numeric(page: _Page, result: EvaluationResult) -> None:
    """Numeric columns: distances, moments, histograms and QQ plots."""
    numeric = result.fidelity.numeric
    fig = result.figures
    if numeric:
        page.table_section("Numeric columns",
                           ["column", "KS", "Wasserstein", "W / real std", "real mean", "synth mean", "real std",
                            "synth std"],
                           [[c.name, c.ks, c.wasserstein, c.wasserstein_norm, c.real_mean, c.synth_mean, c.real_std,
                             c.synth_std] for c in numeric])
        items = []
        for name, h in fig.get("histograms", {}).items():
            items.append(
                plots.histogram(f"{name}: histogram", h["edges"], h["real"], h["synth"], name)
            )
            if name in fig.get("qq", {}):
                q = fig["qq"][name]
                items.append(plots.qq(f"{name}: QQ plot", q["real"], q["synth"]))
        page.add(page.figures(items))


def _categorical(page: _Page, result: EvaluationResult) -> None:
    """Categorical and boolean columns: total variation and shares."""
    categorical = result.fidelity.categorical
    fig = result.figures
    if categorical:
        page.table_section("Categorical and boolean columns",
                           ["column", "total variation", "real values", "synth values", "unseen in synth",
                            "new in synth"],
                           [[c.name, c.tv, c.real_categories, c.synth_categories, c.unseen_in_synth, c.new_in_synth]
                            for c in categorical])
        page.add(
            page.figures(
                [
                    plots.bars(f"{name}: shares", b["labels"], b["real"], b["synth"])
                    for name, b in fig.get("categories", {}).items()
                ]
            )
        )


def _dependencies(page: _Page, result: EvaluationResult) -> None:
    """Columns fixed by others: the rows breaking each dependency of the real data."""
    f = result.fidelity
    if f.dependencies is not None:
        page.add("<h2>Dependencies between columns</h2>")
        page.add(
            f'<p class="note">{_num(f.dependencies.broken_share)} of synthetic rows break at least one '
            "dependency the real data holds (worst first)</p>"
        )
        page.add(table(
            ["dependency (real rows)", "synthetic rows breaking it", "example"],
            [[d.rule, d.broken_share, ", ".join(f"{k}={v}" for k, v in d.example.items()) if d.example else "-"]
             for d in f.dependencies.dependencies],
        ))


def _matrices(page: _Page, result: EvaluationResult) -> None:
    """Correlation and association matrices, real, synthetic and their difference."""
    f = result.fidelity
    for title, m, lo in (
        ("Spearman correlation", f.correlation, -1.0),
        ("Cramer's V association", f.association, 0.0),
    ):
        if m is None:
            continue
        page.add(f"<h2>{title}</h2>")
        page.add(
            f'<p class="note">mean |difference| {_num(m.mean_abs_diff)}, '
            f"max {_num(m.max_abs_diff)}</p>"
        )
        diff = [
            [s - r for r, s in zip(rr, sr, strict=True)]
            for rr, sr in zip(m.real, m.synth, strict=True)
        ]
        page.add(
            page.figures(
                [
                    plots.heatmap(f"{title}: real", m.columns, m.real, lo, 1.0),
                    plots.heatmap(f"{title}: synthetic", m.columns, m.synth, lo, 1.0),
                    plots.heatmap(f"{title}: synthetic - real", m.columns, diff, -1.0, 1.0),
                ]
            )
        )


def _sequence_plots(result: EvaluationResult) -> list[str]:
    """Autocorrelation within entities, inter-arrival and events-per-entity histograms, the hour
    and weekday profiles."""
    f = result.fidelity
    fig = result.figures
    seq_items = []
    for a in f.autocorrelation:
        seq_items.append(
            plots.lines(
                f"{a.column}: autocorrelation within entities",
                a.lags,
                {"real": (a.real, plots.REAL), "synthetic": (a.synth, plots.SYNTH)},
                "lag (events)",
                (-1.0, 1.0),
            )
        )
    for key, title in (
        ("inter_arrival", "Inter-arrival time"),
        ("events_per_entity", "Events per entity"),
    ):
        if key in fig:
            h = fig[key]
            seq_items.append(
                plots.histogram(title, h["edges"], h["real"], h["synth"], h["x_label"])
            )
    for prof, title, n in (
        (f.hour_of_day, "Hour of day (UTC)", 24),
        (f.day_of_week, "Day of week (Mon=1)", 7),
    ):
        if prof:
            first = 0 if n == 24 else 1
            seq_items.append(
                plots.lines(
                    title,
                    list(range(first, first + n)),
                    {"real": (prof.real, plots.REAL), "synthetic": (prof.synth, plots.SYNTH)},
                    "",
                    (0.0, max(prof.real + prof.synth + [1e-9]) * 1.1),
                )
            )
    return seq_items


def _sequence_rows(result: EvaluationResult) -> list[list[Any]]:
    """The sequence and time quantities, one table row each."""
    f = result.fidelity
    rows = []
    for name, dist in (("inter-arrival (s)", f.inter_arrival), ("events per entity", f.events_per_entity)):
        if dist:
            rows.append([name, dist.ks, dist.wasserstein_log, dist.real_mean, dist.synth_mean,
                         dist.real_quantiles.get("p50"), dist.synth_quantiles.get("p50")])
    for name, prof in (("hour-of-day profile (TV)", f.hour_of_day), ("day-of-week profile (TV)", f.day_of_week)):
        if prof:
            rows.append([name, prof.tv, None, None, None, None, None])
    return rows


def _sequences(page: _Page, result: EvaluationResult) -> None:
    """Sequences and time: the quantities' table, then the plots."""
    seq_items = _sequence_plots(result)
    if seq_items:
        page.table_section(
            "Sequences and time",
            ["quantity", "KS / TV", "W of log10(1+x)", "real mean", "synth mean", "real median", "synth median"],
            _sequence_rows(result),
        )
        page.add(page.figures(seq_items))


def _samples(page: _Page, result: EvaluationResult) -> None:
    """A few real and synthetic sequences side by side."""
    fig = result.figures
    samples = fig.get("samples")
    if samples and (samples["real"] or samples["synth"]):
        page.add("<h2>Sample sequences</h2>")
        column = samples["column"]
        page.add(
            page.figures(
                [
                    plots.sequences(f"real: {column}", samples["real"], plots.REAL, column),
                    plots.sequences(f"synthetic: {column}", samples["synth"], plots.SYNTH, column),
                ]
            )
        )
        ids = ", ".join(s["entity"] for s in samples["real"])
        page.add(f'<p class="note">real entities shown: {escape(ids)}</p>')


def _utility(page: _Page, result: EvaluationResult) -> None:
    """Utility: discriminative, predictive and fraud scores."""
    u = result.utility
    page.add("<h2>Utility</h2>")
    rows = [
        ["discriminative score (|acc - 0.5|, 0 best)", u.discriminative],
        [
            "discriminative GRU steps (early stopping)",
            None if u.discriminative_steps is None
            else f"{u.discriminative_steps}{'' if u.discriminative_converged else ' (budget ran out)'}",
        ],
        ["predictive MAE, trained on synthetic", u.predictive],
        ["predictive MAE, trained on real (reference)", u.predictive_real],
        ["predictive ratio", u.predictive_ratio],
        ["window length (events)", u.window_length],
        ["windows real / synthetic", f"{u.windows_real} / {u.windows_synth}"],
    ]
    if u.fraud:
        fr = u.fraud
        rows += [
            ["fraud ROC AUC, trained on synthetic", fr.auc_synth],
            ["fraud ROC AUC, trained on real", fr.auc_real],
            ["fraud AUC ratio", fr.ratio],
            ["test rows (positives)", f"{fr.test_rows} ({fr.test_positives})"],
            [
                "columns left out (alone they give the label away)",
                ", ".join(d.column for d in fr.dropped) or "none",
            ],
        ]
    page.add(table(["metric", "value"], rows))
    for note in u.notes:
        page.add(f'<p class="note">{escape(note)}</p>')


def _privacy(page: _Page, result: EvaluationResult) -> None:
    """Privacy: distances to the closest record and exact copies."""
    if result.privacy:
        p = result.privacy
        page.add("<h2>Privacy</h2>")
        page.add(
            table(
                ["measure", "synthetic", "real holdout (baseline)", "beyond the holdout's share"],
                [
                    ["DCR median", p.dcr_synth_median, p.dcr_holdout_median, ""],
                    ["DCR 5th percentile", p.dcr_synth_p5, p.dcr_holdout_p5, ""],
                    ["NNDR median", p.nndr_synth_median, p.nndr_holdout_median, ""],
                    [
                        "exact copies of real rows (share of rows)",
                        p.row_copies,
                        p.row_copies_baseline,
                        p.row_copies_excess,
                    ],
                    [
                        "exact copies of real sequences (share of sequences)",
                        p.sequence_copies,
                        p.sequence_copies_baseline,
                        p.sequence_copies_excess,
                    ],
                ],
            )
        )
        page.add(
            f'<p class="note">{p.rows_compared} rows per side against {p.reference_rows} real '
            f"reference rows; {_num(p.closer_than_holdout_p5)} of synthetic rows are as close as "
            "the closest 5% of the holdout.</p>"
        )
        page.add(f'<p class="note">{escape(COPIES_NOTE)}</p>')


def _attacks(page: _Page, result: EvaluationResult) -> None:
    """Privacy attacks: membership and attribute inference."""
    if result.membership or result.attribute:
        page.add("<h2>Privacy attacks</h2>")
        rows = []
        if m := result.membership:
            rows += [
                [f"membership attack ROC AUC, per {m.unit} (0.5: no leak)", m.auc],
                ["membership attack ROC AUC, per row", m.row_auc],
                ["members caught at 10% false accusations", m.tpr_at_fpr_10],
                ["median DCR: training / never-trained rows", f"{_num(m.member_dcr_median)} / "
                 f"{_num(m.non_member_dcr_median)}"],
                [f"{m.unit}s attacked: members / non-members", f"{m.members} / {m.non_members}"],
            ]
        if a := result.attribute:
            rows += [
                [f"attribute attack on {a.column} ({a.kind}): accuracy", a.accuracy],
                ["guessing the most common value (baseline)", a.baseline],
                ["advantage over the baseline", a.advantage],
                ["accuracy on rows never trained on", a.non_member_accuracy],
                ["leakage (training minus never-trained accuracy)", a.leakage],
            ]
        page.add(table(["attack", "value"], rows))


def _balance(page: _Page, result: EvaluationResult) -> None:
    """Label balance, overall and by category."""
    if result.balance:
        b = result.balance
        page.add(f"<h2>Label balance ({escape(b.label)})</h2>")
        page.add(
            table(["", "real", "synthetic"], [["positive rate", b.real_rate, b.synth_rate]])
        )
        if b.real_classes:
            keys = sorted(set(b.real_classes) | set(b.synth_classes))
            page.add(
                table(
                    ["label value", "real share", "synthetic share"],
                    [[k, b.real_classes.get(k, 0.0), b.synth_classes.get(k, 0.0)] for k in keys],
                )
            )
        for name, rates in b.per_category.items():
            page.add(f"<h3>by {escape(name)}</h3>")
            page.add(
                table(
                    ["value", "real rows", "synth rows", "real rate", "synth rate"],
                    [
                        [r.value, r.real_rows, r.synth_rows, r.real_rate, r.synth_rate]
                        for r in rates
                    ],
                )
            )


#: the report's sections, in order: first what tells the two sides apart, then column by column,
#: dependence, sequences, and then utility, privacy and balance
SECTIONS = (_tells_apart, _numeric, _categorical, _dependencies, _matrices, _sequences, _samples,
            _utility, _privacy, _attacks, _balance)


def render(result: EvaluationResult) -> str:
    """The report as one HTML string (no external resources)."""
    page = _Page()
    for section in SECTIONS:
        section(page, result)
    sections, count = page.parts, page.figure_count
    timing = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
    head = (
        "<h1>streamsynth evaluation</h1>"
        f'<p class="note">{result.real_rows:,} real rows, {result.synth_rows:,} synthetic rows; '
        f"time: {escape(timing)}</p><h2>Scorecard</h2>" + _scorecard(result)
    )
    check = (
        f'<div id="render-check" data-expected="{count}" data-rendered="0">'
        "figures not rendered (the page's script did not run)</div>"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>streamsynth evaluation</title>"
        f"<style>{CSS}</style></head><body>{head}{''.join(sections)}"
        f"<h2>Render check</h2>{check}<script>{RENDER_CHECK}</script></body></html>"
    )




def write_report(result: EvaluationResult, path: str | Path) -> Path:
    return write_text(path, render(result))
