"""Proofs that formulations equal the brute-force derivative of the forward definition.

Whole-matrix ``simplify`` does not scale (K = 10 softmax Jacobian: ~190 s; K = 20: never), so every
proof here is *per entry* and uses a normal form instead of ``simplify``:

1. ``exp(a + b − log u)`` → ``E_a · E_b / u`` with positive generators ``E_a = e^a``;
2. ``log(u)`` of a rational function in the generators → sum of logs of its factors, ``log E_a = a``;
3. ``u**(p/q)`` → ``R_u**p`` with one positive generator ``R_u = u**(1/q)`` per expanded base ``u``;
4. the difference is then a rational function of symbols and generators: its numerator, reduced
   modulo ``R_u**q − u`` for each root generator, is zero exactly when the difference is.

Each step is an identity of real analysis on the domain (exponentials and square roots positive), so a
zero normal form is a proof.  Results are cached on disk (:mod:`derive.cache`: integrity-checked, a
corrupt or mismatching entry is recomputed), keyed by the SymPy version and the exact expressions, so a
second run costs a file read.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import sympy as sp

from . import cache
from .op import Op
from .symbolic import input_symbols, run_symbolic

__all__ = ["is_zero", "ProofResult", "prove_op", "cache_dir"]


def _generator(prefix: str, key: sp.Expr) -> sp.Symbol:
    digest = hashlib.sha1(sp.srepr(key).encode()).hexdigest()[:10]
    name = f"{prefix}_{key.name}" if isinstance(key, sp.Symbol) else f"{prefix}_{digest}"
    return sp.Symbol(name, positive=True)


def _normal_form(expr: sp.Expr) -> tuple[sp.Expr, dict]:
    """``expr`` as a rational function of symbols and generators, and {root generator: (base, q)}."""
    logs_of: dict[sp.Symbol, sp.Expr] = {}
    roots: dict[sp.Symbol, tuple[sp.Expr, int]] = {}

    def exp_rule(e):
        out = sp.Integer(1)
        for term in sp.Add.make_args(sp.expand(e.args[0])):
            coeff, rest = term.as_coeff_Mul()
            if isinstance(rest, sp.log) and coeff.is_Integer:
                out *= rest.args[0] ** coeff
            elif coeff.is_Integer:
                gen = _generator("E", rest)
                logs_of[gen] = rest
                out *= gen ** coeff
            else:
                out *= sp.exp(term)
        return out

    def log_rule(e):
        arg = sp.factor(sp.together(e.args[0]))
        return sp.expand_log(sp.log(arg), force=True).xreplace(
            {sp.log(g): a for g, a in logs_of.items()})

    def root_rule(e):
        base = sp.expand(sp.together(e.base))
        gen = _generator("R", sp.Tuple(base, e.exp.q))
        roots[gen] = (base, e.exp.q)
        return gen ** e.exp.p

    expr = expr.replace(lambda e: isinstance(e, sp.exp), exp_rule)
    expr = expr.replace(lambda e: isinstance(e, sp.log), log_rule)
    expr = expr.replace(lambda e: isinstance(e, sp.log), log_rule)   # logs exposed by the first pass
    expr = expr.replace(lambda e: e.is_Pow and e.exp.is_Rational and not e.exp.is_Integer, root_rule)
    return expr, roots


def is_zero(expr: sp.Expr) -> bool:
    """True when ``expr`` is identically zero (on the real domain where exps and roots are positive)."""
    rational, roots = _normal_form(expr)
    numerator = sp.numer(sp.cancel(sp.together(rational)))
    for gen, (base, q) in roots.items():
        numerator = sp.rem(sp.expand(numerator), gen ** q - base, gen)
    return sp.expand(numerator) == 0


@dataclass
class ProofResult:
    """Outcome of proving one op: per formulation the sizes proved, plus the generic-size claims."""
    op: str
    sizes: dict            # formulation -> list of {"lengths":…, "proved": bool}
    generic: list          # [{"statement":…, "proved": bool, "setting":…}]
    invariants: list       # [{"name":…, "sizes":[…], "proved": bool}]
    seconds: float
    cached: bool = False

    @property
    def proved(self) -> bool:
        return (all(r["proved"] for rs in self.sizes.values() for r in rs)
                and all(g["proved"] for g in self.generic)
                and all(i["proved"] for i in self.invariants))


def cache_dir() -> Path:
    """Where proofs are cached: ``$GRADAUDIT_CACHE`` or ``~/.cache/gradaudit``."""
    return cache.cache_dir()


def _cache_inputs(op: Op) -> str:
    """The text a proof depends on: SymPy's version and every expression proved."""
    parts = [sp.__version__, op.name, repr(op.proof_lengths)]
    for name, form in op.formulations.items():
        parts.append(name + repr(form.steps))
    parts += [repr(g.lhs) + repr(g.rhs) + g.method for g in op.generic]
    parts += [repr(i.residual.steps) for i in op.invariants]
    return "\n".join(parts)


def _cache_key(op: Op) -> str:
    return cache.inputs_digest("proof", _cache_inputs(op))[:24]


_FIELDS = ("op", "sizes", "generic", "invariants", "seconds")


def _valid_proof(op: Op):
    """A cached proof must be of ``op``: its formulations, sizes, claims and invariants, with bool verdicts."""
    def validate(payload: bytes) -> bool:
        data = json.loads(payload)
        proved = [r["proved"] for rs in data["sizes"].values() for r in rs]
        proved += [g["proved"] for g in data["generic"]] + [i["proved"] for i in data["invariants"]]
        return (sorted(data) == sorted(_FIELDS) and data["op"] == op.name
                and list(data["sizes"]) == list(op.formulations)
                and all(len(rs) == len(op.proof_lengths) for rs in data["sizes"].values())
                and len(data["generic"]) == len(op.generic) and len(data["invariants"]) == len(op.invariants)
                and all(isinstance(p, bool) for p in proved))
    return validate


def _entries_equal(a: dict, b: dict) -> bool:
    return all(is_zero(a[idx] - b[idx]) for idx in b)


def _prove_fresh(op: Op) -> ProofResult:
    start = time.perf_counter()
    sizes = {}
    for lengths in op.proof_lengths:
        axes = op.reference.axes()
        inputs = {i.name: input_symbols(i.name, axes[i.name], lengths) for i in op.inputs}
        truth = op.definition(lengths, inputs)
        for name, form in op.formulations.items():
            got = run_symbolic(form, lengths, inputs)
            ok = all(_entries_equal(got[o.name], truth[o.name]) for o in op.outputs)
            sizes.setdefault(name, []).append({"lengths": lengths, "proved": ok})
    generic = [{"statement": g.statement, "setting": g.setting,
                "proved": bool(is_zero(g.lhs - g.rhs) if g.method == "normal_form" else sp.simplify(g.lhs - g.rhs) == 0)}
               for g in op.generic]
    invariants = []
    for inv in op.invariants:
        proved_at = []
        for lengths in op.proof_lengths:
            axes = op.reference.axes()
            inputs = {i.name: input_symbols(i.name, axes[i.name], lengths) for i in op.inputs}
            if inv.normalize:
                inputs = inv.normalize(inputs)
            outs = run_symbolic(op.reference, lengths, inputs)
            res = run_symbolic(inv.residual, lengths, {**inputs, **{o.name: outs[o.name] for o in op.outputs}})
            proved_at.append((lengths, all(is_zero(e) for e in res["r"].values())))
        invariants.append({"name": inv.name, "latex": inv.latex,
                           "sizes": [l for l, _ in proved_at], "proved": all(ok for _, ok in proved_at)})
    return ProofResult(op.name, sizes, generic, invariants, time.perf_counter() - start)


def prove_op(op: Op, *, use_cache: bool = True) -> ProofResult:
    """Prove every formulation of ``op`` equal to its definition at ``op.proof_lengths``, the generic
    claims, and the invariants.  Cached in :func:`cache_dir` unless ``use_cache`` is False."""
    path = cache_dir() / f"proof-{op.name}-{_cache_key(op)}.json"
    inputs = _cache_inputs(op) if use_cache else ""
    payload = cache.load(path, "proof", inputs, validate=_valid_proof(op)) if use_cache else None
    if payload is not None:
        return ProofResult(**json.loads(payload), cached=True)
    result = _prove_fresh(op)
    if use_cache:
        data = {k: getattr(result, k) for k in _FIELDS}
        cache.store(path, "proof", inputs, json.dumps(data).encode("utf-8"))
    return result
