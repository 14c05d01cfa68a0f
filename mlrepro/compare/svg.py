"""Line charts as inline SVG text: learning curves of several runs overlaid, no JavaScript.

Pure string building, so a report is one self-contained file a browser opens
offline and a test can read.
"""

from __future__ import annotations

import math
from html import escape
from typing import Sequence

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#76b7b2", "#edc948",
           "#ff9da7", "#9c755f", "#7f7f7f")
DASHES = ("", "6 3", "2 2", "8 3 2 3")
MAX_POINTS = 1200  # per series: longer curves keep each bucket's min and max
MARKERS_UP_TO = 40  # series this short also get a dot per point


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def dash(i: int) -> str:
    return DASHES[(i // len(PALETTE)) % len(DASHES)]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values inside [lo, hi], about `count` of them (the usual 1-2-5 steps).

    Example:
        >>> nice_ticks(0, 1)
        [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi == lo:
        return [lo]
    raw = (hi - lo) / max(1, count)
    if not (math.isfinite(raw) and raw > 1e-300):
        return [lo, hi]  # a span too wide or too narrow for round steps: just the ends
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    first = math.ceil(lo / step - 1e-9) * step
    n = int(math.floor((hi - first) / step + 1e-9)) + 1
    digits = max(0, 12 - int(math.floor(math.log10(step))))
    ticks = [round(first + k * step, digits) for k in range(max(0, min(n, 50)))]
    return [t for t in ticks if math.isfinite(t)] or [lo, hi]


def tick_label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.2g}"
    return f"{value:.6g}" if abs(value) >= 1 else f"{value:.4g}"


def downsample(points: Sequence[tuple[float, float]], limit: int = MAX_POINTS) -> list:
    """At most about `limit` points, keeping each bucket's lowest and highest value."""
    if len(points) <= limit:
        return list(points)
    size = math.ceil(len(points) / (limit / 2))
    out = []
    for i in range(0, len(points), size):
        bucket = points[i:i + size]
        low = min(bucket, key=lambda p: p[1])
        high = max(bucket, key=lambda p: p[1])
        out.extend(sorted({low, high}, key=lambda p: p[0]))
    return out


def line_chart(title: str, series: Sequence[tuple[str, Sequence[tuple[float, float]]]], *,
               width: int = 520, height: int = 290, x_label: str = "step") -> str:
    """An SVG chart with one line per `(label, [(x, y), ...])`; non-finite y break the line."""
    left, right, top, bottom = 64, 16, 30, 40
    finite = [(x, y) for _, pts in series for x, y in pts if math.isfinite(y)]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
             f"<title>{escape(title)}</title>",
             f'<text x="{left}" y="18" class="chart-title">{escape(title)}</text>']
    if not finite:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
                     f'class="empty">no finite values</text></svg>')
        return "".join(parts)
    x0, x1 = min(p[0] for p in finite), max(p[0] for p in finite)
    y0, y1 = min(p[1] for p in finite), max(p[1] for p in finite)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        pad = abs(y0) * 0.05 or 1.0
        y0, y1 = y0 - pad, y1 + pad
    yt = nice_ticks(y0, y1)
    if yt:
        y0, y1 = min(y0, yt[0]), max(y1, yt[-1])
    pw, ph = width - left - right, height - top - bottom

    def fraction(v, lo, hi):
        # halved first, so spans like -1e308..1e308 do not overflow; a span that
        # underflows to zero (denormal values) puts everything on the axis
        span = hi / 2 - lo / 2
        return (v / 2 - lo / 2) / span if span > 0 else 0.0

    def sx(x):
        return left + fraction(x, x0, x1) * pw

    def sy(y):
        return top + (1 - fraction(y, y0, y1)) * ph

    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="plot"/>')
    for t in yt:
        y = sy(t)
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'class="grid"/><text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" '
                     f'class="tick">{tick_label(t)}</text>')
    for t in nice_ticks(x0, x1, 6):
        x = sx(t)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + ph}" y2="{top + ph + 4}" '
                     f'class="axis"/><text x="{x:.1f}" y="{top + ph + 17}" text-anchor="middle" '
                     f'class="tick">{tick_label(t)}</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle" '
                 f'class="axis-label">{escape(x_label)}</text>')
    for i, (label, pts) in enumerate(series):
        pts = downsample(sorted(pts, key=lambda p: p[0]))
        style = f'stroke="{color(i)}"' + (f' stroke-dasharray="{dash(i)}"' if dash(i) else "")
        segment: list[str] = []
        segments = []
        for x, y in pts:
            if math.isfinite(y):
                segment.append(f"{sx(x):.1f},{sy(y):.1f}")
            elif segment:
                segments.append(segment)
                segment = []
        if segment:
            segments.append(segment)
        parts.append(f'<g class="series" data-run="{escape(label)}"><title>{escape(label)}'
                     f'</title>')
        for seg in segments:
            parts.append(f'<polyline fill="none" stroke-width="2" {style} '
                         f'points="{" ".join(seg)}"/>')
        if len(pts) <= MARKERS_UP_TO:
            for x, y in pts:
                if math.isfinite(y):
                    parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" '
                                 f'fill="{color(i)}"/>')
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)
