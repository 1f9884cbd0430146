import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.errors import InvalidArgument

import numeric
from derive import OPS
from numeric import strategies as gs
from numeric.invariants import check_invariants


@pytest.mark.parametrize("dtype", list(numeric.DTYPES))
@settings(max_examples=25, deadline=None)
@given(data=__import__("hypothesis").strategies.data())
def test_logits_are_exact_in_the_dtype(dtype, data):
    z = data.draw(gs.logits(dtype=dtype))
    assert z.dtype == numeric.DTYPES[dtype] and z.ndim == 2 and np.isfinite(z.astype(np.float64)).all()


@pytest.mark.parametrize("call, word", [
    (lambda: gs.logits(batch=(0, 3)), "batch"),
    (lambda: gs.logits(classes=(3, 2)), "classes"),
    (lambda: gs.logits(max_abs=-1), "max_abs"),
    (lambda: gs.logits(dtype="int8"), "dtype"),
    (lambda: gs.labels(shape=(2, 3), kind="hard"), "kind"),
    (lambda: gs.labels(shape=(2, 3), smoothing=1.5), "smoothing"),
    (lambda: gs.batchnorm_batches(rows=(1, 10**6)), "rows"),
    (lambda: gs.batchnorm_batches(max_var=0), "max_var"),
    (lambda: gs.batchnorm_batches(eps=()), "eps"),
    (lambda: gs.op_inputs("softmaxx"), "op"),
])
def test_bad_strategy_arguments_name_the_argument(call, word):
    with pytest.raises(InvalidArgument, match=word):
        call()


@pytest.mark.parametrize("op", list(OPS))
@settings(max_examples=30, deadline=None)
@given(data=__import__("hypothesis").strategies.data())
def test_stable_float64_outputs_satisfy_the_derived_invariants(op, data):
    limits = {"max_abs": 50.0, "max_spread": 20.0} if OPS[op].family != "batchnorm" else {"max_mean": 10.0, "max_var": 100.0}
    args = data.draw(gs.op_inputs(op, dtype="float64", **limits))
    out = numeric.evaluate(op, *args, dtype="float64", formulation=OPS[op].stable or None)
    check_invariants(op, args, out, dtype="float64")


def test_invariant_check_flags_a_wrong_output():
    z = np.array([[1.0, 2.0, 3.0]])
    with pytest.raises(AssertionError, match="rows sum to 1"):
        check_invariants("softmax", (z,), numeric.evaluate("softmax", z, dtype="float64") * 1.01)
