"""Unit tests of the HTML report (:mod:`streamsynth.evaluate.report`) from one small evaluation:
each section's heading and its values, the section order, sections that drop out when their part
of the result is absent, number formatting and escaping."""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from datetime import UTC, datetime, timedelta
from html import escape

import numpy as np
import polars as pl
import pytest

from streamsynth.evaluate import evaluate, render, write_report

START = datetime(2024, 3, 4, tzinfo=UTC)
ODD = "gifts<&>"  # a category that must be escaped
MCC = {"grocery": "5411", "online": "5999", "fuel": "5541", ODD: "5947"}


def payments(seed: int, shift: float = 0.0, broken: float = 0.0) -> pl.DataFrame:
    """40 customers, 6 payments each; ``mcc`` follows ``channel`` (a dependency), except for a
    ``broken`` share of rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for e in range(40):
        t = START + timedelta(hours=float(rng.uniform(0, 48)))
        for _ in range(6):
            t += timedelta(minutes=float(rng.exponential(90)))
            channel = str(rng.choice(list(MCC)))
            mcc = MCC[channel] if rng.random() >= broken else "0000"
            amount = float(np.round(rng.lognormal(3 + shift, 0.5), 2))
            rows.append({"customer_id": f"c{e:03d}", "ts": t, "amount": amount,
                         "latency_ms": float(rng.gamma(2, 10)), "channel": channel, "mcc": mcc,
                         "is_fraud": bool(rng.random() < 0.1)})
    return pl.DataFrame(rows).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))


@pytest.fixture(scope="module")
def result():
    return evaluate(payments(0), payments(1, shift=0.5, broken=0.2), gru=False, seed=0)


@pytest.fixture(scope="module")
def html(result) -> str:
    return render(result)


def num(v) -> str:
    """How the report writes a number: four significant digits."""
    return f"{v:.4g}"


def row(*cells) -> str:
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def headings(html: str) -> list[str]:
    return re.findall(r"<h2>(.*?)</h2>", html)


def test_page_head(result, html):
    assert html.startswith("<!DOCTYPE html>") and html.endswith("</html>")
    assert "<h1>streamsynth evaluation</h1>" in html
    assert f"{result.real_rows:,} real rows, {result.synth_rows:,} synthetic rows" in html
    assert result.real_rows == result.synth_rows == 240
    for step in result.timings:
        assert f"{step} " in html


def test_sections_in_order(html):
    assert headings(html) == [
        "Scorecard", "What tells real from synthetic events", "Numeric columns", "Categorical and boolean columns",
        "Dependencies between columns", "Spearman correlation",
        "Cramer's V association", "Sequences and time", "Sample sequences", "Utility", "Privacy",
        "Label balance (is_fraud)", "Render check",
    ]


def test_scorecard(result, html):
    card = html[html.index('<table class="card">'):]
    card = card[:card.index("</table>")]
    rows = re.findall(r"<tr( class=\"(\w+)\")?><td>([^<]*)</td><td>([^<]*)</td>", card)
    assert [r[2] for r in rows] == [c.key + (" (gate)" if c.gate else "") for c in result.scorecard]
    for (_, cls, _key, value), c in zip(rows, result.scorecard, strict=True):
        assert cls == {True: "pass", False: "fail", None: "info"}[c.passed]
        assert value == num(c.value)
    failed = [c.key for c in result.scorecard if c.passed is False]
    graded = sum(c.passed is not None for c in result.scorecard)
    assert failed  # the synthetic side is shifted on purpose
    assert f"<b>{len(failed)} of {graded} checks failed</b>: {', '.join(failed)}" in html


def test_discriminator_section(result, html):
    d = result.fidelity.discriminator
    assert f"<b>ROC AUC {num(d.auc)}</b> (+- {num(d.auc_std)} over {d.folds} folds" in html
    assert f"{d.rows_per_side:,} rows per side" in html
    shown = d.importance[:10]
    assert shown and all(f"<td>{escape(i.feature)}</td><td>{num(i.importance)}</td>" in html for i in shown)


def test_numeric_section(result, html):
    for c in result.fidelity.numeric:
        assert row(c.name, num(c.ks), num(c.wasserstein), num(c.wasserstein_norm), num(c.real_mean),
                   num(c.synth_mean), num(c.real_std), num(c.synth_std)) in html
    assert {c.name for c in result.fidelity.numeric} == {"amount", "latency_ms"}
    assert 'data-figure="amount: histogram"' in html and 'data-figure="amount: QQ plot"' in html


def test_categorical_section_escapes_values(result, html):
    names = {c.name for c in result.fidelity.categorical}
    assert {"channel", "mcc"} <= names
    for c in result.fidelity.categorical:
        assert row(c.name, num(c.tv), c.real_categories, c.synth_categories, c.unseen_in_synth,
                   c.new_in_synth) in html
    assert ODD not in html  # never raw HTML
    assert escape(ODD) in html


def test_dependencies_section(result, html):
    deps = result.fidelity.dependencies
    assert deps is not None and deps.dependencies  # mcc follows channel in the real rows
    assert f"{num(deps.broken_share)} of synthetic rows break at least one dependency" in html
    assert deps.broken_share > 0.1  # a fifth of the synthetic rows got mcc 0000
    for d in deps.dependencies:
        assert f"<td>{escape(d.rule)}</td><td>{num(d.broken_share)}</td>" in html


def test_matrix_sections(result, html):
    m = result.fidelity.correlation
    assert f"mean |difference| {num(m.mean_abs_diff)}, max {num(m.max_abs_diff)}" in html
    for title in ("Spearman correlation", "Cramer's V association"):
        for part in ("real", "synthetic", "synthetic - real"):
            assert f'data-figure="{escape(title)}: {part}"' in html or f'data-figure="{title}: {part}"' in html


def test_sequence_section(result, html):
    ia, ep = result.fidelity.inter_arrival, result.fidelity.events_per_entity
    assert row("inter-arrival (s)", num(ia.ks), num(ia.wasserstein_log), num(ia.real_mean), num(ia.synth_mean),
               num(ia.real_quantiles["p50"]), num(ia.synth_quantiles["p50"])) in html
    assert f"<td>events per entity</td><td>{num(ep.ks)}</td>" in html
    assert row("hour-of-day profile (TV)", num(result.fidelity.hour_of_day.tv), *["n/a"] * 5) in html
    samples = result.figures["samples"]
    ids = ", ".join(s["entity"] for s in samples["real"])
    assert f"real entities shown: {ids}" in html


def test_utility_section(result, html):
    u = result.utility
    assert row("discriminative score (|acc - 0.5|, 0 best)", "n/a") in html  # gru=False
    assert '<p class="note">GRU scores skipped (gru=False)</p>' in html
    fr = u.fraud
    assert row("fraud ROC AUC, trained on synthetic", num(fr.auc_synth)) in html
    assert row("test rows (positives)", f"{fr.test_rows} ({fr.test_positives})") in html
    assert row("windows real / synthetic", f"{u.windows_real} / {u.windows_synth}") in html


def test_privacy_section(result, html):
    p = result.privacy
    assert row("DCR median", num(p.dcr_synth_median), num(p.dcr_holdout_median), "") in html
    assert f"{p.rows_compared} rows per side against {p.reference_rows} real reference rows" in html
    assert "Privacy attacks" not in html  # no training table, no sensitive column


def test_balance_section(result, html):
    b = result.balance
    assert row("positive rate", num(b.real_rate), num(b.synth_rate)) in html
    assert "<h3>by channel</h3>" in html
    for r in b.per_category["channel"]:
        assert row(escape(str(r.value)), r.real_rows, r.synth_rows, num(r.real_rate), num(r.synth_rate)) in html


def test_figure_count_matches_the_svgs(html):
    expected = int(re.search(r'data-expected="(\d+)"', html).group(1))
    assert expected == html.count('<svg class="fig"') > 10


def test_absent_parts_drop_their_sections(result):
    bare = copy.deepcopy(result)
    bare.privacy = None
    bare.balance = None
    bare.fidelity.dependencies = None
    bare.fidelity.discriminator = None
    bare.fidelity.correlation = None
    bare.figures = {k: v for k, v in bare.figures.items() if k != "samples"}
    got = headings(render(bare))
    for gone in ("Privacy", "Label balance (is_fraud)", "Dependencies between columns",
                 "What tells real from synthetic events", "Spearman correlation", "Sample sequences"):
        assert gone not in got
    assert {"Scorecard", "Numeric columns", "Utility", "Cramer's V association"} <= set(got)
    svg = render(bare)
    assert int(re.search(r'data-expected="(\d+)"', svg).group(1)) == svg.count('<svg class="fig"')


def test_not_finite_numbers_read_n_a(result):
    odd = copy.deepcopy(result)
    odd.fidelity.numeric[0] = dataclasses.replace(odd.fidelity.numeric[0], ks=math.nan, wasserstein=math.inf)
    html = render(odd)
    assert f"<td>{odd.fidelity.numeric[0].name}</td><td>n/a</td><td>n/a</td>" in html


def test_all_passed_summary(result):
    good = copy.deepcopy(result)
    # thresholds moved to each value: every graded check passes
    good.scorecard = [c if c.threshold is None or c.value is None else dataclasses.replace(c, threshold=c.value)
                      for c in good.scorecard]
    assert all(c.passed is not False for c in good.scorecard)
    assert "<b>All checks with a threshold passed.</b>" in render(good)


def test_write_report(result, tmp_path, html):
    path = write_report(result, tmp_path / "sub" / "report.html")
    assert path.read_text() == html
