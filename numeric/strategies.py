"""Hypothesis strategies for every op's inputs, exact in the requested dtype.

Plain functions with keyword-only arguments, validated when called (``InvalidArgument`` naming the
argument), like ``hypothesis.extra.numpy``.  Arrays are returned in the requested dtype, so every value
is exactly representable there; shrinking goes towards small batches, centred logits and unit spreads.

    from hypothesis import given
    from numeric import strategies as gs

    @given(gs.op_inputs("softmax", dtype="float32"))
    def test_my_softmax(args):
        (z,) = args
        ...
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra import numpy as hnp

from derive import get_op

from .dtypes import finfo, resolve_dtype

__all__ = ["logits", "labels", "upstream", "batchnorm_batches", "op_inputs", "domain_of"]


def _dtype(dtype):
    try:
        return resolve_dtype(dtype)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def _size_range(name, value, low=1, high=4096):
    if (not isinstance(value, tuple) or len(value) != 2 or not all(isinstance(v, int) for v in value)
            or not low <= value[0] <= value[1] <= high):
        raise InvalidArgument(f"{name} must be a (min, max) tuple of ints with {low} ≤ min ≤ max ≤ {high}; got {value!r}")
    return value


def _positive(name, value, *, allow_zero=False):
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise InvalidArgument(f"{name} must be a finite number {'≥' if allow_zero else '>'} 0; got {value!r}")
    return float(value)


_TINY = 2.0 ** -20


@lru_cache(maxsize=None)
def _index(n: int) -> st.SearchStrategy:
    return st.integers(0, n - 1)


def _one_of(*branches: st.SearchStrategy) -> st.SearchStrategy:
    """``st.one_of(*branches)`` for branches that are never empty, with the same choices — the branch's
    index as an integer in [0, len − 1], then the branch's own — so it generates and shrinks the same
    way (towards the first branch).  Hypothesis's ``one_of`` builds and validates a filtered
    ``sampled_from`` of its branches on every draw, which was 40 % of the cost of drawing a scalar."""
    index = _index(len(branches))

    def pick(draw):
        return draw(branches[draw(index)])
    return st.composite(pick)()


def _arrays(shape, elements: st.SearchStrategy) -> st.SearchStrategy:
    """``hnp.arrays(np.float64, shape, elements=elements)`` for ``elements`` drawn by a composite
    (:func:`_one_of`, :func:`_unit_elements`), whose values ``hnp.arrays`` cannot tell reusable: the fill
    is given as the elements themselves, which is what ``hnp.arrays`` uses for the ``st.one_of`` of plain
    values the composite stands for (without it every element would be drawn, a different search)."""
    return hnp.arrays(np.float64, shape, elements=elements, fill=elements)


@lru_cache(maxsize=None)
def _unit_elements():
    """0 or a value with 2^-20 ≤ |v| ≤ 1: data, not underflow experiments (no 1e-300 upstream gradients).
    Strategies here are built once and reused (``lru_cache``): the same strategy draws the same choices,
    and a reused one skips Hypothesis's per-object validation, which dominated the cost of a draw."""
    positive, negative, index = st.floats(_TINY, 1), st.floats(-1, -_TINY), _index(3)

    def unit(draw):                      # the choices of st.just(0.0) | positive | negative
        which = draw(index)
        return 0.0 if which == 0 else draw(positive if which == 1 else negative)
    return st.composite(unit)()


#: Arrays up to this many elements are drawn element by element (so Hypothesis shrinks each value);
#: larger ones from a drawn seed, which costs one draw instead of one per element.
ELEMENTWISE_LIMIT = 64


#: ... for the arrays that scale the data rather than being it (upstream gradients, weights) in
#: ``op_inputs``: always from a seed.  An element-wise array costs about 40 Hypothesis choices (≈ 1 ms
#: per example), and a limit above 0 puts a change of draw structure in the way of shrinking the shape
#: (a shape that crosses it re-reads every later choice), which kept an overflow counterexample at 5
#: elements instead of 2.
SECONDARY_ELEMENTWISE_LIMIT = 0


@lru_cache(maxsize=4096)
def _unit(shape, limit=None):
    """Values in [−1, 1] (see :func:`_unit_elements`): element by element for arrays up to ``limit``
    elements (default ``ELEMENTWISE_LIMIT``), from a seeded generator (uniform, with some exact zeros and
    ±1) for larger ones."""
    shape = tuple(shape)
    if int(np.prod(shape)) <= (ELEMENTWISE_LIMIT if limit is None else limit):
        return _arrays(shape, _unit_elements())

    def from_seed(seed):
        rng = np.random.default_rng(seed)
        u = rng.uniform(-1, 1, shape)
        special = rng.random(shape)
        u = np.where(special < 0.05, 0.0, np.where(special > 0.97, np.sign(u), u))
        return np.where((u != 0) & (np.abs(u) < _TINY), _TINY, u)

    return st.integers(0, 2 ** 32 - 1).map(from_seed)


def _to_dtype(values: np.ndarray, dt: np.dtype) -> np.ndarray:
    big = float(finfo(dt).max)
    return np.clip(values, -big, big).astype(dt)


def logits(*, dtype="float32", batch=(1, 8), classes=(1, 16), max_abs=1e4, max_spread=100.0,
           shape=None) -> st.SearchStrategy:
    """Logit arrays z of shape (B, K): a common offset up to ``max_abs`` (the huge-logit regime) plus
    a spread up to ``max_spread`` (dynamic range inside a row), with ties and near-ties.

    ``shape`` fixes (B, K) instead of drawing it from ``batch`` × ``classes``.
    """
    dt = _dtype(dtype)
    _size_range("batch", batch)
    _size_range("classes", classes)
    _positive("max_abs", max_abs, allow_zero=True)
    _positive("max_spread", max_spread, allow_zero=True)
    if shape is not None and (len(shape) != 2 or min(shape) < 1):
        raise InvalidArgument(f"shape must be (B, K) with B, K ≥ 1; got {shape!r}")

    @st.composite
    def draw_logits(draw):
        b, k = shape or (draw(st.integers(*batch)), draw(st.integers(*classes)))
        # plain float ranges (Hypothesis already favours their end points): a failure then shrinks
        # towards the smallest offending magnitude, e.g. just past ln(max) for an overflow
        offset = draw(st.floats(-max_abs, max_abs))
        spread = draw(st.floats(0, max_spread))
        u = draw(_unit((b, k)))
        if draw(st.booleans()):
            u = np.round(u * 4) / 4          # a handful of distinct values: ties and near-ties
        return _to_dtype(offset + spread * u, dt)

    return draw_logits()


def labels(*, dtype="float32", shape, kind="any", smoothing=0.1) -> st.SearchStrategy:
    """Label rows y of ``shape`` (B, K): ``"one_hot"``, ``"soft"`` (random, normalized), ``"smoothed"``
    ((1 − α) one-hot + α/K) or ``"any"`` of these."""
    dt = _dtype(dtype)
    kinds = ("one_hot", "soft", "smoothed")
    if kind != "any" and kind not in kinds:
        raise InvalidArgument(f"kind must be 'any' or one of {kinds}; got {kind!r}")
    if not 0 <= smoothing < 1:
        raise InvalidArgument(f"smoothing must be in [0, 1); got {smoothing!r}")
    return _labels(dt, tuple(int(n) for n in shape), kind, smoothing)


@lru_cache(maxsize=4096)
def _labels(dt, shape, kind, smoothing):
    b, k = shape
    kinds = ("one_hot", "soft", "smoothed")
    which_kind = st.sampled_from(kinds)
    hot_ids = hnp.arrays(np.int64, (b,), elements=st.integers(0, k - 1))
    weights = hnp.arrays(np.float64, (b, k), elements=st.floats(0.01, 1))

    @st.composite
    def draw_labels(draw):
        which = draw(which_kind) if kind == "any" else kind
        hot = np.eye(k)[draw(hot_ids)]
        if which == "one_hot":
            y = hot
        elif which == "smoothed":
            y = (1 - smoothing) * hot + smoothing / k
        else:
            w = draw(weights)
            y = w / w.sum(axis=1, keepdims=True)
        return y.astype(dt)

    return draw_labels()


def upstream(*, dtype="float32", shape, scale=1.0) -> st.SearchStrategy:
    """Upstream gradients dy of ``shape``, entries in [−scale, scale]."""
    dt = _dtype(dtype)
    _positive("scale", scale)
    return _upstream(dt, tuple(int(n) for n in shape), float(scale))


@lru_cache(maxsize=4096)
def _upstream(dt, shape, scale, limit=None):
    return _unit(shape, limit).map(lambda u: _to_dtype(scale * u, dt))


def batchnorm_batches(*, dtype="float32", rows=(1, 64), features=(1, 8), max_mean=1e4, max_var=1e8,
                      eps=(1e-5, 1e-3)) -> st.SearchStrategy:
    """Batch-norm inputs (x, gamma, dy, eps): per feature a mean up to ``max_mean`` and a variance from
    0 (constant column) through tiny to ``max_var``; N from ``rows``, D from ``features``."""
    dt = _dtype(dtype)
    _size_range("rows", rows)
    _size_range("features", features, high=512)
    _positive("max_mean", max_mean, allow_zero=True)
    _positive("max_var", max_var)
    if not eps or not all(isinstance(e, float) and e >= 0 for e in eps):
        raise InvalidArgument(f"eps must be a non-empty tuple of floats ≥ 0; got {eps!r}")
    max_std = math.sqrt(max_var)

    @st.composite
    def draw_batch(draw):
        n, d = draw(st.integers(*rows)), draw(st.integers(*features))
        means = draw(hnp.arrays(np.float64, (d,), elements=st.sampled_from([0.0, 1.0, max_mean]) | st.floats(-max_mean, max_mean)))
        stds = draw(hnp.arrays(np.float64, (d,), elements=st.sampled_from([1.0, 0.0, 1e-3, max_std]) | st.floats(0, max_std)))
        x = _to_dtype(means + stds * draw(_unit((n, d))), dt)
        gamma = _to_dtype(2 * draw(_unit((d,))), dt)
        dy = _to_dtype(draw(_unit((n, d))), dt)
        return x, gamma, dy, draw(st.sampled_from(eps))

    return draw_batch()


#: Legacy names of axis-length ranges, by the role of the op's first input: (range of the other axes,
#: range of the independent axis) — ``batch``/``classes`` for logits, ``rows``/``features`` for activations.
_LEGACY_SIZES = {"batch": "independent", "classes": "other", "rows": "other", "features": "independent"}
_ROLE_LIMITS = ("max_abs", "max_spread", "max_mean", "max_var", "eps", "scale")


def domain_of(op, dtype=None, **limits) -> dict:
    """The op's domain (``op.domain`` merged with ``limits``), with every axis given a length range and,
    when ``dtype`` is float16, activations narrowed so that x² stays finite (|x| ≤ √max / 8: no float16
    implementation could compute a variance beyond)."""
    the_op = get_op(op)
    domain = {"max_abs": 1e4, "max_spread": 100.0, "max_mean": 1e4, "max_var": 1e8, **the_op.domain}
    sizes = dict(domain.get("sizes", {}))
    for key, value in limits.items():
        if key in _LEGACY_SIZES:
            which = _LEGACY_SIZES[key]
            for axis in the_op.reference.axis_order:
                if (axis == the_op.independent_axis) == (which == "independent"):
                    sizes[axis] = value
        elif key == "sizes":
            sizes.update(value)
        else:
            domain[key] = value
    for axis in the_op.reference.axis_order:
        sizes.setdefault(axis, (1, 8))
    domain["sizes"] = sizes
    if dtype is not None and any(i.role == "activations" for i in the_op.inputs):
        root = math.sqrt(float(finfo(_dtype(dtype)).max))
        domain["max_mean"] = min(domain["max_mean"], root / 8)
        domain["max_var"] = min(domain["max_var"], (root / 8) ** 2)
    return domain


def _activations(draw, shape, axes, independent, max_mean, max_var, dt):
    """Data with a mean and a std per slice of the independent axis (0, tiny and huge among them)."""
    means, stds = _statistics(tuple(n if a == independent else 1 for a, n in zip(axes, shape)), max_mean, max_var)
    return _to_dtype(draw(means) + draw(stds) * draw(_unit(shape)), dt)


@lru_cache(maxsize=4096)
def _statistics(per, max_mean, max_var):
    """Strategies of the per-slice means and stds of :func:`_activations` (shape ``per``)."""
    max_std = math.sqrt(max_var)
    return (_dense(per, _SpecialOrFloat((0.0, 1.0, max_mean), -max_mean, max_mean)),
            _dense(per, _SpecialOrFloat((1.0, 0.0, 1e-3, max_std), 0.0, max_std)))


class _SpecialOrFloat:
    """A scalar that is one of ``specials`` or a float in [lo, hi]: the choices of
    ``st.sampled_from(specials) | st.floats(lo, hi)`` (the branch, then the special's index or the float).
    ``draw_from(draw)`` makes them directly inside a composite (two plain draws per value instead of four
    nested strategies); ``strategy`` is the same as a strategy of its own."""

    def __init__(self, specials: tuple, lo: float, hi: float):
        self.specials, self.floats = specials, st.floats(lo, hi)
        self.which = _index(len(specials))
        self.strategy = _one_of(st.sampled_from(specials), self.floats)

    def draw_from(self, draw) -> float:
        return self.specials[draw(self.which)] if draw(_index(2)) == 0 else draw(self.floats)


#: Per-slice statistics of up to this many slices are drawn densely (see :func:`_dense`).
DENSE_LIMIT = 16


def _dense(shape, elements: _SpecialOrFloat):
    """float64 arrays of ``shape`` with every element drawn on its own: up to ``DENSE_LIMIT`` elements one
    after the other (the choices of a fixed-length tuple: half those of ``hnp.arrays``, whose sparse draw
    spends an index and a continue flag on each element); larger ones by ``hnp.arrays`` (about 10 drawn
    elements and a fill value)."""
    n = int(np.prod(shape))
    if n > DENSE_LIMIT:
        return _arrays(shape, elements.strategy)

    def dense(draw):
        return np.array([elements.draw_from(draw) for _ in range(n)], dtype=np.float64).reshape(shape)
    return st.composite(dense)()


_BOOLEANS = st.booleans()
_TEMPERATURES = _one_of(st.sampled_from([1.0, 0.5, 2.0, 0.1, 10.0]), st.floats(0.05, 20.0))
_FRACTIONS = _one_of(st.sampled_from([0.1, 0.0, 1.0]), st.floats(0.0, 1.0))


@lru_cache(maxsize=4096)
def _class_ids(shape, classes):
    return hnp.arrays(np.int64, shape, elements=st.integers(0, classes - 1))


@lru_cache(maxsize=4096)
def _positives(shape):
    return hnp.arrays(np.float64, shape, elements=st.floats(1e-3, 100.0))


def op_inputs(op, *, dtype="float32", **limits) -> st.SearchStrategy:
    """Argument tuples for ``op`` (a name, possibly with conventions — in brackets or as keyword
    arguments such as ``reduction="mean"`` —, or an Op) in ``dtype``, in the op's
    signature order, drawn by the *role* of each input (``derive.program.ROLES``): logits, label rows,
    class ids, upstream gradients, activations with per-feature statistics, weights, ε, temperatures…

    ``limits`` override the op's ``domain``: ``max_abs``/``max_spread`` (logits), ``max_mean``/``max_var``
    (activations), ``sizes={"b": (1, 8)}`` per axis, or the legacy ``batch``/``classes``/``rows``/``features``.
    """
    from derive.registry import parametric_spec

    base = op.base_name if hasattr(op, "base_name") else str(op).split("[")[0]
    conventions = {p.name for p in parametric_spec(base)}
    params = {k: limits.pop(k) for k in list(limits) if k in conventions}
    try:
        the_op = get_op(op, **params)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
    dt = _dtype(dtype)
    unknown = [k for k in limits if k not in _LEGACY_SIZES and k not in _ROLE_LIMITS and k != "sizes"]
    if unknown:
        raise InvalidArgument(f"{unknown[0]} is not a limit of op_inputs; use one of "
                              f"{', '.join((*_ROLE_LIMITS, 'sizes', *_LEGACY_SIZES))}")
    domain = domain_of(the_op, dt, **limits)
    for axis, rng in domain["sizes"].items():
        _size_range(f"sizes[{axis!r}]", tuple(rng))
    _positive("max_abs", domain["max_abs"], allow_zero=True)
    _positive("max_spread", domain["max_spread"], allow_zero=True)
    _positive("max_mean", domain["max_mean"], allow_zero=True)
    _positive("max_var", domain["max_var"])
    eps_choices = domain.get("eps", (1e-5, 1e-3))
    if not eps_choices or not all(isinstance(e, float) and e >= 0 for e in eps_choices):
        raise InvalidArgument(f"eps must be a non-empty tuple of floats ≥ 0; got {eps_choices!r}")
    axes_used = [a for a in the_op.reference.axis_order if any(a in i.axes for i in the_op.inputs)]
    # strategies that do not depend on the drawn lengths, built once (see _unit_elements)
    length_of = {a: st.integers(*domain["sizes"][a]) for a in axes_used}
    offsets, spreads = st.floats(-domain["max_abs"], domain["max_abs"]), st.floats(0, domain["max_spread"])
    eps_strategy = st.sampled_from(eps_choices)

    @st.composite
    def draw_args(draw):
        lengths = {a: draw(length_of[a]) for a in axes_used}
        args = []
        for inp in the_op.inputs:
            shape = tuple(lengths[a] for a in inp.axes)
            role = inp.role or "logits"
            if role == "logits":
                offset = draw(offsets)
                spread = draw(spreads)
                u = draw(_unit(shape))
                if draw(_BOOLEANS):
                    u = np.round(u * 4) / 4          # a handful of distinct values: ties and near-ties
                args.append(_to_dtype(offset + spread * u, dt))
            elif role in ("labels", "onehot"):
                k = shape[-1] if shape else 1
                kind = "one_hot" if role == "onehot" else "any"
                flat = draw(labels(dtype=dt, shape=(int(np.prod(shape[:-1])), k), kind=kind))
                args.append(flat.reshape(shape))
            elif role == "index":
                args.append(draw(_class_ids(shape, lengths[inp.classes])))
            elif role == "upstream":
                args.append(draw(_upstream(dt, shape, 1.0, SECONDARY_ELEMENTWISE_LIMIT)))
            elif role == "activations":
                args.append(_activations(draw, shape, inp.axes, the_op.independent_axis, domain["max_mean"],
                                         domain["max_var"], dt))
            elif role == "weight":
                args.append(_to_dtype(2 * draw(_unit(shape, SECONDARY_ELEMENTWISE_LIMIT)), dt) if shape
                            else float(2 * draw(_unit_elements())))
            elif role == "positive":
                values = draw(_positives(shape))
                args.append(_to_dtype(values, dt) if shape else float(values))
            elif role == "eps":
                args.append(draw(eps_strategy))
            elif role == "temperature":
                args.append(draw(_TEMPERATURES))
            elif role == "fraction":
                args.append(draw(_FRACTIONS))
            else:
                raise InvalidArgument(f"op {the_op.name!r}: input {inp.name!r} has role {role!r}, which has no strategy")
        return tuple(args)

    return draw_args()
