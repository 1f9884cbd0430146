"""Exhaustive low-precision sweeps: every value of one or two input elements, every output judged.

``gradaudit exhaustive softmax --dtype bfloat16 --vary 'z[0,0]'`` runs all 65 279 distinct finite bfloat16
values of z[0,0] (others fixed with ``--fix`` or drawn from a seed) through every formulation of the op,
judges every output element against the certified reference, and writes a Markdown report with an error
histogram, the worst cases, and the exact set of values whose output is inf/nan beside the set predicted
in exact arithmetic.  Modules: ``spec`` (parsing ``--vary``/``--fix``), ``grid`` (the values), ``chunk``
(one chunk of points, run by any executor), ``run`` (plan, chunks, merge), ``overflow`` (analytic
overflow sets), ``render`` (Markdown and figure).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from derive.atomic import write_bytes, write_text

from ..executors import Executor
from .run import make_plan, plan_digest, run_plan
from .spec import Element, parse_element, parse_fix, parse_number, parse_size

__all__ = ["make_plan", "run_plan", "write_exhaustive", "Element", "parse_element", "parse_fix", "parse_size",
           "parse_number", "report_name"]


def report_name(plan: dict) -> str:
    """File stem of the report: ``exhaustive-softmax-bfloat16-z0_0``."""
    from .run import _element_name

    varied = "-".join(re.sub(r"[^A-Za-z0-9]+", "_", _element_name(plan, v)).strip("_") for v in plan["varied"])
    return f"exhaustive-{plan['op']}-{plan['dtype']}-{varied}"


def write_exhaustive(plan: dict, out: Path, *, executor: Executor | None = None, points_per_chunk: int | None = None,
                     show_progress: bool | None = None, keep_chunks: bool = False) -> list[Path]:
    """Run ``plan`` and write ``out/<report_name>.md`` and its figure; returns the paths written.

    Chunk results are streamed to ``$GRADAUDIT_CACHE/exhaustive/<plan digest>/`` as they finish, so an
    interrupted run resumes where it stopped; the folder is removed after a complete run unless
    ``keep_chunks``.
    """
    from ..progress import progress
    from .overflow import analytic_overflow
    from .grid import value_grid
    from .render import figure_png, report_markdown

    from derive.proof import cache_dir

    out = Path(out)
    store = cache_dir() / "exhaustive" / plan_digest(plan)
    result = run_plan(plan, executor=executor, store=store, points_per_chunk=points_per_chunk,
                      show_progress=show_progress)
    analytic = {}
    if len(plan["varied"]) == 1 and plan["dtype"] != "float64":
        grid = value_grid(plan["dtype"], samples=plan["samples"]).values
        what = f"{plan['op']} {plan['dtype']}: analytic overflow sets"
        with progress(len(plan["formulations"]), what=what, unit="formulation", enabled=show_progress) as bar:
            for f in plan["formulations"]:
                analytic[f] = analytic_overflow(plan, f, grid)
                bar.update(1)
    name = report_name(plan)
    figure = out / "figures" / f"{name}.png"
    write_bytes(figure, figure_png(plan, result))
    report = out / f"{name}.md"
    write_text(report, report_markdown(plan, result, analytic, f"figures/{name}.png"))
    if not keep_chunks:
        shutil.rmtree(store, ignore_errors=True)
    return [report, figure]
