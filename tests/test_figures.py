"""Report figures: the same job gives the same SVG bytes whatever was drawn before it in the process."""
import math

import pytest

from numeric import figures


def _summary(bits: float, nonfinite: float = 0.0) -> dict:
    return {"max_bits": bits, "pct_nonfinite": nonfinite}


def _jobs() -> list:
    """Jobs that differ in what a reused figure must forget: panel count, lines per panel, inf/nan
    markers, threshold lines with labels, x ranges (log ticks), y ranges, legends, titles."""
    return [
        figures.figure_job({"naive": {"float16": [(1.0, _summary(0.5)), (10.0, _summary(3.0)), (1e4, _summary(0, 100))],
                                      "float32": [(1.0, _summary(0.2)), (1e6, _summary(9.0))]},
                            "shifted": {"float16": [(1.0, _summary(0.1)), (1e4, _summary(0.7))],
                                        "float32": [(1.0, _summary(0.1)), (1e6, _summary(0.4))]}},
                           ("float16", "float32"), xlabel="max |z|", title="two panels",
                           vlines={"float16": [(11.1, "ln(max)")]}),
        figures.figure_job({"compact": {"float64": [(1e-3, _summary(40.0)), (1e20, _summary(60.0))],
                                        "bfloat16": [(1e-3, _summary(1.0)), (0.5, _summary(2.0))]}},
                           ("float64", "bfloat16"), xlabel="scale", title="two panels, other ranges", vlines=None),
        figure_job_of_four(),
        figure_job_of_four(shift=5, vlines={"float16": [(2e4, "d")]}),
        figures.figure_job({"two_pass": {"bfloat16": [(2.0, _summary(1.0)), (1e30, _summary(2.0))]},
                            "one_pass eps=1e-03": {"bfloat16": [(2.0, _summary(7.0)), (1e30, _summary(math.nan))]}},
                           ("bfloat16",), xlabel="mean / std", title="one panel", vlines=None),
    ]


def figure_job_of_four(shift: int = 0, vlines=None) -> dict:
    dtypes = ("float16", "bfloat16", "float32", "float64")
    series = {"logsumexp": {d: [(10.0 ** (k + shift), _summary(0.1 * k)) for k in range(0, 9)] for d in dtypes},
              "staged": {d: [(10.0 ** (k + shift), _summary(0.3 * k + shift, 50.0 if k > 6 else 0.0))
                             for k in range(0, 9 - shift)] for d in dtypes}}
    if not shift:
        series["naive"] = {"float32": [(1.0, _summary(2.0)), (3.0, _summary(1.0, 100.0))]}
    return figures.figure_job(series, dtypes, xlabel="magnitude", title=f"four panels {shift}",
                              vlines=vlines or {"float64": [(1e3, "a"), (1e5, "b")], "float32": [(30.0, "c")]})


def _fresh(job) -> bytes:
    figures._figures().clear()
    return figures.draw_svg(job)


def test_a_figure_is_the_same_bytes_whatever_was_drawn_before_it():
    jobs = _jobs()
    fresh = [_fresh(job) for job in jobs]
    assert len(set(fresh)) == len(jobs) and all(figures._is_svg(svg) for svg in fresh)
    for order in ([0, 1, 2, 3, 4, 3, 2, 1, 0], [4, 3, 3, 1, 0, 2, 0, 1, 4, 2]):
        figures._figures().clear()
        for i in order:
            assert figures.draw_svg(jobs[i]) == fresh[i], (order, i)


def test_a_drawing_that_fails_is_not_reused():
    jobs = _jobs()
    fresh = _fresh(jobs[0])
    broken = figures.figure_job({"naive": {"float16": [(1.0, {"max_bits": 1.0})]}}, ("float16", "float32"),
                                xlabel="x", title="missing pct_nonfinite", vlines=None)
    with pytest.raises(KeyError):
        figures.draw_svg(broken)
    assert 2 not in figures._figures()
    assert figures.draw_svg(jobs[0]) == fresh


def test_threads_drawing_at_once_each_get_the_bytes_of_a_new_figure():
    """Dask workers run tasks in threads: each thread draws on its own figures."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = _jobs()
    fresh = [_fresh(job) for job in jobs]
    order = [0, 1, 2, 3, 4] * 4
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: figures.draw_svg(jobs[i]), order))
    assert got == [fresh[i] for i in order]


def test_words_stay_text_and_no_id_or_date_depends_on_the_process():
    """Axis labels and titles are SVG text (searchable, sharp at any size); no date or matplotlib version
    is written, and element ids come from a fixed salt, so another process draws the same bytes."""
    import subprocess
    import sys
    from pathlib import Path
    svg = _fresh(_jobs()[0]).decode()
    assert ">bits of error  log2(1 + max ULPs)</text>" in svg and ">10⁰</text>" in svg
    assert "<dc:date>" not in svg and "Matplotlib v" not in svg
    code = ("import sys; sys.path.insert(0, 'tests'); import test_figures as t; "
            "sys.stdout.buffer.write(t._fresh(t._jobs()[0]))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True,
                           cwd=Path(__file__).resolve().parent.parent).stdout
    assert other == svg.encode()
