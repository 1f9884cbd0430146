"""Engines answer "what is the exact value?" (see DESIGN.md).

* :mod:`.arb_arrays`: python-flint ``arb`` balls, evaluated a whole array per step (numpy object
  operators call arb's C methods directly), certified in one vectorised pass, results returned as
  lazily converted ``mpmath.mpf`` elements.
* :mod:`.fast`: float64 balls (float16/bfloat16/float32 targets) or double-double balls (float64
  targets, and values certified to a number of bits, e.g. 30 beyond the target) with a rigorous
  per-element error bound; what the bound cannot decide goes to arb, and every run says how many
  elements took that slow path.
* :mod:`.double_double`: the double-double ball arithmetic and its error bounds.
"""
