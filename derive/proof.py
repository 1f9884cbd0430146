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
import itertools
import json
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import sympy as sp

from . import cache, polynomial
from .op import Op
from .program import Reduce
from .symbolic import input_symbols, run_symbolic, swap_renaming, value_axes, xreplace_once

__all__ = ["is_zero", "ProofResult", "prove_op", "cache_dir", "cached_proof", "store_proof", "proof_data"]


def _generator(prefix: str, key: sp.Expr) -> sp.Symbol:
    digest = hashlib.sha1(sp.srepr(key).encode()).hexdigest()[:10]
    name = f"{prefix}_{key.name}" if isinstance(key, sp.Symbol) else f"{prefix}_{digest}"
    return sp.Symbol(name, positive=True)


@lru_cache(maxsize=4096)
def _root_generator(base: sp.Expr, q: int) -> tuple[sp.Symbol, sp.Expr]:
    """The generator ``R_u`` standing for ``u**(1/q)`` and the expanded base ``u`` (once per process)."""
    base = sp.expand(sp.together(base))
    return _generator("R", sp.Tuple(base, q)), base


@lru_cache(maxsize=4096)
def _exp_product(arg: sp.Expr) -> tuple[sp.Expr, tuple]:
    """``exp(arg)`` as a product of powers of generators ``E_a = e^a`` (and of the arguments of logs in
    ``arg``), with the generators it introduced as ((E_a, a), …); once per process and argument."""
    out, gens = sp.Integer(1), []
    for term in sp.Add.make_args(sp.expand(arg)):
        coeff, rest = term.as_coeff_Mul()
        if isinstance(rest, sp.log) and coeff.is_Integer:
            out *= rest.args[0] ** coeff
        elif coeff.is_Integer:
            gen = _generator("E", rest)
            gens.append((gen, rest))
            out *= gen ** coeff
        else:
            out *= sp.exp(term)
    return out, tuple(gens)


@lru_cache(maxsize=4096)
def _log_sum(arg: sp.Expr) -> sp.Expr:
    """``log(arg)`` as a sum of logs of the factors of ``arg`` (once per process and argument)."""
    return sp.expand_log(sp.log(sp.factor(sp.together(arg))), force=True)


def _atoms(expr: sp.Expr, *types) -> set:
    """``expr.atoms(*types)`` visiting each distinct subexpression once (``atoms`` walks the tree, so a
    subexpression shared by many terms, such as a softmax denominator, is walked once per use)."""
    seen, stack, found = set(), [expr], set()
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if isinstance(node, types):
            found.add(node)
        stack.extend(node.args)
    return found


def _replace(expr: sp.Expr, query, value) -> sp.Expr:
    """``expr.replace(query, value)`` (bottom-up, simultaneous, as SymPy does it) rewriting each distinct
    subexpression once: the result of a subtree is a function of the subtree alone, so a subtree shared by
    many terms is rebuilt once and reused."""
    done: dict = {}

    def walk(rv):
        hit = done.get(rv)
        if hit is not None:
            return hit
        out, args = rv, rv.args
        if args:
            newargs = tuple(walk(a) for a in args)
            if args != newargs:
                out = rv.func(*newargs)
                if any(out == e and e != n for e, n in zip(args, newargs)):   # already rewritten: once only
                    done[rv] = out
                    return out
        if query(out):
            v = value(out)
            if v is not None and v != out:
                out = v
        done[rv] = out
        return out
    return walk(expr)


def _normal_form(expr: sp.Expr) -> tuple[sp.Expr, dict]:
    """``expr`` as a rational function of symbols and generators, and {root generator: (base, q)}."""
    logs_of: dict[sp.Symbol, sp.Expr] = {}
    roots: dict[sp.Symbol, tuple[sp.Expr, int]] = {}

    def exp_rule(e):
        out, gens = _exp_product(e.args[0])
        logs_of.update(gens)
        return out

    def log_rule(e):
        return _log_sum(e.args[0]).xreplace({sp.log(g): a for g, a in logs_of.items()})

    def root_rule(e):
        gen, base = _root_generator(e.base, e.exp.q)
        roots[gen] = (base, e.exp.q)
        return gen ** e.exp.p

    def is_root(e):
        return e.is_Pow and e.exp.is_Rational and not e.exp.is_Integer

    present = _atoms(expr, sp.exp, sp.log, sp.Pow)    # one walk; a rewrite walks and rebuilds the tree
    rewritten = False
    if any(isinstance(a, sp.exp) for a in present):
        expr, rewritten = _replace(expr, lambda e: isinstance(e, sp.exp), exp_rule), True
    if any(isinstance(a, sp.log) for a in present):   # exp_rule brings in no log
        expr = _replace(expr, lambda e: isinstance(e, sp.log), log_rule)
        expr = _replace(expr, lambda e: isinstance(e, sp.log), log_rule)   # logs exposed by the first pass
        rewritten = True
    if any(is_root(a) for a in (_atoms(expr, sp.Pow) if rewritten else present)):
        expr = _replace(expr, is_root, root_rule)
    return expr, roots


def _prepare(expr: sp.Expr) -> sp.Expr:
    """Functions the normal form does not know, in terms of ``exp``/``log``: ``tanh(u)`` →
    ``(e^{2u} − 1)/(e^{2u} + 1)``, ``log1p(u)`` → ``log(1 + u)``; floats as exact rationals; π, e and
    similar constants (and rationals with huge denominators) as positive symbols — an identity proved
    for every value of a constant holds for its value."""
    from sympy.codegen.cfunctions import log1p

    constants = (sp.Float, sp.NumberSymbol, sp.Rational)
    present = _atoms(expr, sp.tanh, log1p, *constants)  # one walk; a rewrite walks and rebuilds the tree
    if any(isinstance(a, (sp.tanh, log1p)) for a in present):
        expr = _replace(expr, lambda e: isinstance(e, sp.tanh), lambda e: 1 - 2 / (sp.exp(2 * e.args[0]) + 1))
        expr = _replace(expr, lambda e: isinstance(e, log1p), lambda e: sp.log(1 + e.args[0]))
        present = _atoms(expr, *constants)
    swap = {}
    for atom in present:
        if isinstance(atom, sp.Float):
            exact = sp.Rational(float(atom))
            swap[atom] = exact if exact.q <= 1 << 20 else sp.Symbol(f"c_{abs(hash(atom)) % 10**8}", positive=atom > 0)
        elif isinstance(atom, sp.NumberSymbol):
            swap[atom] = sp.Symbol(f"c_{atom}", positive=True)
        elif isinstance(atom, sp.Rational) and atom.q > 1 << 20:
            swap[atom] = sp.Symbol(f"c_{atom.p}_{atom.q}", positive=atom > 0)
    return xreplace_once(expr, swap, {}) if swap else expr


def _sign_cases(expr: sp.Expr) -> list[sp.Expr]:
    """``expr`` split into one case per sign of each symbol under ``Abs`` (|z| → z with z ≥ 0, −z with
    z ≤ 0, by z = ±p, p > 0); ``[expr]`` when there is none.  An ``Abs`` of anything but a plain symbol
    stays (and the proof fails unless it cancels)."""
    symbols = sorted({a.args[0] for a in _atoms(expr, sp.Abs) if a.args[0].is_Symbol}, key=str)
    if not symbols:
        return [expr]
    cases = []
    for signs in itertools.product((1, -1), repeat=len(symbols)):
        cases.append(xreplace_once(expr, {s: sign * sp.Symbol(f"{s.name}_abs", positive=True)
                                          for s, sign in zip(symbols, signs)}, {}))
    return cases


def is_zero(expr: sp.Expr) -> bool:
    """True when ``expr`` is identically zero (on the real domain where exps and roots are positive).

    Decided once per process for each distinct expression (an in-process memo: the answer depends on the
    expression alone)."""
    return _is_zero_memo(sp.sympify(expr))


@lru_cache(maxsize=8192)
def _is_zero_memo(expr: sp.Expr) -> bool:
    return all(_is_zero_case(case) for case in _sign_cases(_prepare(expr)))


def _is_zero_case(expr: sp.Expr) -> bool:
    if expr == 0:
        return True
    rational, roots = _normal_form(expr)
    if polynomial.available():
        return polynomial.numerator_reduces_to_zero(rational, roots)
    numerator = sp.numer(sp.together(rational))      # no cancel: p/q is 0 exactly when p is (q ≠ 0)
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
    mistakes: list = None  # [{"name":…, "differs": bool}]: each known mistake shown to differ from the truth
    cached: bool = False

    @property
    def proved(self) -> bool:
        return (all(r["proved"] for rs in self.sizes.values() for r in rs)
                and all(g["proved"] for g in self.generic)
                and all(i["proved"] for i in self.invariants)
                and all(m["differs"] for m in self.mistakes or ()))


def cache_dir() -> Path:
    """Where proofs are cached: ``$GRADAUDIT_CACHE`` or ``~/.cache/gradaudit``."""
    return cache.cache_dir()


def _cache_inputs(op: Op) -> str:
    """The text a proof depends on: SymPy's version and every expression proved (printed once per op
    object and process: printing every step of every formulation is most of a cache lookup; kept on the
    op itself, so it goes with the op)."""
    text = op.__dict__.get("_proof_inputs")
    if text is None:
        text = op.__dict__["_proof_inputs"] = _print_inputs(op)
    return text


def _print_inputs(op: Op) -> str:
    parts = [sp.__version__, repr(_FIELDS), op.name, repr(op.proof_lengths)]
    for name, form in op.formulations.items():
        parts.append(name + repr(form.steps))
    parts += [repr(g.lhs) + repr(g.rhs) + g.method for g in op.generic]
    parts += [repr(i.residual.steps) for i in op.invariants]
    parts += [m.name + repr(m.formulation.steps) for m in op.mistakes]
    return "\n".join(parts)


def _cache_key(op: Op) -> str:
    return cache.inputs_digest("proof", _cache_inputs(op))[:24]


_FIELDS = ("op", "sizes", "generic", "invariants", "seconds", "mistakes")


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
                and len(data["mistakes"]) == len(op.mistakes)
                and all(isinstance(p, bool) for p in proved))
    return validate


class _Relabel:
    """Renamings of the symbols of one proof size that swap two index values on some axes.

    The symbols are the inputs' elements (``x_2_0``) and the per-index symbols of the ``max`` reductions
    of ``forms`` (``m_1``), each known with its axes and index.  :meth:`of` gives, for an entry at ``idx``
    of a value with axes ``axes``, the simultaneous renaming that swaps index 0 with ``idx[a]`` on every
    axis ``a`` of the value (for every symbol carrying that axis), and only when that map is a permutation
    of real symbols (else no renaming).  An expression is identically zero exactly when its renamed copy
    is, so this is sound whatever the op.  Entries equal up to relabelling of indices (row 3 of a
    batch-norm gradient is row 0 with rows 0 and 3 swapped) then become the same expression as the entry
    at index 0 and are decided once (:func:`is_zero` remembers it); an entry whose renamed copy differs is
    simply decided on its own.  Nothing is assumed about the op's symmetry."""

    def __init__(self, op: Op, lengths: dict, inputs: dict, forms=()):
        self.family: dict[sp.Symbol, tuple] = {}      # symbol -> (name, axes, idx), first role seen
        self.members: dict[tuple, sp.Symbol] = {}      # (name, axes, idx) -> symbol
        self._made: dict = {}
        axes = value_axes(op.reference)
        for name, entries in inputs.items():
            for idx, sym in entries.items():
                if isinstance(sym, sp.Symbol) and name in axes:
                    self._add(sym, (name, tuple(axes[name]), idx))
        for form in (op.reference, *forms):
            form_axes = value_axes(form)
            for step in form.steps:
                if isinstance(step, Reduce) and step.op not in ("sum", "mean"):
                    step_axes = tuple(form_axes[step.name])
                    if not all(a in lengths for a in step_axes):
                        continue
                    for idx in itertools.product(*(range(lengths[a]) for a in step_axes)):
                        sym = sp.Symbol("_".join([step.name, *map(str, idx)]), real=True)
                        self._add(sym, (step.name, step_axes, idx))

    def _add(self, sym, key):
        if sym not in self.family and key not in self.members:
            self.family[sym], self.members[key] = key, sym

    def of(self, axes, idx) -> dict:
        """The renaming that swaps 0 and ``idx[k]`` on axis ``axes[k]`` ({} when there is nothing to swap
        or the map would not be a permutation of symbols)."""
        swap = tuple((a, i) for a, i in zip(axes, idx) if i)
        if not swap:
            return {}
        if swap not in self._made:
            self._made[swap] = swap_renaming(self.members, swap)
        return self._made[swap]


def _entries_equal(a: dict, b: dict, axes=(), relabel: _Relabel | None = None) -> bool:
    """Every entry of ``a`` equals the same entry of ``b`` (values with ``axes``), each difference renamed
    by ``relabel`` first (entries equal up to relabelling are then decided once)."""
    def renamed(idx, diff):
        rename = relabel.of(axes, idx) if relabel is not None else {}
        return xreplace_once(diff, rename, {}) if rename else diff
    return all(is_zero(renamed(idx, a[idx] - b[idx])) for idx in b)


def _symbolic_inputs(op: Op, lengths: dict):
    """Every assignment of symbolic inputs at ``lengths``: one with real symbols when the op has no
    integer input, else one per combination of class ids (enumerated: ids select, they do not vary)."""
    axes = value_axes(op.reference)
    inputs = {i.name: input_symbols(i.name, axes[i.name], lengths) for i in op.inputs if not i.integer}
    integer = [i for i in op.inputs if i.integer]
    if not integer:
        yield inputs
        return
    slots = [(i.name, idx) for i in integer for idx in input_symbols(i.name, axes[i.name], lengths)]
    ranges = [range(lengths[next(i for i in integer if i.name == name).classes]) for name, _ in slots]
    for values in itertools.product(*ranges):
        ids = {i.name: {} for i in integer}
        for (name, idx), value in zip(slots, values):
            ids[name][idx] = sp.Integer(value)
        yield {**inputs, **ids}


def _prove_fresh(op: Op) -> ProofResult:
    start = time.perf_counter()
    sizes = {}
    differs = {m.name: False for m in op.mistakes}
    for lengths in op.proof_lengths:
        ok = {name: True for name in op.formulations}
        for inputs in _symbolic_inputs(op, lengths):
            truth = op.definition(lengths, inputs)
            for name, form in op.formulations.items():
                if ok[name]:
                    got = run_symbolic(form, lengths, inputs)
                    relabel = _Relabel(op, lengths, inputs, (form,))
                    ok[name] = all(_entries_equal(got[o.name], truth[o.name], o.axes, relabel) for o in op.outputs)
            for m in op.mistakes:
                if not differs[m.name]:
                    got = run_symbolic(m.formulation, lengths, inputs)
                    relabel = _Relabel(op, lengths, inputs, (m.formulation,))
                    differs[m.name] = not all(_entries_equal(got[o.name], truth[o.name], o.axes, relabel)
                                              for o in op.outputs)
        for name in op.formulations:
            sizes.setdefault(name, []).append({"lengths": lengths, "proved": ok[name]})
    generic = [{"statement": g.statement, "setting": g.setting,
                "proved": bool(is_zero(g.lhs - g.rhs) if g.method == "normal_form" else sp.simplify(g.lhs - g.rhs) == 0)}
               for g in op.generic]
    invariants = []
    for inv in op.invariants:
        proved_at = []
        for lengths in op.proof_lengths:
            holds = True
            for inputs in _symbolic_inputs(op, lengths):
                if inv.normalize:
                    inputs = inv.normalize(inputs)
                outs = run_symbolic(op.reference, lengths, inputs)
                res = run_symbolic(inv.residual, lengths, {**inputs, **{o.name: outs[o.name] for o in op.outputs}},
                                   only=("r",))
                zero = {idx: sp.Integer(0) for idx in res["r"]}
                holds = holds and _entries_equal(res["r"], zero, value_axes(inv.residual)["r"],
                                                 _Relabel(op, lengths, inputs, (inv.residual,)))
            proved_at.append((lengths, holds))
        invariants.append({"name": inv.name, "latex": inv.latex,
                           "sizes": [l for l, _ in proved_at], "proved": all(ok for _, ok in proved_at)})
    mistakes = [{"name": name, "differs": d} for name, d in differs.items()]
    return ProofResult(op.name, sizes, generic, invariants, time.perf_counter() - start, mistakes)


def _cache_path(op: Op) -> Path:
    return cache_dir() / f"proof-{op.name}-{_cache_key(op)}.json"


def cached_proof(op: Op) -> ProofResult | None:
    """The proof of ``op`` from the disk cache (:func:`cache_dir`), or None when it is not there (or
    rejected: see :mod:`derive.cache`)."""
    payload = cache.load(_cache_path(op), "proof", _cache_inputs(op), validate=_valid_proof(op))
    return ProofResult(**json.loads(payload), cached=True) if payload is not None else None


def store_proof(op: Op, result: ProofResult) -> None:
    """Put ``result`` (a proof of ``op``, e.g. made in another process) in the disk cache."""
    data = {k: getattr(result, k) for k in _FIELDS}
    cache.store(_cache_path(op), "proof", _cache_inputs(op), json.dumps(data).encode("utf-8"))


def proof_data(result: ProofResult) -> dict:
    """``result`` as plain data (JSON-able; ``ProofResult(**data)`` rebuilds it)."""
    return {k: getattr(result, k) for k in _FIELDS}


def prove_op(op: Op, *, use_cache: bool = True) -> ProofResult:
    """Prove every formulation of ``op`` equal to its definition at ``op.proof_lengths``, the generic
    claims, and the invariants.  Cached in :func:`cache_dir` unless ``use_cache`` is False."""
    if use_cache:
        cached = cached_proof(op)
        if cached is not None:
            return cached
    result = _prove_fresh(op)
    if use_cache:
        store_proof(op, result)
    return result
