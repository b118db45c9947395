"""The HTML report: self-contained, and every figure renders in headless Chromium.

Needs Debian's chromium (CI: `apt-get install -y chromium`); skipped when it is absent.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_evaluate import OTHER, REAL, TINY

from streamsynth.evaluate import evaluate, render, write_report

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)


@pytest.fixture(scope="module")
def result():
    return evaluate(REAL, OTHER, sequences=TINY)


def test_report_is_one_self_contained_file(result) -> None:
    html = render(result)
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    # Nothing to fetch: no external scripts, styles, images or fonts.
    assert not re.search(r"""(src|href)\s*=""", html)
    assert not re.search(r"url\(", html)
    assert "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert html.index("Scorecard") < html.index("Numeric columns")
    expected = int(re.search(r'data-expected="(\d+)"', html).group(1))
    assert expected == html.count('<svg class="fig"')
    # histogram + QQ per numeric column, bars per categorical, 3+3 heatmaps, autocorrelation
    # per numeric column, inter-arrival, events per entity, two profiles, two sample panels.
    assert expected == 2 * 2 + 2 + 6 + 2 + 2 + 2 + 2
    for title in (
        "amount: QQ plot",
        "Spearman correlation: synthetic",
        "Inter-arrival time",
        "real: amount",
        "synthetic: amount",
        "amount: autocorrelation within entities",
    ):
        assert f'data-figure="{title}"' in html


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed: apt-get install -y chromium"
)
def test_every_figure_renders_in_headless_chromium(result, tmp_path: Path) -> None:
    report = write_report(result, tmp_path / "report.html")
    expected, rendered = _rendered(report, tmp_path / "profile")
    assert expected > 15
    assert rendered == expected, f"only {rendered} of {expected} figures rendered"
    # The check can fail: a figure the browser does not lay out is not counted.
    broken = tmp_path / "broken.html"
    broken.write_text(
        report.read_text().replace('<svg class="fig"', '<svg style="display:none" class="fig"', 1)
    )
    assert _rendered(broken, tmp_path / "profile2") == (expected, expected - 1)


def _rendered(report: Path, profile: Path) -> tuple[int, int]:
    """(figures in the page, figures Chromium laid out) from the page's render check."""
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--dump-dom",
        report.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    check = re.search(
        r'<div id="render-check" data-expected="(\d+)" data-rendered="(\d+)"', done.stdout
    )
    assert check, "render-check element missing from the rendered DOM"
    return int(check.group(1)), int(check.group(2))
