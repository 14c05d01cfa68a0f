"""`mlrepro report RUN... -o FILE`: learning curves and differences of runs, as HTML or PNG.

`-o report.html` writes one self-contained page (inline CSS and SVG; it opens
offline and can be mailed). `-o curves.png` draws the curves with matplotlib.
"""

from __future__ import annotations

import fnmatch
import math
import os
import time

from mlrepro.compare.html import render_report
from mlrepro.compare.naming import run_labels
from mlrepro.compare.svg import color, dash
from mlrepro.compare.text import printable
from mlrepro.errors import MlreproError
from mlrepro.store.files import atomic_write_bytes

FORMATS = (".html", ".htm", ".png")


def load_runs(store, refs: list[str]) -> tuple[list[dict], list[dict]]:
    """Manifests and metric series of the runs named, in the order given (duplicates dropped)."""
    ids = []
    for ref in refs:
        run_id = store.resolve(ref)
        if run_id not in ids:
            ids.append(run_id)
    manifests = [store.read_manifest(i) for i in ids]
    series = [store.read_points(i).series for i in ids]
    return manifests, series


def write_html(path: str, manifests, series, metrics=None, *, show_all: bool = False) -> None:
    page = render_report(manifests, series, metrics=metrics, generated=time.time(),
                         show_all=show_all)
    # a metric or run name may hold lone surrogates (bytes that were not UTF-8): \udce9
    atomic_write_bytes(path, page.encode("utf-8", "backslashreplace"))
    _readable(path)


def _readable(path: str) -> None:
    """A report is for sharing: give it the mode a new file gets (temp files are 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_png(path: str, manifests, series, metrics=None, *, dpi: int = 100) -> None:
    """One panel per metric, the runs' curves overlaid, drawn with matplotlib (Agg, no display)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MlreproError(f"PNG output needs matplotlib ({exc}): pip install matplotlib, or "
                           "write HTML with -o report.html")
    names = sorted({n for s in series for n in s})
    if metrics:
        names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in metrics)]
    if not names:
        raise MlreproError("the runs recorded no metrics to plot: check the run ids, or "
                           "drop --metric")
    cols = 1 if len(names) == 1 else 2
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(6.4 * cols, 3.6 * rows + 0.6), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    labels = run_labels(manifests)
    for ax, name in zip(axes, names):
        for i, (m, s) in enumerate(zip(manifests, series)):
            pts = s.get(name) or []
            if not pts:
                continue
            label = labels[i]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color(i),
                    linestyle="--" if dash(i) else "-", marker="o" if len(pts) <= 40 else None,
                    markersize=3, linewidth=1.6, label=printable(label))
        ax.set_title(printable(name), fontsize=10)  # matplotlib refuses lone surrogates
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels)) or 1,
               fontsize=8)
    tmp = f"{path}.tmp-{os.getpid()}.png"
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
