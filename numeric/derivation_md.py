"""Markdown (GitHub-flavoured, LaTeX in ``$$ … $$``) for an op's derivation, proofs and generated code."""
from __future__ import annotations

import sympy as sp

from derive import Op, ProofResult, source_code

__all__ = ["derivation_markdown", "sizes_text"]


def sizes_text(lengths_list) -> str:
    """``K = 2, 3, 4, 5`` style summary of the concrete sizes a proof covered."""
    keys = [k for k in lengths_list[0] if len({l[k] for l in lengths_list}) > 1] or list(lengths_list[0])
    return "; ".join(", ".join(f"{k.upper()}={l[k]}" for k in keys) for l in lengths_list) if len(keys) > 1 \
        else f"{keys[0].upper()} = " + ", ".join(str(l[keys[0]]) for l in lengths_list)


def derivation_markdown(op: Op, proof: ProofResult, *, heading: str = "##") -> str:
    """The derivation steps, proof status per formulation, generic-size claims, invariants, the known
    mistakes shown to differ and the generated numpy code of ``op``, as Markdown."""
    out = [f"{heading} `{op.name}`", "", f"`{op.signature()}` — {op.summary}.", ""]
    if op.derivation:
        out += [f"{heading}# Derivation", ""]
        for n, step in enumerate(op.derivation, 1):
            out += [f"{n}. **{step.title}**", "", f"$$ {step.latex} $$", ""]
    status = "proved" if proof.proved else "NOT PROVED"
    out += [f"{heading}# Proof: {status}", "",
            "Each formulation is compared with `sympy.diff` of the forward definition, entry by entry "
            "(normal form + `cancel`, no whole-matrix `simplify`; an entry that an exchange of indices maps "
            "onto another, leaving the definition the same expression, takes that entry's `diff` renamed).", "",
            "| formulation | computes | sizes proved | status |", "|---|---|---|---|"]
    for name, form in op.formulations.items():
        rows = proof.sizes[name]
        ok = all(r["proved"] for r in rows)
        out.append(f"| `{name}` | {form.summary} | {sizes_text([r['lengths'] for r in rows])} | "
                   f"{'proved' if ok else 'FAILED'} |")
    out.append("")
    if proof.generic:
        settings = list(dict.fromkeys(g["setting"] for g in proof.generic))
        out += ["Generic size (the size is a symbol, not a number), for " + "; ".join(settings) + ":", ""]
        for g, claim in zip(proof.generic, op.generic):
            derived = sp.latex(claim.lhs)
            shown = f" — `sympy.diff` gives ${derived}$" if len(derived) < 300 else ""
            out += [f"- {'proved' if g['proved'] else 'FAILED'}: ${g['statement'].strip()}${shown}"]
        out.append("")
    if proof.invariants:
        out += [f"{heading}# Invariants", ""]
        for inv in proof.invariants:
            out.append(f"- {'proved' if inv['proved'] else 'FAILED'}: ${inv['latex'].strip()}$ ({inv['name']}; "
                       f"{sizes_text(inv['sizes'])})")
        out.append("")
    if proof.mistakes:
        messages = {m.name: m.message for m in op.mistakes}
        out += [f"{heading}# Known mistakes", "",
                "Wrong formulations people write, each proved to differ from the definition at the sizes "
                "above, with what `gradaudit check` says of a function that matches one.", ""]
        for m in proof.mistakes:
            out.append(f"- {'differs' if m['differs'] else 'NOT SHOWN TO DIFFER'}: `{m['name']}` — "
                       f"{messages.get(m['name'], '')}")
        out.append("")
    out += [f"{heading}# Generated numpy code", "",
            "Lambdified from the SymPy steps above (`sympy.lambdify(..., cse=True)`); this is the code "
            "`numeric.evaluate` runs.", ""]
    for name, form in op.formulations.items():
        out += ["```python", source_code(form), "```", ""]
    return "\n".join(out)
