"""Per-entry proofs at sizes whole-matrix ``simplify`` cannot reach (measured here: ~190 s for the K = 10
softmax-Jacobian difference, K = 20 never finished).  Prints seconds for every formulation of the
Jacobian at K = 10 and K = 20, uncached.

Run: ``python bench/bench_proofs.py``.
"""
import time
from dataclasses import replace

from derive import OPS, prove_op


def main():
    op = OPS["softmax_jacobian"]
    for k in (10, 20):
        sized = replace(op, proof_lengths=({"b": 1, "k": k, "i": k, "j": k},), invariants=(), generic=())
        start = time.perf_counter()
        result = prove_op(sized, use_cache=False)
        entries = k * k * len(op.formulations)
        print(f"softmax_jacobian K={k}: {entries} entries ({len(op.formulations)} formulations) proved={result.proved} "
              f"in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
