"""Turn a formulation into runnable code with ``sympy.lambdify`` — never hand-written numerics.

Each elementwise step is lambdified once (``cse=True``) for a backend:

* ``"numpy"``: numpy ufuncs on arrays of the working dtype.  Integers stay Python ints (weak scalars
  in NumPy >= 2); every non-integer constant (½, 3/2…) becomes an argument ``const_i``, and axis sizes
  (``N``) an argument too, passed as 0-d arrays of the working dtype, because ml_dtypes' bfloat16
  promotes Python floats to float32.
  A step that still changes the dtype raises ``TypeError``: there is no silent upcast.
* ``"mpmath"``: mpmath functions, mapped over object arrays of ``mpf`` with ``numpy.frompyfunc``.
* ``"gmpy2"``: the same mpmath-printed code with ``exp``/``log``/``sqrt``/``mpf`` bound to gmpy2's
  MPFR (C) functions; precision comes from the active ``gmpy2.context``.
* ``"arb"``: the same code on python-flint's ``arb`` balls (midpoint + rigorous radius, C), precision
  from ``flint.ctx.workprec``.

Reductions are numpy calls (``sum``, ``max``) on the named axes with ``keepdims=True``.  Internally every
value is held in *full-rank layout*: one array dimension per label of ``axis_order``, length 1 where the
value does not vary, so label broadcasting is plain numpy broadcasting and no step copies data.

``Kernel.run`` works out layouts and sizes on every call.  ``Kernel.specialise(shapes)`` returns the same
program as straight-line Python for inputs of those shapes (compiled once per kernel, the shapes' numbers
bound as defaults): what a many-times-repeated small call (a one-row certified reference) needs.
"""
from __future__ import annotations

import ast
import builtins
import inspect
import math
import types
from functools import lru_cache

import numpy as np
import sympy as sp
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.pycode import MpmathPrinter

from .program import Delta, Elementwise, Formulation, OneHot, Reduce, Relabel, value_symbol

__all__ = ["Kernel", "source_code"]


class _DtypePreservingPrinter(NumPyPrinter):
    """NumPy printer that writes ``x**(-k)`` as ``1/x**k``: SymPy's default ``x**(-1.0)`` has a Python
    float exponent, which promotes bfloat16 to float32."""

    def _print_Pow(self, expr, rational=False):
        if expr.exp.is_Integer and expr.exp.is_negative:
            inverse = expr.base if expr.exp == -1 else sp.Pow(expr.base, -expr.exp, evaluate=False)
            return "1/" + self.parenthesize(inverse, PRECEDENCE["Pow"])
        return super()._print_Pow(expr, rational=rational)


class _BallPrinter(MpmathPrinter):
    """Integer powers as ``_ipow(x, n)``: python-flint's ``arb ** 2`` is nan for a ball holding 0."""

    def _print_Pow(self, expr, rational=False):
        if expr.exp.is_Integer:
            return f"_ipow({self._print(expr.base)}, {int(expr.exp)})"
        return super()._print_Pow(expr, rational=rational)


def _ipow(x, n: int):
    """x**n by multiplication; even powers of a ball around 0 stay ≥ 0 (|x| is used).  A Python int base
    (an axis length N, passed as a size) with n < 0 is made a ball first: 1/N as a Python float would be
    rounded, then taken as exact by the ball arithmetic."""
    if n < 0:
        if isinstance(x, int):
            import flint
            x = flint.arb(x)
        return 1 / _ipow(x, -n)
    base = abs(x) if n % 2 == 0 else x
    result = 1
    for _ in range(n):
        result = result * base
    return result


def _lift_constants(expr: sp.Expr, table: dict, *, rationals: bool = True) -> sp.Expr:
    """Replace every non-integer constant (a number, or a closed expression such as √(2/π)) by a symbol
    ``const_i`` (recorded in ``table``), except the exponent ±½, which the printer turns into ``sqrt``.
    ``rationals=False`` keeps rational numbers (the multiple-precision printers write them exactly)."""
    if (expr.is_Number or (expr.is_number and not expr.free_symbols)) and not expr.is_Integer \
            and (rationals or not expr.is_Rational):
        if expr not in table:
            table[expr] = sp.Symbol(f"const_{len(table)}")
        return table[expr]
    if expr.is_Pow and expr.exp in (sp.S.Half, -sp.S.Half):
        return sp.Pow(_lift_constants(expr.base, table, rationals=rationals), expr.exp)
    if expr.args:
        return expr.func(*(_lift_constants(a, table, rationals=rationals) for a in expr.args))
    return expr


def engine_constant(value: sp.Expr, backend: str):
    """A closed constant (π, √(2/π)…) as a number of ``backend`` at the current working precision,
    with a rigorous radius for ``"arb"`` (evaluated by mpmath with 20 guard bits)."""
    import mpmath

    if backend == "arb":
        import flint
        bits = flint.ctx.prec + 20
    elif backend == "gmpy2":
        import gmpy2
        bits = gmpy2.get_context().precision + 20
    else:
        bits = mpmath.mp.prec + 20
    return _engine_constant(value, backend, bits)


@lru_cache(maxsize=4096)
def _engine_constant(value: sp.Expr, backend: str, bits: int):
    import mpmath

    with mpmath.workprec(bits):
        number = mpmath.mpf(sp.N(value, int(bits * 0.302) + 5))
    if backend == "mpmath":
        return number
    man, exp = number.man_exp if number else (0, 0)
    if backend == "gmpy2":
        import gmpy2
        return gmpy2.mul_2exp(gmpy2.mpfr(int(man)), int(exp))
    import flint
    mid = flint.arb(flint.fmpz(int(man))) * flint.arb(2) ** int(exp) if man else flint.arb(0)
    return flint.arb(mid.mid(), abs(mid.mid()) * flint.arb(2) ** (10 - bits) if man else 0)


def full_shape(labels, lengths, position: dict) -> tuple:
    """The full-rank shape of a value with axes ``labels`` of ``lengths``: one dimension per axis of the
    program (``position``: axis → dimension), length 1 where the value does not vary."""
    shape = [1] * len(position)
    for a, n in zip(labels, lengths):
        shape[position[a]] = n
    return tuple(shape)


def full_layout(array, labels, position: dict) -> np.ndarray:
    """``array`` (compact, axes ``labels``) reshaped to its full-rank layout (a view)."""
    return np.reshape(array, full_shape(labels, np.shape(array), position))


@lru_cache(maxsize=None)
def _lambdified(args: tuple, expr: sp.Expr, backend: str):
    """``sympy.lambdify(args, expr, cse=True)`` for ``backend`` (for the object backends, mapped over arrays
    with ``numpy.frompyfunc``).  Made once per process for each (arguments, expression, backend): the
    formulations of an op, and an op's convention instances, share most of their steps, and lambdify's
    common-subexpression pass and printing are most of a kernel's construction time."""
    if backend == "numpy":
        return sp.lambdify(args, expr, modules="numpy", cse=True, printer=_DtypePreservingPrinter())
    modules = [_NAMESPACES[backend](), "mpmath"] if backend in _NAMESPACES else "mpmath"
    printer = _BallPrinter(_PRINTER_SETTINGS) if backend == "arb" else None
    f = sp.lambdify(args, expr, modules=modules, cse=True, printer=printer)
    return np.frompyfunc(f, len(args), 1) if args else f    # a constant step (no arguments) stays a plain call


class _Lambdified(dict):
    """A kernel's elementwise functions by step name, each lambdified (:func:`_lambdified`) when first read:
    an engine that replaces some of them (:mod:`numeric.engines.arb_arrays`) never pays for those."""

    def __init__(self, kernel: "Kernel", backend: str):
        super().__init__()
        self._kernel, self._backend = kernel, backend

    def __missing__(self, name: str):
        expr, args = self._kernel.lifted[name]
        function = self[name] = _lambdified(tuple(args), expr, self._backend)
        return function


class Kernel:
    """A compiled formulation. ``kernel.run(*arrays)`` takes the inputs in their own (compact) shapes,
    already in the working dtype, and returns a tuple of the outputs in their compact shapes;
    ``kernel(*arrays)`` is the same with a single output unwrapped."""

    def __init__(self, form: Formulation, backend: str = "numpy"):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
        self.form = form
        self.backend = backend
        self.axes = form.axes()
        self.position = {a: i for i, a in enumerate(form.axis_order)}
        self.last_use = _last_uses(form)
        self.reads = {st.name: form.free_names(st) for st in form.steps if isinstance(st, Elementwise)}
        self.functions = _Lambdified(self, backend)     # step name -> its function, made on first use
        self.constants = {}      # step name -> non-integer constants, in argument order
        self.lifted = {}         # step name -> (expression with constants as symbols, argument symbols)
        for step in form.steps:
            if isinstance(step, Elementwise):
                expr = step.expr
                args = [value_symbol(n) for n in form.free_names(step)]
                args += [form.size_symbol(s) for s in form.sizes]
                table: dict = {}
                expr = _lift_constants(expr, table, rationals=backend == "numpy")
                args += list(table.values())
                self.constants[step.name] = ([float(sp.N(c, 30)) for c in table] if backend == "numpy"
                                             else list(table))
                self.lifted[step.name] = (expr, args)

    def _full_shape(self, labels, lengths):
        return full_shape(labels, lengths, self.position)

    def _full(self, array, labels):
        return full_layout(array, labels, self.position)

    def __call__(self, *arrays):
        outs = self.run(*arrays)
        return outs[0] if len(outs) == 1 else outs

    def _build_plan(self):
        """Per step, what ``run`` needs, worked out once: (kind, step, values freed before it, extra)."""
        plan = []
        for position, step in enumerate(self.form.steps):
            frees = tuple(self.last_use.get(position - 1, ()))
            if isinstance(step, Elementwise):
                plan.append((0, step, frees, tuple(self.reads[step.name])))
            elif isinstance(step, Reduce):
                plan.append((1, step, frees, tuple(self.position[a] for a in step.over)))
            elif isinstance(step, Relabel):
                plan.append((2, step, frees, tuple((self.position[o], self.position[n], o, n) for o, n in step.mapping)))
            elif isinstance(step, Delta):
                plan.append((3, step, frees, None))
            elif isinstance(step, OneHot):
                plan.append((4, step, frees, [i.name for i in self.form.inputs].index(step.arg)))
        self._plan = plan
        self._sizes = [tuple(self.form.size_axes(s)) for s in self.form.sizes]
        self._outputs = [(name, self.axes[name]) for name in self.form.outputs]
        self._float_inputs = [i for i, inp in enumerate(self.form.inputs) if not inp.integer]
        self._needs_dtype = self.backend == "numpy" or any(kind in (3, 4) for kind, *_ in plan)
        return plan

    def specialise(self, shapes):
        """``run`` for inputs of exactly these compact ``shapes`` (one tuple per input, as ``np.shape``
        gives): what depends only on the shapes (full-rank layouts, axis lengths, size arguments, mean
        divisors, reduction axes, output shapes, which values to free) is worked out here once, so the
        returned ``fn(*arrays) -> tuple`` runs only the steps — the same operations in the same order as
        ``run``, so the results are bit-identical.  The caller guarantees the shapes and passes exactly one
        array per input; one function is kept per shapes (at most ``_SPECIALISED`` of them, oldest dropped
        first).  The code is compiled once per kernel; a new shape costs only working out its numbers."""
        shapes = tuple(tuple(int(n) for n in s) for s in shapes)
        cache = self.__dict__.setdefault("_specialised", {})
        fn = cache.get(shapes)
        if fn is None:
            fn = self._specialise(shapes)
            if len(cache) >= _SPECIALISED:
                del cache[next(iter(cache))]
            cache[shapes] = fn
        return fn

    def _specialise(self, shapes: tuple):
        """A function sharing one compiled straight-line code object per kernel and input ranks (so Python's
        adaptive interpreter warms it once for all shapes), with this shape's numbers as its defaults."""
        if len(shapes) != len(self.form.inputs):
            raise ValueError(f"{self.form.name} takes {len(self.form.inputs)} inputs; got {len(shapes)} shapes")
        templates = self.__dict__.setdefault("_templates", {})
        ranks = tuple(len(s) for s in shapes)
        template = templates.get(ranks)
        lines, params = self._straight_line(shapes, template is None)
        if template is None:
            template = templates[ranks] = self._compile(lines, len(params))
        code, namespace = template
        run = types.FunctionType(code, namespace, "run", tuple(params))
        return run

    def _compile(self, lines: list, n_params: int):
        """Straight-line Python of the whole formulation: one line per step, values in local variables
        ``v<i>`` (deleted after their last use), shape-dependent numbers in parameters ``p<i>`` (filled in
        per shape as defaults), the lambdified step functions and constants in globals ``g<i>``; a step
        whose function is plain lambdified code is written inline (:func:`_inline`: its own lines, no call),
        and the isinstance / broadcast checks that the layouts make certain are left out.  The text holds
        only these names and integer literals — no name from the formulation."""
        args = [f"a{i}" for i in range(len(self.form.inputs))] + [f"p{k}=None" for k in range(n_params)]
        source = f"def run({', '.join(args)}):\n" + "".join(f"    {line}\n" for line in lines)
        namespace = dict(self._globals)
        exec(compile(source, f"<straight-line {self.form.name}>", "exec"), namespace)
        code = namespace.pop("run").__code__
        self.straight_line_source = source
        return code, namespace

    def straight_line(self, shapes, outputs: list) -> tuple[list, list, dict]:
        """The program :meth:`specialise` runs for ``shapes``, for a caller that writes it into a function of
        its own (one frame for its work and the steps): (lines, parameter values, globals).  The lines read
        the inputs from locals ``a0, a1, …`` and the parameter values as ``p0, p1, …`` (the caller's
        defaults), and end by assigning the outputs to the local names ``outputs``; they use only names
        ``a<i>``, ``p<k>``, ``v<i>``, ``s<k>``, ``t<i>_…``, ``dtype`` and the returned globals ``g…``, ``np``,
        ``ndarray``, ``engine_constant``, ``backend``, ``_sum_in_order``."""
        shapes = tuple(tuple(int(n) for n in s) for s in shapes)
        if len(shapes) != len(self.form.inputs) or len(outputs) != len(self.form.outputs):
            raise ValueError(f"{self.form.name} takes {len(self.form.inputs)} inputs and gives "
                             f"{len(self.form.outputs)} outputs; got {len(shapes)} shapes, {len(outputs)} names")
        cache = self.__dict__.setdefault("_straight_lines", {})     # the lines depend on the input ranks only
        key = (tuple(len(s) for s in shapes), tuple(outputs))
        lines = cache.get(key)
        if lines is None:
            lines, params = self._straight_line(shapes, True, outputs)
            cache[key] = lines
        else:
            _, params = self._straight_line(shapes, False, outputs)
        return list(lines), params, dict(self._globals)

    def _straight_line(self, shapes: tuple, with_lines: bool, assign: list | None = None):
        """(source lines, parameter values) of the straight-line program for ``shapes``; the lines depend
        on the formulation only (so ``with_lines`` is needed once per kernel), the values on the shapes.
        The last line returns the outputs as a tuple, or assigns them to the names ``assign``."""
        form = self.form
        plan = getattr(self, "_plan", None) or self._build_plan()
        position, backend = self.position, self.backend
        numpy_backend = backend == "numpy"
        params: list = []
        lines: list = []
        glob = self.__dict__.setdefault("_globals", {"np": np, "ndarray": np.ndarray,
                                                     "engine_constant": engine_constant, "backend": backend})
        slots: dict = {}
        freed: set = set()
        if with_lines:
            self._inlined = set()        # elementwise steps written inline (decided with the lines)

        def var(name):
            return slots.setdefault(name, f"v{len(slots)}")

        def param(value):
            params.append(value)
            return f"p{len(params) - 1}"

        def bind(key, value):
            name = f"g{key}"
            glob.setdefault(name, value)
            return name

        def emit(line):
            if with_lines:
                lines.append(line)

        lengths: dict = {}
        every_axis = tuple(form.axis_order)
        # What is known of each value before any call: ``dims`` the full-rank dimensions along which it may
        # have a length other than 1 (numpy broadcasting takes the union), ``arrays`` the values that are
        # always ndarrays of that full rank (≥ 1), for which no isinstance / asarray is needed.
        dims: dict = {}
        arrays: set = set()
        ranked = len(every_axis) > 0

        def on(labels):
            return frozenset(position[a] for a in labels)

        for i, (inp, shape) in enumerate(zip(form.inputs, shapes)):
            lengths.update(zip(inp.axes, shape))
            full = param(full_shape(inp.axes, shape, position))
            if tuple(inp.axes) == every_axis:         # the compact shape is the full-rank layout
                emit(f"{var(inp.name)} = a{i} if isinstance(a{i}, ndarray) else np.reshape(a{i}, {full})")
            else:
                emit(f"{var(inp.name)} = np.reshape(a{i}, {full})")
            dims[inp.name] = on(inp.axes)
            if ranked:
                arrays.add(inp.name)
        sizes = [param(math.prod(lengths[a] for a in axes)) for axes in self._sizes]
        if self._needs_dtype:
            dtype_from = next((i for i in self._float_inputs if i < len(shapes) and len(shapes[i])), None)
            emit("dtype = None" if dtype_from is None else f"dtype = np.asarray(a{dtype_from}).dtype")
        else:
            emit("dtype = None")
        if numpy_backend:   # sizes enter as numbers of the working dtype (1/N must not be a Python float)
            for k, n in enumerate(sizes):
                emit(f"s{k} = np.asarray({n}, dtype=dtype)")
            size_args = [f"s{k}" for k in range(len(sizes))]
        else:
            size_args = sizes
        for index, (kind, step, frees, extra) in enumerate(plan):
            gone = [slots[n] for n in frees if n in slots]
            freed.update(n for n in frees if n in slots)
            if gone:
                emit("del " + ", ".join(gone))      # free large intermediates once nothing reads them
            if kind == 0:
                fn = bind(f"{index}", self.functions[step.name])
                consts = self.constants.get(step.name) or []
                if numpy_backend:
                    const_args = [f"np.asarray({bind(f'{index}_{c}', value)}, dtype=dtype)"
                                  for c, value in enumerate(consts)]
                else:
                    const_args = [f"engine_constant({bind(f'{index}_{c}', value)}, backend)"
                                  for c, value in enumerate(consts)]
                call_args = [slots[n] for n in extra] + size_args + const_args
                out = var(step.name)
                inline = _inline(self.functions[step.name], f"t{index}_", call_args, lambda name, value:
                                 bind(f"{index}n_{name}", value)) if with_lines else None
                if inline is None:
                    emit(f"{out} = {fn}({', '.join(call_args)})")
                else:                                # the lambdified body itself: no call, same operations
                    self._inlined.add(step.name)
                    lines_, temporaries = inline
                    for line in lines_[:-1]:
                        emit(line)
                    emit(f"{out} = {lines_[-1]}")
                    if temporaries:                  # freed where the call's frame would have ended
                        emit("del " + ", ".join(temporaries))
                dims[step.name] = frozenset().union(*(dims[n] for n in extra))
                if step.name in self._inlined and any(n in arrays for n in extra):
                    arrays.add(step.name)          # numpy operations on an ndarray of rank ≥ 1 give one
                if numpy_backend:
                    check = bind(f"{index}_check", _dtype_changed(form.name, step.name))
                    emit(f"if np.result_type({out}) != dtype: {check}(dtype, {out})")
            elif kind == 1:
                x = slots[step.arg]      # what ndarray.max / .sum call, without their Python wrappers
                if step.arg not in arrays:
                    x = f"({x} if isinstance({x}, ndarray) else np.asarray({x}))"
                call = "np.maximum.reduce" if step.op == "max" else "np.add.reduce"
                line = f"{var(step.name)} = {call}({x}, axis={extra!r}, keepdims=True)"
                if step.op != "max" and not numpy_backend:
                    # numpy adds the elements of an object array in index order, one by one: a sum with a
                    # single element out (one row) is that same Python loop, without the ufunc's set-up
                    longer = [p for p in dims[step.arg] if lengths.get(form.axis_order[p], 2) != 1]
                    one = not set(longer) - set(extra) and len(longer) <= 1
                    flag = param((1,) * len(every_axis) if one else None)     # the keepdims shape, or None
                    line = (f"{var(step.name)} = (_sum_in_order({x}, {flag}) if {flag} is not None else "
                            f"{call}({x}, axis={extra!r}, keepdims=True))")
                    glob.setdefault("_sum_in_order", _sum_in_order)
                if step.op == "mean":
                    line += f" / {param(math.prod(lengths[a] for a in step.over))}"
                emit(line)
                dims[step.name] = dims[step.arg] - set(extra)
                if ranked:
                    arrays.add(step.name)
            elif kind == 2:
                x = slots[step.arg]
                moved = set(dims[step.arg])
                for i, j, old, new in extra:
                    x = f"np.swapaxes({x}, {i}, {j})"
                    lengths[new] = lengths[old]
                    moved = {j if d == i else i if d == j else d for d in moved}
                emit(f"{var(step.name)} = {x}")
                dims[step.name] = frozenset(moved)
                if ranked:
                    arrays.add(step.name)
            elif kind == 3:
                emit(f"{var(step.name)} = {param(_delta(self, step, dict(lengths)))}(dtype)")
                dims[step.name] = on(step.axes)
                if ranked:
                    arrays.add(step.name)
            else:
                emit(f"{var(step.name)} = {param(_one_hot(self, step, extra, dict(lengths)))}(a{extra}, dtype)")
                dims[step.name] = on((*form.inputs[extra].axes, step.axis))
                if ranked:
                    arrays.add(step.name)
        outs = []
        for name, labels in self._outputs:
            shape = tuple(lengths[a] for a in labels)
            full, compact = param(full_shape(labels, shape, position)), param(shape)
            value = slots[name]
            if name not in arrays:
                emit(f"{value} = {value} if isinstance({value}, ndarray) else np.asarray({value})")
            if dims[name] != on(labels):         # constant along some of its axes: broadcast (a view)
                emit(f"if {value}.shape != {full}: {value} = np.broadcast_to({value}, {full})")
            if tuple(labels) != every_axis:
                emit(f"{value} = {value}.reshape({compact})")
            outs.append(value)
        if assign is None:
            emit(f"return ({', '.join(outs)},)")
        else:                   # and free every value, as the end of run's frame does, before the caller goes on
            emit(f"{', '.join(assign)}, = {', '.join(outs)},")
            emit("del " + ", ".join(slot for name, slot in slots.items() if name not in freed))
        return lines, params

    def run(self, *arrays) -> tuple:
        form = self.form
        plan = getattr(self, "_plan", None) or self._build_plan()
        numpy_backend = self.backend == "numpy"
        env, lengths = {}, {}
        position = self.position
        for inp, arr in zip(form.inputs, arrays):
            shape = np.shape(arr)
            lengths.update(zip(inp.axes, shape))
            full = full_shape(inp.axes, shape, position)
            env[inp.name] = arr.reshape(full) if isinstance(arr, np.ndarray) else np.reshape(arr, full)
        dtype = None
        if self._needs_dtype:
            dtype = next((np.asarray(arrays[i]).dtype for i in self._float_inputs
                          if i < len(arrays) and np.ndim(arrays[i])), None)
        size_args = [math.prod(lengths[a] for a in axes) for axes in self._sizes]
        if numpy_backend:       # sizes enter as numbers of the working dtype (1/N must not be a Python float)
            size_args = [np.asarray(n, dtype=dtype) for n in size_args]
        functions, constants = self.functions, self.constants
        for kind, step, frees, extra in plan:
            for name in frees:
                env.pop(name, None)          # free large intermediates as soon as nothing reads them
            if kind == 0:
                consts = constants.get(step.name)
                if consts:
                    consts = [np.asarray(c, dtype=dtype) if numpy_backend else engine_constant(c, self.backend)
                              for c in consts]
                    result = functions[step.name](*[env[n] for n in extra], *size_args, *consts)
                else:
                    result = functions[step.name](*[env[n] for n in extra], *size_args)
                env[step.name] = result
                if numpy_backend and np.result_type(result) != dtype:
                    raise TypeError(f"step {step.name!r} of formulation {form.name!r} changed the working "
                                    f"dtype {dtype} to {np.result_type(result)}")
            elif kind == 1:
                x = env[step.arg]
                x = x if isinstance(x, np.ndarray) else np.asarray(x)
                if step.op == "max":
                    env[step.name] = x.max(axis=extra, keepdims=True)
                else:
                    total = x.sum(axis=extra, keepdims=True)
                    if step.op == "mean":
                        total = total / math.prod(lengths[a] for a in step.over)
                    env[step.name] = total
            elif kind == 2:
                x = env[step.arg]
                for i, j, old, new in extra:
                    x = np.swapaxes(x, i, j)
                    lengths[new] = lengths[old]
                env[step.name] = x
            elif kind == 3:
                i, j = step.axes
                eye = np.eye(lengths[i], dtype=dtype if numpy_backend else object)
                env[step.name] = self._full(eye, (i, j))
            else:                                   # one-hot rows; class ids are always an input of the program
                ids = np.asarray(arrays[extra])
                if ids.dtype == object:          # ids passed as engine numbers: exact small integers
                    ids = np.frompyfunc(lambda t: int(float(t.mid() if hasattr(t, "mid") else t)), 1, 1)(ids)
                ids = ids.astype(np.int64)
                eye = np.eye(lengths[step.axis], dtype=dtype if numpy_backend else np.int64)
                hot = eye[ids] if numpy_backend else eye[ids].astype(object)
                env[step.name] = self._full(hot, (*form.inputs[extra].axes, step.axis))
        outs = []
        for name, labels in self._outputs:
            shape = tuple(lengths[a] for a in labels)
            value = env[name]
            full = full_shape(labels, shape, position)
            if np.shape(value) != full:         # a step constant along some axis: broadcast (a view)
                value = np.broadcast_to(value, full)
            outs.append(value.reshape(shape) if isinstance(value, np.ndarray) else np.reshape(value, shape))
        return tuple(outs)


_SPECIALISED = 256       # specialised runners kept per kernel (one per distinct input shapes)


def _sum_in_order(x: np.ndarray, shape: tuple) -> np.ndarray:
    """``np.add.reduce(x, axes, keepdims=True)`` of an object array ``x`` whose elements all go to one
    output element (at most one dimension longer than 1), as numpy computes it — ``x[0] + x[1] + …`` in
    index order — as an object array of ``shape`` (all 1s)."""
    it = iter(x.flat)
    out = np.empty(shape, dtype=object)
    out.flat[0] = sum(it, next(it))
    return out


def _inline(fn, prefix: str, call_args: list, bind) -> tuple[list, list] | None:
    """The body of the lambdified step function ``fn`` written for the straight-line code, or ``None`` when
    ``fn`` is anything else (then it is called).  The lines are ``fn``'s own source (``sympy.lambdify``
    keeps it) with its parameters replaced by ``call_args`` (names or expressions, evaluated once each, in
    order, as a call would), its local names prefixed by ``prefix`` and the globals it reads bound by
    ``bind(name, value)``; the last line is the returned expression.  So the operations and their order are
    exactly those of the call.  Only a plain body is taken: assignments to new names, then one return.
    Returns (lines, the temporaries they assign, for the caller to free after the result)."""
    code = getattr(fn, "__code__", None)
    if not isinstance(fn, types.FunctionType) or not code.co_filename.startswith("<lambdifygenerated-") \
            or fn.__defaults__ or fn.__kwdefaults__ or fn.__closure__:
        return None
    try:
        tree = ast.parse(inspect.getsource(fn))
    except (OSError, SyntaxError, TypeError):
        return None
    fdef = tree.body[0] if len(tree.body) == 1 else None
    if not isinstance(fdef, ast.FunctionDef) or fdef.decorator_list or fdef.args.vararg or fdef.args.kwarg \
            or fdef.args.kwonlyargs or fdef.args.posonlyargs or len(fdef.args.args) != len(call_args):
        return None
    *assigns, last = fdef.body
    if not isinstance(last, ast.Return) or last.value is None or not all(
            isinstance(a, ast.Assign) and len(a.targets) == 1 and isinstance(a.targets[0], ast.Name)
            for a in assigns):
        return None
    params = [a.arg for a in fdef.args.args]
    local = {a.targets[0].id for a in assigns}
    if local & set(params) or any(isinstance(node, _SCOPES) for node in ast.walk(fdef) if node is not fdef):
        return None
    lines, names, temporaries = [], {}, []
    for k, (name, arg) in enumerate(zip(params, call_args)):
        if arg.isidentifier():
            names[name] = arg
        else:                                   # an expression (a constant at this precision): once, first
            names[name] = f"{prefix}{k}"
            lines.append(f"{prefix}{k} = {arg}")
            temporaries.append(names[name])
    for name in dict.fromkeys(a.targets[0].id for a in assigns):
        names[name] = prefix + name
        temporaries.append(prefix + name)
    for node in ast.walk(fdef):
        if isinstance(node, ast.Name) and node.id not in names:
            if node.id in fn.__globals__:
                value = fn.__globals__[node.id]
            elif hasattr(builtins, node.id):
                value = getattr(builtins, node.id)
            else:
                return None
            names[node.id] = bind(node.id, value)
    for node in ast.walk(fdef):
        if isinstance(node, ast.Name):
            node.id = names[node.id]
    lines += [ast.unparse(a) for a in assigns]
    lines.append(ast.unparse(last.value))
    return lines, temporaries


_SCOPES = (ast.Lambda, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.ListComp, ast.SetComp,
           ast.DictComp, ast.GeneratorExp, ast.NamedExpr, ast.Global, ast.Nonlocal, ast.Yield, ast.YieldFrom,
           ast.Await)


def _dtype_changed(form_name: str, step_name: str):
    def fail(dtype, result):
        raise TypeError(f"step {step_name!r} of formulation {form_name!r} changed the working "
                        f"dtype {dtype} to {np.result_type(result)}")
    return fail


def _delta(kernel: Kernel, step, lengths: dict):
    (i, j), numpy_backend = step.axes, kernel.backend == "numpy"

    def delta(dtype):
        eye = np.eye(lengths[i], dtype=dtype if numpy_backend else object)
        return kernel._full(eye, (i, j))
    return delta


def _one_hot(kernel: Kernel, step, index: int, lengths: dict):
    axes, numpy_backend = (*kernel.form.inputs[index].axes, step.axis), kernel.backend == "numpy"

    def one_hot(ids, dtype):                # one-hot rows; class ids are always an input of the program
        ids = np.asarray(ids)
        if ids.dtype == object:          # ids passed as engine numbers: exact small integers
            ids = np.frompyfunc(lambda t: int(float(t.mid() if hasattr(t, "mid") else t)), 1, 1)(ids)
        ids = ids.astype(np.int64)
        eye = np.eye(lengths[step.axis], dtype=dtype if numpy_backend else np.int64)
        hot = eye[ids] if numpy_backend else eye[ids].astype(object)
        return kernel._full(hot, axes)
    return one_hot


_CONSTANT_BITS = (1 << 14) + 256      # π and e for the ball / MPFR engines: beyond any working precision used


@lru_cache(maxsize=None)
def _gmpy2_namespace() -> dict:
    import gmpy2
    with gmpy2.context(gmpy2.get_context(), precision=_CONSTANT_BITS):
        pi, e = gmpy2.const_pi(), gmpy2.exp(1)
    return {"exp": gmpy2.exp, "log": gmpy2.log, "sqrt": gmpy2.sqrt, "mpf": gmpy2.mpfr, "fabs": abs,
            "log1p": gmpy2.log1p, "tanh": gmpy2.tanh, "pi": pi, "e": e, "E": e}


@lru_cache(maxsize=None)
def _arb_namespace() -> dict:
    import flint
    from flint import arb
    with flint.ctx.workprec(_CONSTANT_BITS):
        pi, e = arb.pi(), arb(1).exp()
    return {"exp": arb.exp, "log": arb.log, "sqrt": arb.sqrt, "mpf": arb, "fabs": abs, "_ipow": _ipow,
            "log1p": arb.log1p, "tanh": arb.tanh, "pi": pi, "e": e, "E": e}


_NAMESPACES = {"gmpy2": _gmpy2_namespace, "arb": _arb_namespace}
_PRINTER_SETTINGS = {"fully_qualified_modules": False, "inline": True, "allow_unknown_functions": True,
                     "user_functions": {}}
BACKENDS = ("numpy", "mpmath", "gmpy2", "arb")


def _last_uses(form: Formulation) -> dict[int, list[str]]:
    """{step position: values read for the last time there} — outputs are never freed."""
    last = {}
    for position, step in enumerate(form.steps):
        if isinstance(step, Elementwise):
            reads = form.free_names(step)
        elif isinstance(step, (Reduce, Relabel, OneHot)):
            reads = [step.arg]
        else:
            reads = []
        for name in reads:
            last[name] = position
    freed: dict[int, list[str]] = {}
    for name, position in last.items():
        if name not in form.outputs:
            freed.setdefault(position, []).append(name)
    return freed


def source_code(form: Formulation) -> str:
    """The numpy program a formulation runs, as Python text: one line per reduction and the lambdified
    source of each elementwise step (exactly what :class:`Kernel` executes)."""
    kernel = Kernel(form, "numpy")
    lines = [f"# {form.name}: {form.summary}",
             "# arrays carry one dimension per axis of " + repr(form.axis_order) + " (length 1 where constant)"]
    lines += [f"{size} = dtype.type({' * '.join('len_' + a for a in form.size_axes(size))})" for size in form.sizes]
    for step in form.steps:
        if isinstance(step, Elementwise):
            src = inspect.getsource(kernel.functions[step.name]).strip().splitlines()
            body = [l.strip() for l in src[1:]]
            consts = kernel.constants[step.name]
            args = ", ".join(form.free_names(step) + list(form.sizes) + [f"const_{i}" for i in range(len(consts))])
            lines += [f"const_{i} = dtype.type({c!r})" for i, c in enumerate(consts)]
            if len(body) == 1:
                lines.append(f"{step.name} = {body[0].removeprefix('return ').strip()}")
            else:
                lines.append(f"def _{step.name}({args}):")
                lines += ["    " + l for l in body]
                lines.append(f"{step.name} = _{step.name}({args})")
        elif isinstance(step, Reduce):
            axis = tuple(kernel.position[a] for a in step.over)
            call = "max" if step.op == "max" else "sum"
            line = f"{step.name} = numpy.{call}({step.arg}, axis={axis}, keepdims=True)"
            if step.op == "mean":
                line += " / " + " * ".join(f"len_{a}" for a in step.over)
            lines.append(line)
        elif isinstance(step, Relabel):
            expr = step.arg
            for old, new in step.mapping:
                expr = f"numpy.swapaxes({expr}, {kernel.position[old]}, {kernel.position[new]})"
            lines.append(f"{step.name} = {expr}  # relabel {dict(step.mapping)}")
        elif isinstance(step, Delta):
            lines.append(f"{step.name} = numpy.eye(len_{step.axes[0]}, dtype=dtype)  # Kronecker delta over {step.axes}")
        elif isinstance(step, OneHot):
            lines.append(f"{step.name} = numpy.eye(len_{step.axis}, dtype=dtype)[{step.arg}]  # one-hot rows of class ids")
    lines.append("return " + ", ".join(form.outputs))
    return "\n".join(lines)
