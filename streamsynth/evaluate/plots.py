"""Hand-written inline SVG charts for the report: no plotting dependency, no external files.

Every chart is an ``<svg class="fig">`` element; the report's render check counts them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

REAL = "#2b6cb0"
SYNTH = "#dd6b20"
WIDTH, HEIGHT = 340, 220
LEFT, RIGHT, TOP, BOTTOM = 46, 10, 24, 38


def _fmt(v: float) -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.2g}"
    return f"{v:.3g}"


def _svg(title: str, body: list[str], width: int = WIDTH, height: int = HEIGHT) -> str:
    return (
        f'<svg class="fig" data-figure="{escape(title)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f"<title>{escape(title)}</title>"
        f'<text x="{width / 2}" y="15" text-anchor="middle" class="t">{escape(title)}</text>'
        + "".join(body)
        + "</svg>"
    )


class _Axes:
    """Maps data coordinates into the plot area and draws the frame and a few ticks."""

    def __init__(
        self, x0: float, x1: float, y0: float, y1: float, width: int = WIDTH, height: int = HEIGHT
    ):
        self.x0, self.x1 = x0, (x1 if x1 > x0 else x0 + 1)
        self.y0, self.y1 = y0, (y1 if y1 > y0 else y0 + 1)
        self.w, self.h = width, height

    def x(self, v: float) -> float:
        return LEFT + (v - self.x0) / (self.x1 - self.x0) * (self.w - LEFT - RIGHT)

    def y(self, v: float) -> float:
        return self.h - BOTTOM - (v - self.y0) / (self.y1 - self.y0) * (self.h - TOP - BOTTOM)

    def frame(self, x_label: str = "", y_label: str = "", x_ticks: bool = True) -> list[str]:
        out = [
            f'<rect x="{LEFT}" y="{TOP}" width="{self.w - LEFT - RIGHT}" '
            f'height="{self.h - TOP - BOTTOM}" class="frame"/>'
        ]
        for frac in (0.0, 0.5, 1.0):
            yv = self.y0 + frac * (self.y1 - self.y0)
            out.append(
                f'<text x="{LEFT - 3}" y="{self.y(yv) + 3:.1f}" text-anchor="end" class="k">'
                f"{_fmt(yv)}</text>"
            )
            if x_ticks:
                xv = self.x0 + frac * (self.x1 - self.x0)
                out.append(
                    f'<text x="{self.x(xv):.1f}" y="{self.h - BOTTOM + 12}" text-anchor="middle" '
                    f'class="k">{_fmt(xv)}</text>'
                )
        if x_label:
            out.append(
                f'<text x="{(LEFT + self.w - RIGHT) / 2}" y="{self.h - 6}" text-anchor="middle" '
                f'class="k">{escape(x_label)}</text>'
            )
        if y_label:
            out.append(
                f'<text x="10" y="{(TOP + self.h - BOTTOM) / 2}" text-anchor="middle" class="k" '
                f'transform="rotate(-90 10 {(TOP + self.h - BOTTOM) / 2})">{escape(y_label)}</text>'
            )
        return out


def legend(width: int = WIDTH, entries: Sequence[tuple[str, str]] | None = None) -> list[str]:
    """The key in the top right corner: real and synthetic, or ``entries`` (name, colour) when given
    (charts of other series than real against synthetic, e.g. the load-test report's)."""
    if entries is not None:
        out, x = [], width - RIGHT - 4 - sum(24 + 6 * len(name) for name, _ in entries)
        for name, color in entries:
            out += [f'<rect x="{x}" y="{TOP + 4}" width="10" height="10" fill="{color}" opacity="0.6"/>',
                    f'<text x="{x + 14}" y="{TOP + 13}" class="k">{escape(name)}</text>']
            x += 24 + 6 * len(name)
        return out
    x = width - RIGHT - 110
    return [
        f'<rect x="{x}" y="{TOP + 4}" width="10" height="10" fill="{REAL}" opacity="0.6"/>',
        f'<text x="{x + 14}" y="{TOP + 13}" class="k">real</text>',
        f'<rect x="{x + 50}" y="{TOP + 4}" width="10" height="10" fill="{SYNTH}" opacity="0.6"/>',
        f'<text x="{x + 64}" y="{TOP + 13}" class="k">synthetic</text>',
    ]


def histogram(
    title: str,
    edges: Sequence[float],
    real: Sequence[float],
    synth: Sequence[float],
    x_label: str = "",
) -> str:
    """Overlaid histograms (shares per bin) of the real and synthetic values."""
    top = max([*real, *synth, 1e-9]) * 1.1
    ax = _Axes(edges[0], edges[-1], 0, top)
    body = ax.frame(x_label, "share")
    for values, color in ((real, REAL), (synth, SYNTH)):
        for i, v in enumerate(values):
            x0, x1 = ax.x(edges[i]), ax.x(edges[i + 1])
            body.append(
                f'<rect x="{x0:.1f}" y="{ax.y(v):.1f}" width="{max(x1 - x0, 0.5):.1f}" '
                f'height="{ax.y(0) - ax.y(v):.1f}" fill="{color}" opacity="0.45"/>'
            )
    return _svg(title, body + legend())


def bars(title: str, labels: Sequence[str], real: Sequence[float], synth: Sequence[float]) -> str:
    """Side-by-side bars per category (shares), labels rotated under the axis."""
    n = max(len(labels), 1)
    height = HEIGHT + 40
    ax = _Axes(0, n, 0, max([*real, *synth, 1e-9]) * 1.1, height=height)
    body = ax.frame("", "share", x_ticks=False)
    step = ax.x(1) - ax.x(0)
    for i, label in enumerate(labels):
        for j, (values, color) in enumerate(((real, REAL), (synth, SYNTH))):
            v = values[i]
            x = ax.x(i) + step * (0.1 + 0.4 * j)
            body.append(
                f'<rect x="{x:.1f}" y="{ax.y(v):.1f}" width="{step * 0.4:.1f}" '
                f'height="{ax.y(0) - ax.y(v):.1f}" fill="{color}" opacity="0.8"/>'
            )
        cx, cy = ax.x(i + 0.5), height - BOTTOM + 8
        body.append(
            f'<text x="{cx:.1f}" y="{cy}" class="k" text-anchor="end" '
            f'transform="rotate(-45 {cx:.1f} {cy})">{escape(str(label)[:14])}</text>'
        )
    return _svg(title, body + legend(), height=height)


def qq(title: str, real_q: Sequence[float], synth_q: Sequence[float]) -> str:
    """Synthetic quantiles against real quantiles; on the diagonal when they match."""
    lo = min(min(real_q), min(synth_q))
    hi = max(max(real_q), max(synth_q))
    ax = _Axes(lo, hi, lo, hi)
    body = ax.frame("real quantile", "synthetic quantile")
    body.append(
        f'<line x1="{ax.x(lo):.1f}" y1="{ax.y(lo):.1f}" x2="{ax.x(hi):.1f}" '
        f'y2="{ax.y(hi):.1f}" class="diag"/>'
    )
    for r, s in zip(real_q, synth_q, strict=True):
        body.append(f'<circle cx="{ax.x(r):.1f}" cy="{ax.y(s):.1f}" r="2" fill="{SYNTH}"/>')
    return _svg(title, body)


def lines(
    title: str,
    x: Sequence[float],
    series: dict[str, tuple[Sequence[float | None], str]],
    x_label: str = "",
    y_range: tuple[float, float] | None = None,
    y_label: str = "",
    named_legend: bool = False,
) -> str:
    """Line chart of several named series over the same x values; the key says real and synthetic,
    or with ``named_legend`` the series' own names."""
    ys = [v for values, _ in series.values() for v in values if v is not None and math.isfinite(v)]
    lo, hi = y_range or (min(ys, default=0.0), max(ys, default=1.0))
    ax = _Axes(min(x), max(x), lo, hi)
    body = ax.frame(x_label, y_label)
    for values, color in series.values():
        body.append(_polyline(ax, x, values, color))
    entries = [(name, color) for name, (_, color) in series.items()] if named_legend else None
    return _svg(title, body + legend(entries=entries))


def _polyline(ax: _Axes, x: Sequence[float], y: Sequence[float | None], color: str) -> str:
    points = " ".join(
        f"{ax.x(a):.1f},{ax.y(b):.1f}"
        for a, b in zip(x, y, strict=True)
        if b is not None and math.isfinite(b)
    )
    return f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.6"/>'


def heatmap(
    title: str,
    labels: Sequence[str],
    matrix: Sequence[Sequence[float]],
    vmin: float = -1.0,
    vmax: float = 1.0,
) -> str:
    """A matrix as coloured cells: blue for negative, red for positive, white at zero."""
    n = max(len(labels), 1)
    size = 240
    cell = size / n
    left, top = 90, 24
    body = []
    for i in range(len(labels)):
        for j in range(len(labels)):
            v = matrix[i][j]
            body.append(
                f'<rect x="{left + j * cell:.1f}" y="{top + i * cell:.1f}" width="{cell:.1f}" '
                f'height="{cell:.1f}" fill="{_color(v, vmin, vmax)}"><title>{escape(labels[i])} / '
                f"{escape(labels[j])}: {_fmt(v)}</title></rect>"
            )
            if n <= 10:
                body.append(
                    f'<text x="{left + (j + 0.5) * cell:.1f}" y="{top + (i + 0.5) * cell + 3:.1f}" '
                    f'text-anchor="middle" class="k">{_fmt(v)}</text>'
                )
        body.append(
            f'<text x="{left - 3}" y="{top + (i + 0.6) * cell:.1f}" text-anchor="end" class="k">'
            f"{escape(str(labels[i])[:14])}</text>"
        )
    return _svg(title, body, width=left + size + 10, height=top + size + 10)


def _color(v: float, vmin: float, vmax: float) -> str:
    if v is None or not math.isfinite(v):
        return "#cccccc"
    t = max(-1.0, min(1.0, v / (vmax if v >= 0 else -vmin) if (vmax if v >= 0 else -vmin) else 0))
    fade = int(255 * (1 - abs(t)))
    return f"rgb(255,{fade},{fade})" if t >= 0 else f"rgb({fade},{fade},255)"


def sequences(title: str, items: Sequence[dict], color: str, y_label: str = "") -> str:
    """A few entities' values over hours since their first event, one line each."""
    xs = [h for it in items for h in it["hours"]]
    ys = [v for it in items for v in it["values"] if v is not None]
    ax = _Axes(
        min(xs, default=0.0), max(xs, default=1.0), min(ys, default=0.0), max(ys, default=1.0)
    )
    body = ax.frame("hours since the entity's first event", y_label)
    shades = (1.0, 0.65, 0.4)
    for k, it in enumerate(items):
        line = _polyline(ax, it["hours"], it["values"], color)
        body.append(line.replace("/>", f' opacity="{shades[k % 3]}"/>'))
        for h, v in zip(it["hours"], it["values"], strict=True):
            if v is not None:
                body.append(
                    f'<circle cx="{ax.x(h):.1f}" cy="{ax.y(v):.1f}" r="1.6" fill="{color}" '
                    f'opacity="{shades[k % 3]}"/>'
                )
    return _svg(title, body)
