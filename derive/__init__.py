"""gradaudit.derive — symbolic half: ops, formulations, derivations, proofs, lambdified kernels.

Never imports ``numeric``.  An op is defined with :func:`define_op` (a forward definition plus
formulations, invariants and known mistakes) and :func:`define_backward` (its vector–Jacobian product,
derived by reverse mode), then made known with :func:`register` — the built-in families in
``derive/ops`` and a user's ``--ops FILE.py`` alike.

Names are imported on first use (PEP 562), and the built-in families are built when the op set is
first read, so ``import derive`` does not import SymPy.
"""
from .lazy import lazy_names

#: Public name → the submodule that defines it.
_HOMES = {
    "Kernel": "codegen", "source_code": "codegen",
    "define_backward": "define", "define_op": "define", "invariant": "define", "mistake": "define",
    "DerivationStep": "op", "GenericClaim": "op", "Invariant": "op", "Mistake": "op", "Op": "op", "Param": "op",
    "Delta": "program", "Elementwise": "program", "Formulation": "program", "Input": "program",
    "OneHot": "program", "Reduce": "program", "Relabel": "program", "value_symbol": "program",
    "ProofResult": "proof", "is_zero": "proof", "prove_op": "proof",
    "OPS": "registry", "families": "registry", "get_op": "registry", "load_ops": "registry",
    "register": "registry", "register_parametric": "registry",
}

__all__ = ["OPS", "get_op", "register", "register_parametric", "load_ops", "families", "define_op",
           "define_backward", "invariant", "mistake", "Op", "Param", "Mistake", "Invariant", "DerivationStep",
           "GenericClaim", "Input", "Elementwise", "Reduce", "Relabel", "Delta", "OneHot", "Formulation",
           "value_symbol", "Kernel", "source_code", "prove_op", "ProofResult", "is_zero"]


__getattr__, __dir__ = lazy_names(__name__, _HOMES, __all__)
