"""Plan an exhaustive run, cut it into chunks, run them on an executor and merge the chunk results.

``plan`` is plain data (JSON-ready): op, dtype, formulations, the base inputs already rounded to the
dtype, the varied elements as (input position, index), and the grid's sample size.  Chunks are ranges of
point numbers; their results are merged in chunk order, so the merged result — and the report made from
it — does not depend on which executor ran the chunks or in which order they finished.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from derive import get_op

from ..dtypes import finfo, resolve_dtype
from ..executors import Executor, run_chunks
from ..progress import progress as progress_bar
from .chunk import EDGES, WORST, batchable, run_chunk
from .grid import value_grid
from .spec import Element, build_inputs, check_varied

__all__ = ["make_plan", "chunk_tasks", "run_plan", "merge", "plan_digest", "TARGET_ELEMENTS"]

#: Output elements per chunk when points are batched (≈ 1 s of certified reference on this machine).
TARGET_ELEMENTS = 1 << 16
#: Points per chunk when each point is its own call (ops whose outputs sum over the independent axis).
UNBATCHED_POINTS = 512


def make_plan(op_name: str, dtype: str, varied: list[Element], *, fixed=(), sizes=None, seed: int = 0,
              formulations=None, samples: int | None = None) -> dict:
    """The plan of a run (see the module doc); ``ValueError`` naming the argument for bad input."""
    op = get_op(op_name)
    dt = resolve_dtype(dtype)
    if dt == np.float64:
        raise ValueError("--dtype must be float16, bfloat16 or float32 for an exhaustive run (its ULP counts come "
                         "from float64 values certified to 2^-30 relative, too coarse for float64); got 'float64'")
    forms = list(formulations or op.formulations)
    for f in forms:
        if f not in op.formulations:
            raise ValueError(f"--formulation must be one of {', '.join(op.formulations)} for {op.name}; got {f!r}")
    args = build_inputs(op, fixed=list(fixed), sizes=dict(sizes or {}), seed=seed)
    check_varied(op, list(varied), args)
    with np.errstate(over="ignore"):
        rounded = [np.asarray(a, dtype=dt).astype(np.float64) for a in args]
    for inp, a in zip(op.inputs, rounded):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"--fix: input {inp.name} holds values beyond the range of {dt.name} "
                             f"(largest {float(finfo(dt).max)!r})")
    names = [i.name for i in op.inputs]
    grid = value_grid(dt, samples=samples)
    return {"op": op.name, "dtype": dt.name, "formulations": forms, "seed": seed,
            "inputs": [a.tolist() for a in rounded],
            "varied": [[names.index(e.name), list(e.index)] for e in varied],
            "samples": None if grid.complete else grid.values.size,
            "points": int(grid.values.size ** len(varied))}


def plan_digest(plan: dict) -> str:
    """A short hash of the plan and of the source code that computes it (names the chunk store)."""
    from ..digest import source_digest

    return hashlib.sha256((json.dumps(plan, sort_keys=True) + source_digest()).encode()).hexdigest()[:16]


def _points_per_chunk(plan: dict) -> int:
    op = get_op(plan["op"])
    if not batchable(op, [p for p, _ in plan["varied"]]):
        return UNBATCHED_POINTS
    from .chunk import _unit
    from ..evaluate import kernel

    base = [np.array(a, dtype=np.float64) for a in plan["inputs"]]
    unit, _, _ = _unit(op, base, [(p, tuple(i)) for p, i in plan["varied"]], True)
    per_point = sum(np.size(o) for o in kernel(op.name, None).run(*unit))
    return int(max(64, min(1 << 15, TARGET_ELEMENTS // max(per_point, 1))))


def chunk_tasks(plan: dict, points_per_chunk: int | None = None) -> list[dict]:
    """The chunk tasks of ``plan``: ``{"plan", "start", "stop"}`` covering every point once, in order."""
    size = points_per_chunk or _points_per_chunk(plan)
    return [{"plan": plan, "start": s, "stop": min(s + size, plan["points"])}
            for s in range(0, plan["points"], size)]


def merge(results: list[dict], formulations) -> dict:
    """Chunk results (in chunk order) → one result of the same form, with ``point_max`` as an array."""
    merged = {"points": sum(r["points"] for r in results), "uncertified": sum(r["uncertified"] for r in results),
              "arb_points": sum(r["arb_points"] for r in results), "forms": {}}
    for f in formulations:
        parts = [r["forms"][f] for r in results]
        runs: list[list[int]] = []
        for part in parts:
            for a, b in part["nonfinite_runs"]:
                if runs and runs[-1][1] == a:
                    runs[-1][1] = b
                else:
                    runs.append([a, b])
        worst = sorted((w for part in parts for w in part["worst"]), key=lambda w: (-w[0], w[1], w[2]))[:WORST]
        entry = {"exact": sum(p["exact"] for p in parts),
                 "hist": [int(x) for x in np.sum([p["hist"] for p in parts], axis=0)] if parts else [0] * (len(EDGES) + 1),
                 "worst": worst, "nonfinite_runs": runs,
                 **{k: sum(p[k] for p in parts) for k in ("nonfinite_elements", "flush", "elements", "beyond_float64")}}
        if parts and "point_max" in parts[0]:
            entry["point_max"] = np.array([x for p in parts for x in p["point_max"]], dtype=np.float64)
        merged["forms"][f] = entry
    return merged


def run_plan(plan: dict, *, executor: Executor | None = None, store: Path | None = None,
             points_per_chunk: int | None = None, show_progress: bool | None = None) -> dict:
    """Run every chunk of ``plan`` (resuming from ``store`` when given) and merge the results."""
    tasks = chunk_tasks(plan, points_per_chunk)
    varied = ", ".join(_element_name(plan, v) for v in plan["varied"])
    what = f"{plan['op']} {plan['dtype']}: exhaustive {varied}, certified reference"
    with progress_bar(len(tasks), what=what, unit="chunk", enabled=show_progress) as bar:
        results = run_chunks(run_chunk, tasks, executor=executor, store=store, progress=bar)
    return merge(results, plan["formulations"])


def _element_name(plan: dict, varied) -> str:
    p, index = varied
    name = get_op(plan["op"]).inputs[p].name
    return name + (f"[{','.join(map(str, index))}]" if index else "")
