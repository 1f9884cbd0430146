"""Start-up: the packages and the command line import nothing heavy until a command needs it, and the
op catalogue that `gradaudit list` prints is the built ops' own description, never a stale copy."""
import json
import subprocess
import sys

import pytest

from derive import OPS, catalog
from derive.registry import parametric_spec

HEAVY = ("sympy", "hypothesis", "matplotlib", "torch", "jax", "flint", "mpmath", "dask")


def imported_after(code: str) -> set[str]:
    """Top-level heavy packages a fresh interpreter has imported after running ``code``."""
    probe = code + "\nimport sys, json\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.splitlines()[-1])) & set(HEAVY)


@pytest.mark.parametrize("code", [
    "import derive", "import numeric", "import numeric.cli",
    "from numeric.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
    "from numeric.cli import main\nmain(['list'])",
])
def test_start_up_imports_nothing_heavy(code):
    assert imported_after(code) == set()


def test_public_names_resolve_lazily_to_the_functions():
    code = ("import numeric, numeric.reference, numeric.evaluate, numeric.compare\n"
            "import inspect\n"
            "assert all(inspect.isfunction(getattr(numeric, n)) for n in ('reference', 'evaluate', 'compare'))\n"
            "assert all(hasattr(numeric, n) for n in numeric.__all__)\n"
            "import derive\nassert all(hasattr(derive, n) for n in derive.__all__)\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def expected_entries():
    """The listing computed here directly from the registered built-in ops."""
    return [{"name": op.name, "signature": op.signature(), "formulations": list(op.formulations),
             "conventions": [{"name": p.name, "default": repr(p.default),
                              "choices": [repr(c) for c in p.choices] if p.choices else p.kind.__name__}
                             for p in parametric_spec(op.base_name)]}
            for op in OPS.values()]


def test_shipped_catalogue_is_current():
    data = json.loads(catalog.SHIPPED.read_text(encoding="utf-8"))
    assert data["sources"] == catalog.sources_digest(), "derive changed: run `python -m derive.catalog`"
    builtin = expected_entries()[:len(data["ops"])]          # user ops other tests registered come after
    assert data["ops"] == builtin


def test_stale_catalogue_is_recomputed_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADAUDIT_CACHE", str(tmp_path))
    monkeypatch.setattr(catalog, "sources_digest", lambda: "0" * 64)      # the shipped one no longer matches
    calls = []
    real = catalog._compute
    monkeypatch.setattr(catalog, "_compute", lambda: calls.append(1) or real())
    first = catalog.builtin_catalog()
    second = catalog.builtin_catalog()
    assert calls == [1], "computed once, then read back from the cache"
    assert first == second
    assert [e["name"] for e in first] == [n for n in OPS if n in {e["name"] for e in first}]
    assert {e["name"] for e in first} >= {"softmax", "cross_entropy_backward", "batchnorm_backward"}


def test_list_names_every_builtin_op_with_its_formulations(capsys):
    from numeric.cli import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for entry in catalog.builtin_catalog():
        assert f"{entry['name']:24} {entry['signature']}" in out
        assert f"formulations: {', '.join(entry['formulations'])}" in out
