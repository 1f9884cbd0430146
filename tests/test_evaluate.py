import numpy as np
import pytest

import numeric
from derive import OPS
from tests import independent

RNG_SEED = 20261126
# The first seven ops, whose independent implementations live in tests/independent.py (other families and
# conventions are compared with PyTorch in tests/test_families.py and tests/test_conventions.py).
ORIGINAL = ("softmax", "softmax_jacobian", "softmax_backward", "cross_entropy", "cross_entropy_backward",
            "batchnorm", "batchnorm_backward")


def random_args(op_name, rng, b=6, k=9, n=7, d=4):
    z = rng.normal(scale=3.0, size=(b, k))
    if op_name == "softmax_backward":
        return (z, rng.normal(size=(b, k)))
    if op_name in ("cross_entropy", "cross_entropy_backward"):
        y = rng.random((b, k))
        return (z, y / y.sum(axis=1, keepdims=True))
    if op_name.startswith("softmax"):
        return (z,)
    x = rng.normal(loc=2.0, scale=1.5, size=(n, d))
    gamma = rng.normal(size=d)
    if op_name == "batchnorm":
        return (x, gamma, rng.normal(size=d), 1e-5)
    return (x, gamma, rng.normal(size=(n, d)), 1e-5)


def as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("op_name, formulation",
                         [(o, f) for o in ORIGINAL for f in OPS[o].formulations])
def test_float64_matches_an_independent_implementation(op_name, formulation):
    rng = np.random.default_rng(RNG_SEED)
    for _ in range(5):
        args = random_args(op_name, rng)
        got = as_tuple(numeric.evaluate(op_name, *args, dtype="float64", formulation=formulation))
        want = as_tuple(getattr(independent, op_name)(*args))
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12 * np.abs(w).max())


@pytest.mark.parametrize("op_name, formulation",
                         [(o, f) for o in ORIGINAL for f in OPS[o].formulations])
def test_float64_matches_pytorch_autograd(op_name, formulation):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(RNG_SEED + 1)
    args = random_args(op_name, rng)
    t = [torch.tensor(a, dtype=torch.float64, requires_grad=True) if np.ndim(a) else a for a in args]
    if op_name == "softmax":
        want = (torch.softmax(t[0], dim=1),)
    elif op_name == "softmax_jacobian":
        want = (torch.stack([torch.autograd.functional.jacobian(lambda r: torch.softmax(r, 0), row)
                             for row in t[0]]),)
    elif op_name == "softmax_backward":
        want = torch.autograd.grad(torch.softmax(t[0], dim=1), t[0], t[1])
    elif op_name == "cross_entropy":
        want = (torch.nn.functional.cross_entropy(t[0], t[1], reduction="sum"),)
    elif op_name == "cross_entropy_backward":
        want = torch.autograd.grad(torch.nn.functional.cross_entropy(t[0], t[1], reduction="sum"), t[0])
    else:
        x, gamma = t[0], t[1]
        beta = t[2] if op_name == "batchnorm" else torch.zeros_like(gamma, requires_grad=True)
        y = torch.nn.functional.batch_norm(x, None, None, gamma, beta, training=True, eps=args[3])
        want = (y,) if op_name == "batchnorm" else torch.autograd.grad(y, (x, gamma, beta), t[2])
    got = as_tuple(numeric.evaluate(op_name, *args, dtype="float64", formulation=formulation))
    for g, w in zip(got, want):
        w = w.detach().numpy()
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12 * np.abs(w).max())


@pytest.mark.parametrize("dtype", list(numeric.DTYPES))
@pytest.mark.parametrize("op_name, formulation",
                         [(o, f) for o in ORIGINAL for f in OPS[o].formulations])
def test_every_step_keeps_the_working_dtype(op_name, formulation, dtype):
    args = random_args(op_name, np.random.default_rng(3))
    for out in as_tuple(numeric.evaluate(op_name, *args, dtype=dtype, formulation=formulation)):
        assert out.dtype == numeric.DTYPES[dtype]


def test_large_shapes_run_without_per_element_expansion():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4096, 1000)).astype(np.float32)
    s = numeric.evaluate("softmax", z, dtype="float32", formulation="shifted")
    assert s.shape == (4096, 1000) and s.dtype == np.float32
    np.testing.assert_allclose(s.sum(axis=1), 1, rtol=1e-5)
    x = rng.normal(size=(4096, 64))
    dx, dg, db = numeric.evaluate("batchnorm_backward", x, np.ones(64), x, 1e-5, dtype="bfloat16")
    assert dx.shape == (4096, 64) and dg.shape == db.shape == (64,)


GOOD_Z = np.zeros((2, 3))
BAD_INPUTS = [
    # (op, args, kwargs, exception, words the message must contain)
    ("softmaxx", (GOOD_Z,), {}, ValueError, ["op", "softmax"]),
    ("softmax", (GOOD_Z,), {"formulation": "stable"}, ValueError, ["formulation", "shifted"]),
    ("softmax", (GOOD_Z,), {"dtype": "float8"}, ValueError, ["dtype", "bfloat16"]),
    ("softmax", (GOOD_Z,), {"dtype": "int32"}, ValueError, ["dtype"]),
    ("softmax", (np.zeros(3),), {}, ValueError, ["'z'", "(B, K)"]),
    ("softmax", (np.zeros((2, 3), dtype=int),), {}, TypeError, ["'z'", "int"]),
    ("softmax", (np.zeros((0, 3)),), {}, ValueError, ["'z'", "empty"]),
    ("softmax", (GOOD_Z, GOOD_Z), {}, TypeError, ["1 argument"]),
    ("softmax_backward", (GOOD_Z, np.zeros((2, 4))), {}, ValueError, ["'dy'", "K = 4"]),
    ("batchnorm", (np.zeros((0, 2)), np.ones(2), np.ones(2), 1e-5), {}, ValueError, ["'x'", "empty"]),
    ("batchnorm", (np.zeros((4, 2)), np.ones(3), np.ones(2), 1e-5), {}, ValueError, ["'gamma'", "D = 3"]),
    ("batchnorm", (np.zeros((4, 2)), np.ones(2), np.ones(2), -1.0), {}, ValueError, ["'eps'", "≥ 0"]),
    ("batchnorm", (np.zeros((4, 2)), np.ones(2), np.ones(2), np.ones(2)), {}, ValueError, ["'eps'", "scalar"]),
    ("batchnorm_backward", (np.zeros((4, 2)), np.ones(2), "dy", 1e-5), {}, TypeError, ["'dy'"]),
]


@pytest.mark.parametrize("op, args, kwargs, exc, words", BAD_INPUTS)
def test_bad_input_names_the_argument(op, args, kwargs, exc, words):
    with pytest.raises(exc) as info:
        numeric.evaluate(op, *args, **kwargs)
    for w in words:
        assert w in str(info.value)


def test_a_kernel_lambdifies_each_step_when_first_used_and_once_per_process():
    from derive import Elementwise, Kernel, get_op
    form = get_op("softmax").stable_formulation
    first, second = Kernel(form, "numpy"), Kernel(form, "numpy")
    assert len(first.functions) == 0                    # nothing lambdified before a run needs it
    z = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(first(z), second(z))
    steps = [s.name for s in form.steps if isinstance(s, Elementwise)]
    assert set(first.functions) == set(steps)
    assert all(first.functions[s] is second.functions[s] for s in steps)     # the same function object


def test_an_arb_array_kernel_never_makes_the_per_element_functions_it_replaces(monkeypatch):
    import dataclasses

    from derive import Elementwise, codegen, get_op
    from numeric.engines import arb_arrays
    made = []
    real = codegen._lambdified
    monkeypatch.setattr(codegen, "_lambdified", lambda args, expr, backend: made.append(backend) or
                        real(args, expr, backend))
    form = dataclasses.replace(get_op("softmax").reference)         # a new object: not in array_kernel's cache
    kernel = arb_arrays.array_kernel(form)
    steps = [s.name for s in form.steps if isinstance(s, Elementwise)]
    functions = [kernel.functions[s] for s in steps]
    assert functions and made == []
    for name, function in zip(steps, functions):
        expr, args = kernel.lifted[name]
        assert function is arb_arrays._on_arrays(tuple(args), expr)
