"""gradaudit.derive — symbolic half: ops, formulations, derivations, proofs, lambdified kernels.

Never imports ``numeric``.  Adding an op means one module under ``derive/ops`` and one entry in ``OPS``.
"""
from .codegen import Kernel, source_code
from .op import Op
from .ops.batchnorm import BATCHNORM, BATCHNORM_BACKWARD
from .ops.cross_entropy import CROSS_ENTROPY, CROSS_ENTROPY_BACKWARD
from .ops.softmax import SOFTMAX, SOFTMAX_BACKWARD, SOFTMAX_JACOBIAN
from .proof import ProofResult, is_zero, prove_op

__all__ = ["OPS", "get_op", "Op", "Kernel", "source_code", "prove_op", "ProofResult", "is_zero"]

#: Every op gradaudit knows, by name, in the order reports list them.
OPS: dict[str, Op] = {op.name: op for op in (SOFTMAX, SOFTMAX_JACOBIAN, SOFTMAX_BACKWARD, CROSS_ENTROPY,
                                            CROSS_ENTROPY_BACKWARD, BATCHNORM, BATCHNORM_BACKWARD)}


def get_op(name: str) -> Op:
    """The op called ``name``; ``ValueError`` naming the known ops otherwise."""
    if not isinstance(name, str) or name not in OPS:
        raise ValueError(f"op must be one of {', '.join(OPS)}; got {name!r}")
    return OPS[name]
