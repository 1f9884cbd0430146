import pytest
import sympy as sp

from derive import OPS, is_zero, prove_op
from derive.op import GenericClaim
from derive.ops import softmax as softmax_mod
from derive.program import Elementwise, Formulation, value_symbol as v


@pytest.mark.parametrize("name", list(OPS))
def test_every_formulation_generic_claim_and_invariant_is_proved(name):
    result = prove_op(OPS[name], use_cache=False)
    assert result.proved, result
    for rows in result.sizes.values():
        assert len(rows) >= 3


def test_proof_sizes_cover_the_issue_ranges():
    ks = {l["k"] for l in OPS["softmax_jacobian"].proof_lengths}
    ns = {l["n"] for l in OPS["batchnorm_backward"].proof_lengths}
    assert {2, 3, 4, 5} <= ks and {2, 3, 4} <= ns


def _replace_formulation(op, name, form):
    from dataclasses import replace
    return replace(op, formulations={**op.formulations, name: form})


def test_a_wrong_jacobian_is_not_proved():
    # Forgetting the Kronecker delta: J = −s_i s_j everywhere.
    good = softmax_mod._jacobian_form("naive")
    steps = good.steps[:-1] + (Elementwise("J", -v("s_i") * v("s_j")),)
    wrong = Formulation("wrong", "J = −s_i s_j", good.inputs, steps, good.outputs, good.axis_order)
    op = _replace_formulation(OPS["softmax_jacobian"], "wrong", wrong)
    result = prove_op(op, use_cache=False)
    assert not all(r["proved"] for r in result.sizes["wrong"])
    assert all(r["proved"] for r in result.sizes["naive"])


def test_a_batchnorm_gradient_missing_one_over_n_is_not_proved():
    op = OPS["batchnorm_backward"]
    good = op.formulations["compact"]
    dx = good.steps[-1]
    wrong_dx = Elementwise("dx", v("gamma") * v("rstd") * (v("N") * v("dy") - v("dbeta") - v("xhat") * v("dgamma")))
    wrong = Formulation("wrong", "no 1/N", good.inputs, good.steps[:-1] + (wrong_dx,), good.outputs,
                        good.axis_order, good.sizes)
    assert dx.name == "dx"
    result = prove_op(_replace_formulation(op, "wrong", wrong), use_cache=False)
    assert not any(r["proved"] for r in result.sizes["wrong"])


@pytest.mark.parametrize("expr, expected", [
    (sp.exp(sp.Symbol("a", real=True) - sp.Symbol("b", real=True)) * sp.exp(sp.Symbol("b", real=True))
     - sp.exp(sp.Symbol("a", real=True)), True),
    (sp.log(sp.exp(sp.Symbol("a", real=True)) * 2) - sp.Symbol("a", real=True) - sp.log(2), True),
    (1 / sp.sqrt(sp.Symbol("u", positive=True)) ** 3 - sp.Symbol("u", positive=True) ** sp.Rational(-3, 2), True),
    (sp.exp(sp.Symbol("a", real=True)) - sp.Symbol("a", real=True) - 1, False),
    (sp.sqrt(sp.Symbol("u", positive=True) + 1) - sp.sqrt(sp.Symbol("u", positive=True)) - 1, False),
])
def test_is_zero_decides_identities_and_non_identities(expr, expected):
    assert is_zero(expr) is expected


def test_a_false_generic_claim_is_reported():
    z = sp.Symbol("z_i", real=True)
    R = sp.Symbol("R", positive=True)
    s = sp.exp(z) / (sp.exp(z) + R)
    bad = GenericClaim("wrong", sp.diff(s, z), s * (1 + s), "test")
    assert not is_zero(bad.lhs - bad.rhs)


def test_proofs_are_cached_and_the_cache_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADAUDIT_CACHE", str(tmp_path))
    first = prove_op(OPS["softmax"])
    second = prove_op(OPS["softmax"])
    assert not first.cached and second.cached
    assert second.proved and second.sizes == first.sizes
    assert list(tmp_path.glob("proof-softmax-*.json"))


def test_indexed_generic_claims_are_proved_and_a_wrong_one_is_not():
    from dataclasses import replace
    from derive.ops import softmax as sm
    claim = sm.JACOBIAN_GENERIC[0]
    assert claim.method == "simplify" and claim.lhs.has(sp.Sum)
    wrong = replace(claim, rhs=-sm._s_indexed * sp.exp(sm._zI_[sm._jj]) / sm._S_indexed)   # delta dropped
    op = replace(OPS["softmax_jacobian"], generic=(claim, wrong))
    result = prove_op(op, use_cache=False)
    assert [g["proved"] for g in result.generic] == [True, False]


def _softmax_entries(k):
    from derive import proof
    op = OPS["softmax"]
    lengths = {"b": 1, "k": k}
    inputs = next(proof._symbolic_inputs(op, lengths))
    truth = op.definition(lengths, inputs)["s"]
    return proof, op, lengths, inputs, truth


def test_an_entry_wrong_only_off_index_zero_is_caught_despite_relabelling():
    # Entry 2 holds entry 0's value: renamed by swapping indices 0 and 2 its difference is s_2 − s_0, not 0.
    proof, op, lengths, inputs, truth = _softmax_entries(3)
    relabel = proof._Relabel(op, lengths, inputs, (op.formulations["shifted"],))
    wrong = {**truth, (0, 2): truth[(0, 0)]}
    assert not proof._entries_equal(wrong, truth, ("b", "k"), relabel)
    assert proof._entries_equal(truth, truth, ("b", "k"), relabel)
    # the renaming is a bijection of the input symbols (swap z_0_0 and z_0_2, keep z_0_1)
    z = inputs["z"]
    assert relabel.of(("b", "k"), (0, 2)) == {z[(0, 0)]: z[(0, 2)], z[(0, 2)]: z[(0, 0)]}


def test_entries_equal_up_to_relabelling_are_decided_once(monkeypatch):
    proof, op, lengths, inputs, truth = _softmax_entries(4)
    form = op.formulations["shifted"]
    from derive.symbolic import run_symbolic
    got = run_symbolic(form, lengths, inputs)["s"]
    calls = []
    real = proof._is_zero_case
    monkeypatch.setattr(proof, "_is_zero_case", lambda e: calls.append(e) or real(e))
    proof._is_zero_memo.cache_clear()
    assert proof._entries_equal(got, truth, ("b", "k"), proof._Relabel(op, lengths, inputs, (form,)))
    assert len(calls) == 1                 # 4 entries, one normal form
    proof._is_zero_memo.cache_clear()
    calls.clear()
    assert proof._entries_equal(got, truth)         # without relabelling: every entry on its own
    assert len(calls) == 4
