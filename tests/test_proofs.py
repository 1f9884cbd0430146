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


def _scaled_form(name="scaled", expr=None):
    from derive.program import Input
    x = Input("x", ("k",), role="logits")
    return Formulation(name, "y = N x", (x,), (Elementwise("y", expr if expr is not None else v("N") * v("x")),),
                       ("y",), ("k",), {"N": "k"})


def test_symbolic_steps_remembered_across_runs_are_never_confused():
    from derive.symbolic import run_symbolic
    a, b = sp.Symbol("a", real=True), sp.Symbol("b", real=True)
    form = _scaled_form()
    assert run_symbolic(form, {"k": 2}, {"x": {(0,): a, (1,): b}})["y"] == {(0,): 2 * a, (1,): 2 * b}
    # same step, other lengths (so other size N) and other entries: other values
    assert run_symbolic(form, {"k": 3}, {"x": {(0,): b, (1,): a, (2,): a}})["y"] == {(0,): 3 * b, (1,): 3 * a, (2,): 3 * a}
    # same step and entries equal as numbers but not as expressions (a symbol with other assumptions)
    a_pos = sp.Symbol("a", positive=True)
    got = run_symbolic(form, {"k": 2}, {"x": {(0,): a_pos, (1,): b}})["y"]
    assert got[(0,)].free_symbols == {a_pos}
    # a caller changing what it got back changes nothing for the next run
    got[(0,)] = sp.Integer(7)
    assert run_symbolic(form, {"k": 2}, {"x": {(0,): a, (1,): b}})["y"][(0,)] == 2 * a
    # a max becomes a symbol named after its step: two steps of the same reduction are two symbols
    from derive.program import Input, Reduce
    x = Input("x", ("b", "k"), role="logits")
    for name in ("m", "w"):
        shift = Formulation(name, "max", (x,), (Reduce(name, "max", "x", ("k",)),), (name,), ("b", "k"))
        assert run_symbolic(shift, {"b": 1, "k": 2})[name] == {(0,): sp.Symbol(f"{name}_0", real=True)}


def _backward_of(definition):
    from derive import define_backward, define_op
    from derive.program import Input
    forward = define_op("asym", inputs=(Input("x", ("k",), role="logits"),), outputs=(Input("y", ("k",)),),
                        axis_order=("k",), formulations={"f": ("y = x²", [Elementwise("y", v("x") ** 2)])},
                        definition=definition, proof_lengths=({"k": 3},))
    return define_backward(forward, "asym_backward")


def test_the_brute_force_gradient_reuses_a_derivative_only_under_an_exact_symmetry():
    x = [sp.Symbol(f"x_{i}", real=True) for i in range(3)]
    dy = [sp.Symbol(f"dy_{i}", real=True) for i in range(3)]
    given = {"x": {(i,): x[i] for i in range(3)}, "dy": {(i,): dy[i] for i in range(3)}}
    # not symmetric under swapping indices: every entry is its own derivative (index 2 weighs 3)
    asym = _backward_of(lambda lengths, g: {"y": {(i,): (i + 1) * g["x"][(i,)] ** 2 for i in range(3)}})
    assert asym.definition({"k": 3}, given)["dx"] == {(i,): 2 * (i + 1) * dy[i] * x[i] for i in range(3)}
    # symmetric, entries coupled through a sum: the renamed derivative is SymPy's own, expression for expression
    s = sp.Add(*x)
    sym = _backward_of(lambda lengths, g: {"y": {(i,): sp.exp(g["x"][(i,)]) / sp.exp(s) for i in range(3)}})
    total = sp.Add(*[dy[i] * sp.exp(x[i]) / sp.exp(s) for i in range(3)])
    assert sym.definition({"k": 3}, given)["dx"] == {(i,): sp.diff(total, x[i]) for i in range(3)}


def test_the_batchnorm_brute_force_gradient_is_sympy_diff_entry_by_entry():
    op = OPS["batchnorm_backward"]
    forward = OPS[op.grad_of]
    lengths = {"n": 3, "d": 1}
    from derive import proof
    inputs = next(proof._symbolic_inputs(op, lengths))
    truth = op.definition(lengths, inputs)
    y = forward.definition(lengths, {**inputs, "beta": {(0,): sp.Symbol("beta_0", real=True)}})["y"]
    total = sp.Add(*[inputs["dy"][idx] * e for idx, e in y.items()])
    assert truth["dx"] == {idx: sp.diff(total, s) for idx, s in inputs["x"].items()}
    assert truth["dgamma"] == {idx: sp.diff(total, s) for idx, s in inputs["gamma"].items()}


def _shared_tree():
    a, b, c = (sp.Symbol(n, real=True) for n in "abc")
    denom = sp.exp(a) + sp.exp(b) + sp.exp(c)                # shared by every term, as in a softmax
    return (a, b, c), sum(sp.exp(t) / denom * sp.log(denom) - sp.sqrt(1 + t ** 2) for t in (a, b, c))


def test_walks_that_visit_a_shared_subexpression_once_give_sympys_results():
    from derive import proof
    from derive.symbolic import xreplace_once
    (a, b, c), expr = _shared_tree()
    assert proof._atoms(expr, sp.exp, sp.Pow) == expr.atoms(sp.exp, sp.Pow)
    for query, value in [(lambda e: isinstance(e, sp.exp), lambda e: sp.exp(2 * e.args[0])),
                         (lambda e: isinstance(e, sp.log), lambda e: e.args[0] - 1),
                         (lambda e: e.is_Pow and e.exp == sp.S.Half, lambda e: e.base)]:
        assert proof._replace(expr, query, value) == expr.replace(query, value)
    swap = {a: b, b: a}
    done: dict = {}
    assert xreplace_once(expr, swap, done) == expr.xreplace(swap) == expr       # symmetric: same expression
    assert xreplace_once(sp.exp(a) / (1 + b), swap, done) == sp.exp(b) / (1 + a)   # same rule, memo reused
    assert xreplace_once(sp.exp(a) / (1 + b), {a: c}, {}) == sp.exp(c) / (1 + b)   # other rule, new memo


def test_an_invariant_residual_is_run_without_the_steps_it_does_not_need():
    from derive.program import Delta, Input, Relabel
    from derive.symbolic import run_symbolic
    x = Input("x", ("k",), role="logits")
    steps = (Elementwise("scale", sp.Abs(v("x")) + 1), Relabel("x_i", "x", (("k", "i"),)), Delta("d", ("k", "i")),
             Elementwise("r", v("x") * v("d")))
    form = Formulation("res", "r", (x,), steps, ("r", "scale"), ("k", "i"))
    full = run_symbolic(form, {"k": 2})
    part = run_symbolic(form, {"k": 2}, only=("r",))
    assert part["r"] == full["r"] and full["r"][(0, 1)] == 0
    assert "scale" in full and "scale" not in part and "x_i" not in part     # Delta still knows i's length


def test_value_axes_are_those_of_the_formulation_object_asked():
    from dataclasses import replace
    from derive.program import Reduce
    from derive.symbolic import value_axes
    form = _scaled_form()
    assert value_axes(form) == form.axes() == {"x": ("k",), "y": ("k",)}
    other = replace(form, steps=form.steps + (Reduce("t", "sum", "y", ("k",)),), outputs=("t",))
    assert value_axes(other) == {"x": ("k",), "y": ("k",), "t": ()} and "t" not in value_axes(form)
