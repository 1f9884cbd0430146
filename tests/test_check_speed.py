"""The checker's shortcuts change no number and no verdict.

* ``judge_example`` accepts an input from the normwise bound, or from the componentwise bound without
  its radius term, before computing the rest of the tolerance: on inputs drawn by the checker's own
  strategies and outputs placed around both bounds, its findings equal those of the full test.
* ``Truth``'s tolerances, computed part by part on demand, are bit for bit the definition written out
  here from the building blocks (sensitivities, ball radii, the stable formulation's achieved error, ulps).
* The strategies' cheap ``one_of`` makes the choices ``st.one_of`` makes: replaying one's choices through
  the other gives the same values (Hypothesis's internal replay; skipped if that API moves).
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from derive import get_op
from numeric import strategies
from numeric.arguments import check_arguments
from numeric.check import judge
from numeric.condition import rounding_bounds, sensitivities
from numeric.dtypes import finfo, resolve_dtype
from numeric.evaluate import evaluate
from numeric.metrics import ulps_at

OPS = ["softmax_backward", "cross_entropy_backward", "batchnorm_backward", "layer_norm_backward"]


def _describe(findings):
    return [(f.kind, f.severity, f.message, None if f.worst is None else
             (f.worst.output, f.worst.index, f.worst.excess, f.worst.tolerance, f.worst.bound, f.worst.kappa))
            for f in findings]


@pytest.mark.parametrize("dtype", ["bfloat16", "float32", "float64"])
@pytest.mark.parametrize("name", OPS)
def test_the_quick_acceptance_gives_the_findings_of_the_full_test(name, dtype):
    op, dt = get_op(name), resolve_dtype(dtype)
    outcomes = set()

    @settings(max_examples=25, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategies.op_inputs(name, dtype=dtype), st.sampled_from([0.0, 0.5, 0.9, 1.1, 2.0, 50.0]),
           st.integers(0, 2 ** 32 - 1))
    def run(args, scale, seed):
        rounded = check_arguments(op, args, dt)
        truth = judge.Truth(op, rounded, dt)
        rng = np.random.default_rng(seed)
        outs = []
        for ref, tol, ntol in zip(truth.ref64, truth.componentwise, truth.normwise):
            # each element at `scale` times one of its two bounds (or 0), either side of the reference
            with np.errstate(all="ignore"):
                bound = np.where(rng.random(np.shape(ref)) < 0.5, tol, ntol) * rng.choice([0.0, 1.0, 1.0], np.shape(ref))
                got = ref + scale * np.where(np.isfinite(bound), bound, 0.0) * rng.choice([-1.0, 1.0], np.shape(ref))
            outs.append(np.asarray(got).astype(dt))

        def fn(*_):
            return tuple(outs) if len(outs) > 1 else outs[0]

        quick, _ = judge.judge_example(fn, op, dt, args, judge.TruthCache())
        original = judge._all_accepted
        judge._all_accepted = lambda *a: False
        try:
            full, _ = judge.judge_example(fn, op, dt, args, judge.TruthCache())
        finally:
            judge._all_accepted = original
        assert _describe(quick) == _describe(full)
        outcomes.add(bool(quick))

    run()
    assert outcomes == {True, False}          # both accepted and flagged inputs were compared


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("name", ["softmax_backward", "layer_norm_backward", "batchnorm_backward"])
def test_truth_tolerances_are_the_definition_bit_for_bit(name, dtype):
    op, dt = get_op(name), resolve_dtype(dtype)
    rng = np.random.default_rng(7)
    lengths = {"b": 3, "k": 6, "n": 5, "d": 4}
    args = tuple(0.5 if not i.axes else (3.0 * rng.standard_normal([lengths[a] for a in i.axes]) + 1.0)
                 for i in op.inputs)
    rounded = check_arguments(op, args, dt)
    truth = judge.Truth(op, rounded, dt)
    x64 = [np.asarray(a, dtype=np.float64) for a in rounded]
    u = float(finfo(dt).eps) / 2
    c = 4 + (lengths["k"] if op.independent_axis == "b" else lengths["d"] if op.independent_axis == "n" else lengths["n"])
    sens = sensitivities(name, *x64)
    radii = rounding_bounds(name, *x64, dtype=dt)
    sens, radii = (sens, radii) if isinstance(sens, tuple) else ((sens,), (radii,))
    stable = op.stable_formulation.name
    achieved = [np.zeros(np.shape(r)) for r in truth.ref64]
    for inputs in (rounded, [judge._one_ulp_apart(a) if a.ndim else a for a in rounded]):
        outs = evaluate(name, *inputs, dtype=dt, formulation=stable)
        for k, (got, ref) in enumerate(zip(outs if isinstance(outs, tuple) else (outs,), truth.ref64)):
            g = np.asarray(got).astype(np.float64)
            achieved[k] = np.maximum(achieved[k], np.where(np.isfinite(g), np.abs(g - ref), np.inf))
    for k, ref in enumerate(truth.refs):
        r = radii[k] if u < judge.LOW_PRECISION_U else np.minimum(radii[k], judge.ACHIEVED_FACTOR * achieved[k])
        want = c * (u * sens[k] + r + ulps_at(ref, dt, truth.ref64[k]))
        assert np.array_equal(truth.componentwise[k], want)
        lower = c * (u * sens[k] + ulps_at(ref, dt, truth.ref64[k]))
        assert np.array_equal(truth.lower_componentwise[k], lower) and np.all(lower <= want)


def _replayed(old, new, seeds=range(40)):
    """For each seed: (value of ``old`` from random choices, value of ``new`` from the same choices,
    whether ``new`` used exactly those choices)."""
    try:
        from random import Random

        from hypothesis.control import BuildContext
        from hypothesis.internal.conjecture.data import ConjectureData

        def draw(strategy, data):
            with BuildContext(data, wrapped_test=None, is_final=True):
                value = data.draw(strategy)
            data.freeze()
            return value

        out = []
        for seed in seeds:
            data = ConjectureData(random=Random(seed))
            a = draw(old, data)
            replay = ConjectureData.for_choices(data.choices)
            b = draw(new, replay)
            out.append((a, b, replay.choices == data.choices))
        return out
    except (ImportError, TypeError, AttributeError) as exc:       # Hypothesis internals moved
        pytest.skip(f"Hypothesis's choice replay is not available: {exc}")


def test_cheap_one_of_makes_the_choices_of_st_one_of():
    pairs = [
        (st.just(0.0) | st.floats(2.0 ** -20, 1) | st.floats(-1, -2.0 ** -20), strategies._unit_elements()),
        (hnp.arrays(np.float64, (3, 5), elements=st.just(0.0) | st.floats(2.0 ** -20, 1) | st.floats(-1, -2.0 ** -20)),
         strategies._unit((3, 5))),
        (st.tuples(*[st.sampled_from([1.0, 0.0, 1e-3, 100.0]) | st.floats(0, 100.0)] * 5).map(np.array),
         strategies._dense((5,), strategies._SpecialOrFloat((1.0, 0.0, 1e-3, 100.0), 0.0, 100.0))),
        (hnp.arrays(np.float64, (20,), elements=st.sampled_from([0.0, 1.0, 9.0]) | st.floats(-9.0, 9.0)),
         strategies._dense((20,), strategies._SpecialOrFloat((0.0, 1.0, 9.0), -9.0, 9.0))),
        (st.sampled_from([1.0, 0.5, 2.0, 0.1, 10.0]) | st.floats(0.05, 20.0), strategies._TEMPERATURES),
    ]
    for old, new in pairs:
        kinds = set()
        for a, b, same_choices in _replayed(old, new):
            assert same_choices and np.array_equal(a, b)
            kinds.add(np.isin(np.asarray(a), [0.0, 1.0, 1e-3, 100.0, 9.0, 0.5, 2.0, 0.1, 10.0]).any())
        assert kinds == {True, False}              # specials and drawn floats both came up
