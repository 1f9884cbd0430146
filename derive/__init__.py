"""gradaudit.derive — symbolic half: ops, formulations, derivations, proofs, lambdified kernels.

Never imports ``numeric``.  An op is defined with :func:`define_op` (a forward definition plus
formulations, invariants and known mistakes) and :func:`define_backward` (its vector–Jacobian product,
derived by reverse mode), then made known with :func:`register` — the built-in families in
``derive/ops`` and a user's ``--ops FILE.py`` alike.
"""
from .codegen import Kernel, source_code
from .define import define_backward, define_op, invariant, mistake
from .op import DerivationStep, GenericClaim, Invariant, Mistake, Op, Param
from .program import Delta, Elementwise, Formulation, Input, OneHot, Reduce, Relabel, value_symbol
from .proof import ProofResult, is_zero, prove_op
from .registry import OPS, families, get_op, load_ops, register, register_parametric

__all__ = ["OPS", "get_op", "register", "register_parametric", "load_ops", "families", "define_op",
           "define_backward", "invariant", "mistake", "Op", "Param", "Mistake", "Invariant", "DerivationStep",
           "GenericClaim", "Input", "Elementwise", "Reduce", "Relabel", "Delta", "OneHot", "Formulation",
           "value_symbol", "Kernel", "source_code", "prove_op", "ProofResult", "is_zero"]

from .ops import builtin as _builtin  # noqa: E402,F401  (registers the built-in families)
