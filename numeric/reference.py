"""``reference``: an op evaluated in high precision with digits certified by agreement across precisions.

The op's reference formulation (the forward definition, or the closed form proved equal to the
derivative of it) is lambdified by ``derive`` for a multiple-precision engine and evaluated on the
*exact* values of the given float inputs.  Working precision climbs the ladder 128, 192, 320, 576…
bits (each step adds twice the previous gain) until two successive precisions agree to
``CERTIFIED_BITS`` = 53 + 30 bits relative, element by element (Herbie-style).  An element
known to lie within ±2^-1080 of 0 — below half of float64's smallest subnormal 2^-1074, so it rounds to
0 in every supported dtype — is returned as 0 (x − μ of a constant column, dz for a constant dy; these
need about 1100 bits of working precision to settle).

Engines:

* ``"arb"`` (default; python-flint): ball arithmetic.  Each result carries a rigorous error radius, so
  one evaluation certifies an element when radius ≤ 2^-83·|midpoint|; precision doubles while some
  element is not yet certified (e.g. cancellation), and a ball within ±2^-1080 of 0 is an exact zero.
  Every step runs on whole arrays and the ``mpf`` of an element is extracted from its ball's midpoint
  only when the element is first read (``numeric.engines.arb_arrays``).
* ``"gmpy2"`` (MPFR) and ``"mpmath"``: plain multiple precision, certified by agreement as above.

Precision is always scoped (``flint.ctx.prec`` set and restored around each evaluation / ``gmpy2.context`` /
``mpmath.workprec``), never a global setting.  Results are numpy object arrays of ``mpmath.mpf``; the
exponent range is unbounded, so the naive definition is exact truth.

Per-call cost: what one op, engine and argument dtypes and shapes decide — the checks that depend on
shapes alone, the reference kernel compiled as straight-line code for those shapes
(``derive.Kernel.straight_line``) — is kept in a plan after the first call that passed the full checks,
as one generated function: it checks that the arguments have the plan's types, dtypes and shapes, checks
every value (finite, scalars ≥ 0, class ids in range), converts to balls, runs the kernel's steps at 128
bits and wraps the certified balls, in one frame.  Any failed value check goes back through the full
checks, so bad input raises the same errors.  A one-row softmax (1 × 10) costs about 1.4× a plain
python-flint loop with the same certification rule (1.38–1.47× over runs: 12.0–12.2 µs against 8.2–8.6 µs
per call, steady state, ``bench/bench_reference.py``); batches of 100–1000 rows about 1.0×.
"""
from __future__ import annotations

import math
import operator
import types
from contextlib import contextmanager

import mpmath
import numpy as np
from mpmath.libmp import from_man_exp

from derive import get_op

from .arguments import check_arguments
from .engines.arb_arrays import NotCertified, array_kernel, certified_mpf, lazy_if_certified
from .evaluate import kernel

__all__ = ["reference", "reference_of", "reference_float64", "CERTIFIED_BITS", "ReferenceNotCertified"]

CERTIFIED_BITS = 53 + 30
START_BITS = 128
MAX_BITS = 1 << 14

import flint
import gmpy2

ENGINES = ("arb", "gmpy2", "mpmath")
DEFAULT_ENGINE = "arb"
ZERO_BITS = 1080               # |v| ≤ 2^-1080 rounds to 0 in float64 and in every narrower dtype


_make_mpf = mpmath.mp.make_mpf


class ReferenceNotCertified(ArithmeticError):
    """Two successive precisions never agreed before ``MAX_BITS``."""


def _map(fn, arr) -> np.ndarray:
    """``fn`` applied to every element, as an object ndarray (also for 0-d input)."""
    return np.asarray(np.frompyfunc(fn, 1, 1)(arr), dtype=object)


@contextmanager
def _precision(engine: str, bits: int):
    if engine == "arb":
        with flint.ctx.workprec(bits):
            yield
    elif engine == "gmpy2":
        with gmpy2.context(gmpy2.get_context(), precision=bits):
            yield
    else:
        with mpmath.workprec(bits):
            yield


_ARB_OF = np.frompyfunc(flint.arb, 1, 1)
_CONVERT = {"arb": _ARB_OF, "gmpy2": np.frompyfunc(gmpy2.mpfr, 1, 1),
            "mpmath": np.frompyfunc(mpmath.mpf, 1, 1)}


def _as_float64(arr) -> np.ndarray:
    return np.asarray(arr, dtype=np.float64)


def _to_engine(engine: str, arr: np.ndarray) -> np.ndarray:
    """Exact conversion of a float64 array (every supported dtype embeds exactly) to engine numbers."""
    out = _CONVERT[engine](np.asarray(arr, dtype=np.float64))
    return out if isinstance(out, np.ndarray) else np.asarray(out, dtype=object)


def _exact_mpf(v) -> mpmath.mpf:
    """A gmpy2 ``mpfr`` as an ``mpmath.mpf`` with every bit kept (no rounding to mpmath's precision)."""
    man, exp = v.as_mantissa_exp()
    return _make_mpf(from_man_exp(man, int(exp)))


def _arb_mid_mpf(ball) -> mpmath.mpf:
    man, exp = ball.mid().man_exp()
    return _make_mpf(from_man_exp(int(man), int(exp)))


def _to_mpf(engine: str, arr: np.ndarray) -> np.ndarray:
    if engine == "mpmath":
        return arr
    return _map(_arb_mid_mpf if engine == "arb" else _exact_mpf, arr)


def _run(engine, op_name, inputs, bits):
    with _precision(engine, bits):
        return kernel(op_name, None, engine).run(*inputs)


def _power_of_two(engine: str, k: int):
    """2**k exactly, as an engine number (a Python float would underflow for k < -1074)."""
    return gmpy2.mul_2exp(gmpy2.mpfr(1), k) if engine == "gmpy2" else mpmath.ldexp(1, k)


def _agreement(engine, lo: np.ndarray, hi: np.ndarray, lo_bits: int, hi_bits: int):
    """(settled mask, zero mask) for one output evaluated at ``lo_bits`` and ``hi_bits``.

    Settled: |lo − hi| ≤ 2^-83 |hi|, or both |lo| and |hi| ≤ 2^-1080 (a zero for every dtype).
    """
    lo = np.asarray(lo, dtype=object)
    hi = np.asarray(hi, dtype=object)
    mag_hi = np.asarray(np.abs(hi), dtype=object)
    close = np.asarray(np.abs(lo - hi) <= mag_hi * _power_of_two(engine, -CERTIFIED_BITS), dtype=bool)
    tiny = _power_of_two(engine, -ZERO_BITS)
    zero = np.asarray(np.abs(lo) <= tiny, dtype=bool) & np.asarray(mag_hi <= tiny, dtype=bool)
    return close | zero, zero & ~close


def reference(op: str, *args, engine: str | None = None, **params):
    """Certified high-precision value of ``op`` at ``args`` (same signature as the op).

    Returns an object array of ``mpmath.mpf`` (a tuple of them for ``batchnorm_backward``), each
    element correct to at least ``CERTIFIED_BITS`` bits relative, or an exact zero.
    ``engine``: "arb" (default), "gmpy2" or "mpmath"; ``params``: the op's conventions.
    """
    engine = engine or DEFAULT_ENGINE
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    the_op = get_op(op, **params) if params else get_op(op)
    plan = _LAST.get(id(the_op))        # this op's last plan: its function checks the arguments' signature
    outs = _MISS
    if plan is not None and plan.op is the_op and plan.engine == engine:
        outs = (plan.fast or plan._fast())(args)
        if outs is not _MISS and outs is not None:
            return outs
    key, arrays = _signature(the_op, engine, args)
    if outs is _MISS:                   # (None: a value check failed, which the full checks will report)
        plan = _PLANS.get(key)
        if plan is not None and plan.op is the_op:
            outs = (plan.fast or plan._fast())(arrays)
            if outs is not _MISS and outs is not None:
                if _LAST.get(id(the_op)) is not plan:
                    _remember(_LAST, id(the_op), plan)
                return outs
    # First call with these dtypes and shapes, or a value check failed: the full checks, which raise
    # the same errors as ever.
    outs = reference_of(the_op, check_arguments(the_op, args, np.dtype(np.float64)), engine)
    plan = _PLANS.get(key)
    if key is not None and (plan is None or plan.op is not the_op):
        plan = _Plan.build(the_op, engine, key[2:])
        if plan is not None:
            _remember(_PLANS, key, plan)
    return outs[0] if len(outs) == 1 else outs


_MAX_PLANS = 256
_PLANS: dict = {}        # (id(op), engine, (dtype, shape) of each argument…) -> _Plan (which keeps the op alive)
_LAST: dict = {}         # id(op) -> the plan of its last call through _PLANS (which keeps the op alive)
_MISS = object()         # what a plan's function answers for arguments of another signature
_SMALL = 64              # elements: up to this many, per-element Python beats a numpy call's set-up
_CODES: dict = {}        # (kernel, source) -> (code, globals) of plan functions (kept: shared by plans)


def _signature(the_op, engine: str, args: tuple):
    """(plan key, the arguments as arrays) of a call: the key holds the op, the engine and each
    argument's numpy dtype and shape; ``(None, None)`` when the argument count is wrong or the arguments
    cannot even be made arrays (the full checks then say what is wrong)."""
    if len(args) != len(the_op.inputs):
        return None, None
    try:
        arrays = list(map(_asarray, args))
    except (TypeError, ValueError):
        return None, None
    return (id(the_op), engine, *map(_dtype_and_shape, arrays)), arrays


_asarray = np.asarray


def _remember(cache: dict, key, value) -> None:
    """``cache[key] = value``, dropping the oldest entry when the cache holds ``_MAX_PLANS``."""
    if len(cache) >= _MAX_PLANS:
        del cache[next(iter(cache))]
    cache[key] = value
_dtype_and_shape = operator.attrgetter("dtype", "shape")


class _Plan:
    """What :func:`reference` decides once per op, engine and argument dtypes and shapes.

    Built only after ``check_arguments`` accepted arguments with that signature, so the checks that
    depend on dtypes and shapes alone (argument count, kind, rank, axis lengths agreeing, no empty
    axis) are proved by the key.  Per call it still runs every check that depends on
    values — finite values, a scalar finite and ≥ 0, class ids within [0, classes) — and its function
    answers ``None`` if one fails, so that the full checks raise their usual error.
    ``kinds``: per argument (kind, classes axis length or ``None``, numpy dtype); ``run``: the reference
    formulation's arb kernel specialised to these shapes; ``fast``: the plan's function (:meth:`_fast`,
    for the arb engine one generated function); both made on first use."""

    __slots__ = ("op", "engine", "kinds", "shapes", "run", "fast")

    def __init__(self, op, engine: str, kinds: tuple, shapes: tuple):
        self.op, self.engine, self.kinds, self.shapes = op, engine, kinds, shapes
        self.run = self.fast = None

    def _runner(self):
        """The reference formulation's arb kernel specialised to these shapes (made on first use)."""
        run = self.run = array_kernel(self.op.reference).specialise(self.shapes)
        return run

    @classmethod
    def build(cls, the_op, engine: str, signature: tuple):
        kinds = []
        lengths = {}
        for inp, (dtype, shape) in zip(the_op.inputs, signature):
            if not inp.integer:
                lengths.update(zip(inp.axes, shape))
        for inp, (dtype, shape) in zip(the_op.inputs, signature):
            if inp.integer:
                if dtype.kind not in "iu":          # whole floats taken as class ids: always the full path
                    return None
                kinds.append(("ids", lengths.get(inp.classes), dtype))
            else:
                kinds.append(("array" if inp.axes else "scalar", None, dtype))
        return cls(the_op, engine, tuple(kinds), tuple(shape for _, shape in signature))

    def _fast(self):
        """This plan's function ``fast(args)``: what :func:`reference` returns at the arguments (one object
        array of ``mpf``, or a tuple of them), ``None`` if a value check fails, ``_MISS`` for arguments of
        another signature.  Its checks and conversions are those of ``check_arguments`` and
        :func:`reference_of`: float arguments as float64, class ids as int64, every value finite.
        For the arb engine it is straight-line
        Python in one frame: this plan's value checks and exact conversions to balls, the reference kernel's
        steps (``Kernel.straight_line``: the same operations as ``run``) at ``START_BITS``, and the
        :class:`LazyMpf` wrappers, made while checking that every ball is certified (the common case);
        anything else goes to :func:`_by_balls`' general rule (zeros, higher precisions)."""
        if self.engine != "arb":
            self.fast = self._evaluate_other
            return self.fast
        run = self.run or self._runner()
        form = self.op.reference
        kernel = array_kernel(form)
        outs = [f"o{j}" for j in range(len(form.outputs))]
        steps, params, namespace = kernel.straight_line(self.shapes, outs)
        n = len(self.kinds)
        # The arguments' signature first (what the plan's key says): anything else is not this plan's.
        lines = [f"try: {', '.join(f'r{i}' for i in range(n))}, = args", "except ValueError: return MISS"]
        signature = []
        for i, ((kind, classes, dtype), shape) in enumerate(zip(self.kinds, self.shapes)):
            test = f"type(r{i}) is not ndarray or r{i}.dtype != dtype_{i} or r{i}.shape != shape_{i}"
            if kind == "scalar" and dtype == np.float64:    # a Python float is np.asarray'd to this
                test = f"type(r{i}) is not float and ({test})"
            lines.append(f"if {test}: return MISS")
            signature += [f"dtype_{i}", f"shape_{i}"]
        balls = []
        for i, ((kind, classes, dtype), shape) in enumerate(zip(self.kinds, self.shapes)):
            x, b = f"x{i}", f"a{i}"                 # a<i>: the kernel's inputs
            if kind == "ids":
                lines.append(f"{x} = r{i}" if dtype == np.int64 else f"{x} = r{i}.astype(int64, copy=False)")
                if classes is not None and math.prod(shape):
                    lines.append(f"if {x}.min() < 0 or {x}.max() >= {int(classes)}: return None")
                lines.append(f"{b} = ARB_OF({x}.astype(float64))")
            else:
                lines.append(f"{x} = r{i}" if dtype == np.float64 else f"{x} = r{i}.astype(float64, copy=False)")
                if kind == "scalar":
                    lines.append(f"value = float({x})")
                    lines.append("if not isfinite(value) or value < 0: return None")
                    lines.append(f"{b} = ARB_OF(value)")
                elif math.prod(shape) <= _SMALL:
                    # As Python floats (what ARB_OF makes of float64 values anyway, here without its buffered
                    # cast); their sum is finite only if each value is, else the exact test decides.
                    lines.append(f"{x} = {x}.astype(object)")
                    lines.append(f"if not isfinite(sum({x}.flat)) and not all(map(isfinite, {x}.flat)): return None")
                    lines.append(f"{b} = ARB_OF({x})")
                else:
                    lines.append(f"if not np.isfinite({x}).all(): return None")
                    lines.append(f"{b} = ARB_OF({x})")
            if not shape:                           # a 0-d argument gives a bare ball
                lines.append(f"{b} = asarray({b}, dtype=object)")
            balls.append(b)
        lines += ["saved = ctx.prec", f"ctx.prec = {START_BITS}", "try:"]
        lines += [f"    {line}" for line in steps]
        lines.append("finally: ctx.prec = saved")
        axes = form.axes()
        lengths = {a: n for inp, shape in zip(self.op.inputs, self.shapes) for a, n in zip(inp.axes, shape)}
        size = lambda name: math.prod(lengths.get(a, _SMALL + 1) for a in axes[name])     # (an axis of a relabel)
        again = f"return finish(({', '.join(outs)},), [{', '.join(balls)}])"
        wrapped = [f"w{j}" for j in range(len(outs))]     # (the balls o<j> stay for `finish`)
        if all(size(name) <= _SMALL for name in form.outputs):
            lines.append("try:")                # every ball certified at START_BITS: the common case
            lines += [f"    {w} = lazy({o})" for w, o in zip(wrapped, outs)]
            lines.append(f"except NotCertified: {again}")
            for w, name in zip(wrapped, form.outputs):
                if not axes[name]:              # a 0-d output: the ufunc gives a bare element
                    lines.append(f"if not isinstance({w}, ndarray): {w} = asarray({w}, dtype=object)")
            lines.append(f"return {wrapped[0]}" if len(outs) == 1 else f"return ({', '.join(wrapped)})")
        else:                                   # large outputs: certified_mpf's C-loop test first
            lines.append(again)
        # This plan's numbers (the kernel's parameters, the signature, `finish`) are the defaults, so plans
        # with the same text (other shapes of the same ranks) share one compiled code object.
        args = ["args"] + [f"{name}=None" for name in [f"p{k}" for k in range(len(params))] + signature]
        params = [*params, *(v for (_, _, dtype), shape in zip(self.kinds, self.shapes) for v in (dtype, shape))]
        source = f"def fast({', '.join(args)}, finish=None):\n" + "".join(f"    {line}\n" for line in lines)
        name = self.op.name

        def finish(out, inputs):
            values = certified_mpf(out, CERTIFIED_BITS, ZERO_BITS)
            if values is None:
                values = _by_balls(name, inputs, run, 2 * START_BITS)
            return values[0] if len(values) == 1 else tuple(values)

        compiled = _CODES.get((kernel, source))
        if compiled is None:
            namespace.update({"int64": np.int64, "float64": np.float64, "ARB_OF": _ARB_OF, "asarray": np.asarray,
                              "isfinite": math.isfinite, "ctx": flint.ctx, "NotCertified": NotCertified,
                              "lazy": lazy_if_certified(CERTIFIED_BITS), "MISS": _MISS})
            exec(compile(source, f"<reference plan {name}>", "exec"), namespace)
            compiled = namespace.pop("fast").__code__, namespace
            _remember(_CODES, (kernel, source), compiled)
        self.fast = types.FunctionType(*compiled, "fast", (*params, finish))
        return self.fast

    def _evaluate_other(self, args):
        """The plan's function for the gmpy2 and mpmath engines."""
        if len(args) != len(self.kinds):
            return _MISS
        try:
            arrays = list(map(_asarray, args))
        except (TypeError, ValueError):
            return _MISS
        if list(map(_dtype_and_shape, arrays)) != [(kind[2], shape) for kind, shape in zip(self.kinds, self.shapes)]:
            return _MISS
        checked = []
        for (kind, classes, dtype), arr in zip(self.kinds, arrays):
            if kind == "ids":
                arr = arr.astype(np.int64, copy=False)
                if classes is not None and arr.size and (arr.min() < 0 or arr.max() >= classes):
                    return None
            else:
                arr = arr.astype(np.float64, copy=False)
                if kind == "scalar":
                    value = float(arr)
                    if not math.isfinite(value) or value < 0:
                        return None
                elif not np.isfinite(arr).all():
                    return None
            checked.append(arr)
        outs = _evaluate(self.op, checked, self.engine)
        return outs[0] if len(outs) == 1 else tuple(outs)


def reference_of(the_op, arrays, engine: str = DEFAULT_ENGINE) -> tuple:
    """:func:`reference` of arguments already validated as float64 arrays (``check_arguments``), as a
    tuple of one object array per output (what the checker calls once per example)."""
    for a, inp in zip(arrays, the_op.inputs):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"argument {inp.name!r} must be finite for a reference; it holds inf or nan")
    return _evaluate(the_op, arrays, engine)


def _evaluate(the_op, arrays, engine: str, run=None) -> tuple:
    """The outputs at validated, finite float64 ``arrays``; ``run``: the arb kernel for their shapes."""
    if engine == "arb":                 # arb(float) is exact at any precision
        inputs = [a if isinstance(a, np.ndarray) else np.asarray(a, dtype=object)
                  for a in map(_ARB_OF, map(_as_float64, arrays))]
        if run is None:
            run = array_kernel(the_op.reference).specialise([np.shape(a) for a in arrays])
        return tuple(_by_balls(the_op.name, inputs, run))
    with _precision(engine, START_BITS):      # conversion of floats is exact at any precision ≥ 53
        inputs = [_to_engine(engine, a) for a in arrays]
    return tuple(_by_agreement(engine, the_op.name, inputs))


def _by_balls(op, inputs, run=None, bits: int = START_BITS) -> list:
    """Balls at 128, 256, 512… bits until every element is certified or known to be a zero; each step
    of the reference formulation runs on whole arrays (``engines.arb_arrays``) and the results are
    ``mpmath.mpf`` elements converted from the balls' midpoints when first read.  ``run``: the
    reference kernel (specialised to the inputs' shapes), by default compiled from the op's name; ``bits``:
    the first precision tried (a caller that already tried the ones below it starts higher)."""
    if run is None:
        run = array_kernel(get_op(op).reference).run
    ctx = flint.ctx
    while bits <= MAX_BITS:
        saved = ctx.prec                    # what flint.ctx.workprec(bits) does, without its object
        ctx.prec = bits
        try:
            out = run(*inputs)
        finally:
            ctx.prec = saved
        values = certified_mpf(out, CERTIFIED_BITS, ZERO_BITS)
        if values is not None:
            return values
        bits *= 2
    raise ReferenceNotCertified(f"{op}: radii at {MAX_BITS} bits still exceed 2^-{CERTIFIED_BITS} relative")


def _by_balls_per_element(op, inputs, run=None) -> list:
    """The former arb path (one Python call per element and step, eager ``mpf`` conversion): kept for the
    benchmark and as an independent check of :func:`_by_balls` (``run`` is ignored: the per-element
    kernel is used)."""
    limit = flint.arb(2) ** (-ZERO_BITS)

    def state(b):
        if b.rel_accuracy_bits() >= CERTIFIED_BITS + 1:
            return 1
        return 2 if abs(b.mid()) + b.rad() <= limit else 0

    bits = START_BITS
    while bits <= MAX_BITS:
        out = [np.asarray(o, dtype=object) for o in _run("arb", op, inputs, bits)]
        states = [np.asarray(_map(state, o), dtype=np.int8) for o in out]
        if all((st > 0).all() for st in states):
            results = []
            for o, st in zip(out, states):
                value = np.array(_to_mpf("arb", o), dtype=object)
                value[st == 2] = mpmath.mpf(0)
                results.append(value)
            return results
        bits *= 2
    raise ReferenceNotCertified(f"{op}: radii at {MAX_BITS} bits still exceed 2^-{CERTIFIED_BITS} relative")


def _by_agreement(engine, op, inputs) -> list:
    bits = START_BITS
    lo, step = _run(engine, op, inputs, bits), 64
    while bits < MAX_BITS:
        hi = _run(engine, op, inputs, bits + step)
        checks = [_agreement(engine, l, h, bits, bits + step) for l, h in zip(lo, hi)]
        if all(ok.all() for ok, _ in checks):
            outs = []
            for h, (_, zero) in zip(hi, checks):
                value = np.array(_to_mpf(engine, np.asarray(h, dtype=object)), dtype=object)
                value[zero] = mpmath.mpf(0)
                outs.append(value)
            return outs
        lo, bits, step = hi, bits + step, 2 * step
    raise ReferenceNotCertified(f"{op}: precisions up to {MAX_BITS} bits did not agree to {CERTIFIED_BITS} bits")


def reference_float64(op: str, *args, **params):
    """The op's exact outputs correctly rounded to float64 (inf beyond float64's range), from
    :func:`numeric.engines.fast.rounded_reference` — not the 83-bit midpoint of :func:`reference` rounded
    again, which can be one ulp off next to a rounding midpoint."""
    from .engines.fast import rounded_reference

    values = rounded_reference(op, *args, dtype="float64", **params).values
    return values if len(values) > 1 else values[0]
