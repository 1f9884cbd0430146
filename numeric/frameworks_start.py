"""The first step of ``reports/frameworks.md``, light enough for ``gradaudit report`` to take before it
imports ``numeric.report`` (SymPy, ~0.6 s): is the report in the disk cache, and if not, JAX's kernels
started in their child process.

This module imports numpy, ml_dtypes, :mod:`derive.cache`, :mod:`numeric.digest` and
:mod:`numeric.frameworks_jax` — neither SymPy nor a framework — so :func:`start` can run within ~0.1 s of
the command's start, and the child (~3.5 CPU-s: JAX's import and eager compiles) then runs on the core
that the main process's imports leave idle.  The child's tasks need no op of gradaudit, only the kernels
(:data:`JAX_KERNELS`) and their inputs rounded to each dtype (:func:`jax_tasks`).  Exact values, κ and
the report itself are :mod:`numeric.frameworks_report`'s, whose ``start_frameworks_report`` adopts what
:func:`start` began (or calls it).
"""
from __future__ import annotations

import importlib.util
from typing import Callable, NamedTuple

import numpy as np

from derive import cache

from . import frameworks_jax
from .digest import source_digest
from .dtypes import DTYPES, resolve_dtype

__all__ = ["LOGIT_MAGNITUDES", "JaxKernel", "JAX_KERNELS", "is_float", "logits", "kernel_inputs", "jax_tasks",
           "spawn_jax_child", "stop_child", "compile_cache", "torch_device", "cached_text", "Started", "start"]

#: Magnitudes M of the logits z = M·N(0, 1) the softmax-like kernels run on.
LOGIT_MAGNITUDES = (1.0, 10.0, 100.0, 1e4)


def is_float(a) -> bool:
    """A floating-point numpy array of any of the four dtypes (bfloat16 has kind 'V')."""
    return isinstance(a, np.ndarray) and a.dtype in DTYPES.values()


def logits(m: float, rng) -> tuple:
    """(z,): float64 logits M·N(0, 1) of shape (4, 8)."""
    return (m * rng.standard_normal((4, 8)),)


def kernel_inputs(kernel, dt, magnitude: float, seed: int):
    """``kernel.args(magnitude, default_rng(seed))`` with its float arrays rounded to ``dt`` (Python floats
    and integer arrays unchanged), or None when some element overflows ``dt``."""
    args = kernel.args(magnitude, np.random.default_rng(seed))
    with np.errstate(over="ignore"):
        rounded = tuple(a.astype(dt) if is_float(a) else a for a in args)
    if not all(np.all(np.isfinite(a.astype(np.float64))) for a in rounded if isinstance(a, np.ndarray)):
        return None
    return rounded


class JaxKernel(NamedTuple):
    """One of JAX's kernels as its child runs it: ``forward`` a module-level function of
    :mod:`numeric.frameworks_jax` (it pickles by name), ``args(M, rng)`` its float64 inputs at magnitude
    M, ``diff`` the indices of the inputs its backward pass differentiates."""
    label: str
    forward: Callable
    args: Callable
    diff: tuple
    magnitudes: tuple


#: JAX's kernels in the report, in its order (``numeric.frameworks_report.jax_cases`` adds gradaudit's ops).
JAX_KERNELS = (JaxKernel("jax.nn.softmax(z, axis=1)", frameworks_jax.softmax, logits, (0,), LOGIT_MAGNITUDES),
               JaxKernel("jax.nn.log_softmax(z, axis=1)", frameworks_jax.log_softmax, logits, (0,), LOGIT_MAGNITUDES))


def jax_tasks(kernels, dtypes, magnitudes, seed: int) -> tuple[list, list]:
    """([(kernel index, dtype, magnitude, rounded inputs or None)], [task for :func:`frameworks_jax.run_all`
    per entry with inputs]) of ``kernels`` (anything with ``forward``, ``args``, ``diff``, ``magnitudes``)
    for dtype names ``dtypes``; ``magnitudes`` None: each kernel's own."""
    entries, tasks = [], []
    for i, kernel in enumerate(kernels):
        for d in dtypes:
            dt = resolve_dtype(d, argument="dtypes")
            for m in (magnitudes or kernel.magnitudes):
                rounded = kernel_inputs(kernel, dt, m, seed)
                entries.append((i, dt, m, rounded))
                if rounded is not None:
                    tasks.append((kernel.forward, kernel.diff, rounded, dt, seed))
    return entries, tasks


def spawn_jax_child(tasks: list, compile_cache: str | None) -> tuple:
    """(process, receiving end of its one-way pipe): a *spawned* child running
    :func:`frameworks_jax.child_main` on ``tasks``.  Spawned because JAX starts threads when imported and
    ``gradaudit report`` forks its workers afterwards; a Process, not a Pool, because a Pool runs threads
    in this process (fork with threads running can deadlock the child)."""
    import multiprocessing

    from .executors import sigint_deferred
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    with sigint_deferred():            # Ctrl-C while the child reads its start-up data: after, not during
        child = context.Process(target=frameworks_jax.child_main, args=(send, tasks, compile_cache),
                                name="gradaudit-jax", daemon=True)
        child.start()
    send.close()                       # the child's end: so a dead child reads as EOF here, not a hang
    return child, receive


def stop_child(child, pipe) -> None:
    """Terminate ``child`` (of :func:`spawn_jax_child`) if it still runs, wait for it, close its ``pipe``."""
    if child.is_alive():
        child.terminate()
    child.join()
    pipe.close()


def compile_cache() -> str | None:
    """``<gradaudit cache>/jax`` for JAX's persistent compilation cache, or None: when the cache is off,
    and while the cache directory holds no earlier frameworks report nor compile cache.

    Compiled kernels are keyed by JAX on their program, jaxlib version and flags, so a report rerun after
    a source change (whose text cache misses) loads them instead of compiling (the child's 2.3 CPU-s →
    0.5; the numbers are the same).  Writing them costs about 0.2 CPU-s, wasted when the cache directory
    is thrown away after each run (CI, a cold benchmark): so the first report in a fresh cache directory
    writes none, and the compile cache starts once the directory has shown it persists."""
    if not cache.available():
        return None
    root = cache.cache_dir()
    if not ((root / "jax").is_dir() or any((root / "frameworks").glob("*.json"))):
        return None
    return str(root / "jax")


def torch_device() -> str:
    """torch's default device, without importing torch for a CPU-only build (local version ``+cpu``)."""
    from importlib import metadata
    try:
        if metadata.version("torch").endswith("+cpu"):
            return "cpu"
    except metadata.PackageNotFoundError:
        pass
    from .adapters import torch_tensors
    return torch_tensors.default_device()


def cached_text(frameworks: set, dtypes, seed: int, magnitudes):
    """(cache path, cached report text or None, cache inputs) of a default run (:mod:`derive.cache`), keyed by
    the framework versions (read from package metadata: no framework is imported here), the torch device,
    the source digest of ``derive``/``numeric``, the dtypes, the seed and the magnitudes.  ``frameworks``:
    the names measured ("torch", "jax")."""
    from importlib import metadata

    versions = {}
    for name in sorted(frameworks):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "?"
    device = torch_device() if "torch" in frameworks else "cpu"
    inputs = repr((source_digest(), versions, str(device), tuple(dtypes), seed, magnitudes))
    path = cache.cache_dir() / "frameworks" / f"{cache.inputs_digest('frameworks report', inputs)[:32]}.json"
    payload = cache.load(path, "frameworks report", inputs,
                         validate=lambda data: data.startswith(b"#") and data.endswith(b"\n"))
    return path, (payload.decode("utf-8") if payload is not None else None), inputs


class Started:
    """What :func:`start` began for a default frameworks report of ``dtypes`` (names), ``seed`` and
    ``magnitudes``: ``cached`` = :func:`cached_text`'s (path, text or None, inputs), and — when the text
    was not cached and JAX is installed — JAX's ``child`` process, the receiving end ``pipe`` of its
    results and its ``entries`` (:func:`jax_tasks`, indices into :data:`JAX_KERNELS`).  The child belongs
    to this object until :meth:`take_child` hands it over; :meth:`close` (or leaving a ``with`` block)
    stops it if it still belongs here."""

    def __init__(self, dtypes, seed: int, magnitudes, cached):
        self.dtypes, self.seed, self.magnitudes, self.cached = tuple(dtypes), seed, magnitudes, cached
        self.child = self.pipe = self.entries = None

    def matches(self, dtypes, seed: int, magnitudes=None) -> bool:
        """True when this start is the one a default report of ``dtypes``, ``seed``, ``magnitudes`` makes."""
        return (self.dtypes, self.seed, self.magnitudes) == (tuple(dtypes), seed, magnitudes)

    def take_child(self) -> tuple:
        """(child, pipe, entries), or Nones without a child; from now on the taker stops the child."""
        taken = self.child, self.pipe, self.entries
        self.child = self.pipe = None
        return taken

    def close(self) -> None:
        """Stop the child unless it was taken (terminated if it still runs); safe to call again."""
        child, pipe, _ = self.take_child()
        if child is not None:
            stop_child(child, pipe)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start(dtypes=tuple(DTYPES), seed: int = 0, magnitudes=None) -> Started | None:
    """Begin a default frameworks report (torch's kernels measured later in this process, JAX's in a
    child): look it up in the disk cache, and unless it is there, spawn JAX's child now
    (:func:`spawn_jax_child`, with :func:`compile_cache`).  None when neither torch nor JAX is installed.
    A cache hit starts no child and imports no framework."""
    jax = importlib.util.find_spec("jax") is not None
    frameworks = ({"torch"} if importlib.util.find_spec("torch") is not None else set()) | ({"jax"} if jax else set())
    if not frameworks:
        return None
    for d in dtypes:
        resolve_dtype(d, argument="dtypes")
    started = Started(dtypes, seed, magnitudes, cached_text(frameworks, dtypes, seed, magnitudes))
    if started.cached[1] is None and jax:
        entries, tasks = jax_tasks(JAX_KERNELS, dtypes, magnitudes, seed)
        started.child, started.pipe = spawn_jax_child(tasks, compile_cache())
        started.entries = entries
    return started
