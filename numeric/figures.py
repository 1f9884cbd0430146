"""Report figures: SVG drawn by matplotlib, with fixed metadata and element ids so the same data gives the
same bytes.  Text stays text (``svg.fonttype: none``, set only while saving): the figures scale without
blurring, their words can be searched, and drawing them takes two thirds of the time a PNG did (no glyph
rasterising, no image compression).

matplotlib is imported only to draw (:func:`draw_svg`), so a run whose figures all come from the cache,
or a process that only renders text, never imports it.  A figure is described by a *job*, a dict of plain
data (:func:`figure_job`), so it can be drawn in another process (``gradaudit report --jobs N``).
"""
from __future__ import annotations

import io
import math
import threading
from functools import lru_cache
from pathlib import Path

from derive import cache  # noqa: E402
from derive.cache import cache_dir  # noqa: E402

from derive.atomic import write_bytes  # noqa: E402
from .thresholds import precision_bits  # noqa: E402

__all__ = ["error_curves", "figure_job", "cached_svg", "draw_svg", "store_svg", "prepare_drawing"]

#: rcParams while a figure is saved: text as text, element ids from a fixed salt (not random).
_SVG_PARAMS = {"svg.fonttype": "none", "svg.hashsalt": "gradaudit"}
_STYLE = {"naive": ("tab:red", "o"), "shifted": ("tab:blue", "s"), "logsumexp": ("tab:green", "^"),
          "two_pass": ("tab:blue", "s"), "one_pass": ("tab:red", "o"), "compact": ("tab:blue", "s"),
          "staged": ("tab:purple", "D")}


def _bits(summary: dict) -> float:
    return summary["max_bits"]


def figure_job(series: dict, dtypes, *, xlabel: str, title: str, vlines=None) -> dict:
    """The figure of :func:`error_curves` as plain data (picklable, sent to a worker)."""
    return {"series": series, "dtypes": tuple(dtypes), "xlabel": xlabel, "title": title, "vlines": vlines}


@lru_cache(maxsize=None)
def _matplotlib_version() -> str:
    from importlib import metadata
    return metadata.version("matplotlib")


def _job_inputs(job: dict) -> str:
    """What a figure's bytes depend on: its data, this module's source and matplotlib's version."""
    return repr((job["series"], job["dtypes"], job["xlabel"], job["title"], job["vlines"],
                 _matplotlib_version(), Path(__file__).read_bytes()))


def _job_path(inputs: str) -> Path:
    return cache_dir() / "figures" / f"{cache.inputs_digest('figure', inputs)[:32]}.json"


def cached_svg(job: dict) -> bytes | None:
    """The SVG of ``job`` from the disk cache (:mod:`derive.cache`), or None."""
    inputs = _job_inputs(job)
    return cache.load(_job_path(inputs), "figure", inputs, validate=_is_svg)


def store_svg(job: dict, svg: bytes) -> None:
    """Put the SVG of ``job`` in the disk cache."""
    inputs = _job_inputs(job)
    cache.store(_job_path(inputs), "figure", inputs, svg)


def draw_svg(job: dict) -> bytes:
    """Draw ``job`` (imports matplotlib on first use in this process)."""
    return _draw(job["series"], job["dtypes"], xlabel=job["xlabel"], title=job["title"], vlines=job["vlines"])


def error_curves(series: dict, dtypes, *, xlabel: str, title: str, path: Path, vlines=None) -> None:
    """One panel per dtype; one line per series label: y = bits of error, log2(1 + max ULPs).

    ``series`` maps a label to ``{dtype: [(x, summary), …]}``.  Points where some output was inf/nan
    are drawn as an × on the dtype's precision line (every bit lost).  ``vlines`` maps a dtype to
    [(x, label)] reference lines (thresholds).  The SVG is cached by its inputs, this module's source
    and matplotlib's version (:mod:`derive.cache`), so an unchanged figure is not drawn again.
    """
    job = figure_job(series, dtypes, xlabel=xlabel, title=title, vlines=vlines)
    svg = cached_svg(job)
    if svg is None:
        svg = draw_svg(job)
        store_svg(job, svg)
    write_bytes(path, svg)


def _is_svg(data: bytes) -> bool:
    """A whole SVG document as matplotlib writes it: the XML declaration up to the closing ``</svg>``."""
    return data.startswith(b"<?xml") and data.rstrip().endswith(b"</svg>") and b"<svg" in data[:1000]


@lru_cache(maxsize=None)
def _matplotlib():
    """(Figure, LogLocator, NullLocator, FuncFormatter, rc_context), matplotlib imported with the Agg backend.  Figures
    are made as ``Figure`` objects, not through pyplot, whose registry would keep every figure made (one
    set per thread, see :func:`_emptied_figure`) open until closed."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator
    return Figure, LogLocator, NullLocator, FuncFormatter, matplotlib.rc_context


def prepare_drawing() -> None:
    """Import matplotlib now (before worker processes fork, so that they share it)."""
    _matplotlib()


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _power_of_ten(x, _pos=None) -> str:
    """A log-axis tick label as plain text, ``10⁻³`` (no mathtext: parsing it took a fifth of the drawing)."""
    if x > 0:
        e = round(math.log10(x))
        if x == 10.0 ** e:
            return "10" + str(e).translate(_SUPERSCRIPT)
    return f"{x:g}"


_SAVING = threading.Lock()
_DRAWING = threading.local()     # .figures: number of panels -> (figure, its axes), per thread (Dask
                                 # workers draw in several threads at once)


def _figures() -> dict:
    if not hasattr(_DRAWING, "figures"):
        _DRAWING.figures = {}
    return _DRAWING.figures


def _emptied_figure(panels: int):
    """A figure of ``panels`` axes for :func:`_draw`, made once per thread and emptied of the previous
    drawing's lines, texts and legend: a new figure builds every tick artist again when drawn (a third of
    the drawing time), an emptied one reuses them.  Its bytes are a new figure's (tested: figures drawn in
    any order equal those drawn on new figures)."""
    made = _figures().get(panels)
    if made is None:
        fig = _matplotlib()[0](figsize=(3.4 * panels, 3.2))
        axes = fig.subplots(1, panels, sharey=False, squeeze=False)
        made = _figures()[panels] = (fig, axes[0])
        return made
    fig, axes = made
    for ax in axes:
        for artist in [*ax.lines, *ax.texts]:
            artist.remove()
        if ax.get_legend() is not None:
            ax.get_legend().remove()
        ax.set_prop_cycle(None)
        ax.relim()                       # data limits of what is left: nothing
        ax.set_xscale("linear")          # as a new axes is while the lines are added
        ax.set_autoscale_on(True)
    return made


def _draw(series, dtypes, *, xlabel, title, vlines) -> bytes:
    fig, axes = _emptied_figure(len(dtypes))
    try:
        return _draw_on(fig, axes, series, dtypes, xlabel=xlabel, title=title, vlines=vlines)
    except BaseException:                # a half-drawn figure is not reused
        del _figures()[len(dtypes)]
        raise


def _log_limits(xs) -> tuple[float, float]:
    """Limits of a log x axis showing ``xs``: the decades they span and 5 % of that on each side (matplotlib's
    default margins).  Set, not autoscaled: autoscaling an emptied axes (:func:`_emptied_figure`) lands a
    few ULPs away from a new one's, which an SVG's coordinates show."""
    logs = [math.log10(x) for x in xs if x > 0 and math.isfinite(x)]
    if not logs:
        return 1.0, 10.0
    lo, hi = min(logs), max(logs)
    pad = 0.05 * (hi - lo) if hi > lo else 0.5
    return 10.0 ** (lo - pad), 10.0 ** (hi + pad)


def _draw_on(fig, axes, series, dtypes, *, xlabel, title, vlines) -> bytes:
    _, LogLocator, NullLocator, FuncFormatter, rc_context = _matplotlib()
    for ax, dtype in zip(axes, dtypes):
        p = precision_bits(dtype)
        top = p
        drawn_x = [x for x, _ in (vlines or {}).get(dtype, [])]
        for label, by_dtype in series.items():
            pts = [(x, s) for x, s in by_dtype.get(dtype, []) if not s.get("input_overflow")]   # nothing measured
            color, marker = _STYLE.get(label.split(" ")[0], ("tab:gray", "."))
            style = "--" if " eps=1e-03" in label else "-"
            xs = [x for x, s in pts if s["pct_nonfinite"] == 0 and not math.isnan(_bits(s))]
            ys = [_bits(s) for x, s in pts if s["pct_nonfinite"] == 0 and not math.isnan(_bits(s))]
            top = max([top, *ys])
            ax.plot(xs, ys, marker=marker, color=color, linestyle=style, label=label, linewidth=1.2, markersize=3.5)
            bad = [x for x, s in pts if s["pct_nonfinite"] > 0]
            drawn_x += xs + bad
            if bad:
                ax.plot(bad, [p] * len(bad), linestyle="none", marker="x", color=color, markersize=6)
        for x, text in (vlines or {}).get(dtype, []):
            ax.axvline(x, color="0.5", linestyle=":", linewidth=1)
            ax.annotate(text, (x, p * 0.92), fontsize=7, color="0.35", rotation=90, ha="right", va="top")
        ax.axhline(p, color="0.7", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlim(*_log_limits(drawn_x))
        ax.xaxis.set_minor_locator(NullLocator())        # unlabeled minor ticks cost most of the drawing time
        ax.xaxis.set_major_locator(LogLocator(numticks=6))
        ax.xaxis.set_major_formatter(FuncFormatter(_power_of_ten))
        ax.set_ylim(-0.3, top + 1.5)
        ax.set_title(dtype, fontsize=10, y=1.0)          # fixed: placing it would measure every tick label
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("bits of error  log2(1 + max ULPs)", fontsize=8)
    axes[-1].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.16, top=0.82, wspace=0.22)
    buffer = io.BytesIO()
    with _SAVING, rc_context(_SVG_PARAMS):      # rcParams are global: one thread saves at a time
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return buffer.getvalue()
