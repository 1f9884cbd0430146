"""reports/frameworks.md: torch's (and JAX's) kernels measured against exact values."""
import importlib.util
import math

import mpmath
import numpy as np
import pytest

from numeric import frameworks_report as fr
from numeric import frameworks_start

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")


def test_mp_log_softmax_matches_fsum_definition():
    z = np.array([[1.0, -2.0, 0.5], [1000.0, 0.0, -1000.0]])
    got = fr._mp_certified(fr._mp_log_softmax, (z,))[0]
    for b in range(2):
        lse = math.log(math.fsum(math.exp(v - z[b].max()) for v in z[b])) + z[b].max()
        for k in range(3):
            assert float(got[b, k]) == pytest.approx(z[b, k] - lse, rel=1e-15, abs=1e-300)


def test_mp_layer_norm_matches_textbook_and_its_backward_matches_finite_differences():
    rng = np.random.default_rng(5)
    x, w, b, dy = rng.standard_normal((3, 5)), rng.standard_normal(5), rng.standard_normal(5), rng.standard_normal((3, 5))
    eps = 1e-5
    y = fr._mp_certified(fr._mp_layer_norm, (x, w, b, eps))[0].astype(float)
    xhat = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + eps)
    assert np.allclose(y, w * xhat + b, rtol=1e-12, atol=1e-12)
    dx, dw, db = (a.astype(float) for a in fr._mp_certified(fr._mp_layer_norm_backward, (x, w, b, eps, dy)))
    # central differences of L = Σ dy ⊙ layer_norm(x) in mpmath at 100 digits
    with mpmath.workdps(100):
        h = mpmath.mpf(10) ** -30

        def loss(xv, wv, bv):
            out = fr._mp_layer_norm(xv, wv, bv, mpmath.mpf(eps))[0]
            return mpmath.fsum(dy[i, j] * out[i, j] for i in range(3) for j in range(5))
        X = np.vectorize(mpmath.mpf, otypes=[object])(x)
        W = [mpmath.mpf(v) for v in w]
        B = [mpmath.mpf(v) for v in b]
        for (i, j) in [(0, 0), (2, 4), (1, 2)]:
            Xp, Xm = X.copy(), X.copy()
            Xp[i, j] += h
            Xm[i, j] -= h
            assert float((loss(Xp, W, B) - loss(Xm, W, B)) / (2 * h)) == pytest.approx(dx[i, j], rel=1e-12)
        Wp = list(W)
        Wp[3] += h
        assert float((loss(X, Wp, B) - loss(X, W, B)) / h) == pytest.approx(dw[3], rel=1e-12)
        assert db[1] == pytest.approx(dy[:, 1].sum(), rel=1e-14)


@needs_torch
def test_measured_ulps_match_an_independent_computation():
    """max ULPs of torch.softmax in float32 recomputed here: mpmath at 60 digits, ulp = 2^(e − 23)."""
    import torch
    case = next(c for c in fr.torch_cases() if c.label.startswith("torch.softmax"))
    row = fr.measure_case(case, "float32", 10.0, seed=3)
    z = case.args(10.0, np.random.default_rng(3))[0].astype(np.float32)
    got = torch.softmax(torch.from_numpy(z), dim=1).numpy()
    worst = 0.0
    with mpmath.workdps(60):
        for b in range(z.shape[0]):
            exps = [mpmath.exp(mpmath.mpf(float(v))) for v in z[b]]
            total = mpmath.fsum(exps)
            for k, e in enumerate(exps):
                exact = e / total
                ulp = mpmath.ldexp(1, int(mpmath.floor(mpmath.log(exact, 2))) - 23)
                worst = max(worst, float(abs(mpmath.mpf(float(got[b, k])) - exact) / ulp))
    assert row["forward"]["max_ulps"] == pytest.approx(worst, rel=1e-9)
    assert row["forward"]["inf"] == row["forward"]["nan"] == 0


@needs_torch
def test_upcast_is_reported():
    import torch
    case = fr.KernelCase("torch", "softmax in float32", lambda z: torch.softmax(z.float(), dim=1), fr._logits,
                         (0,), (1.0,), "M", op="softmax")
    row = fr.measure_case(case, "bfloat16", 1.0)
    assert row["forward"] == {"dtype_out": "float32"}


@needs_torch
def test_write_report_names_torch_version(tmp_path):
    import torch
    cases = [c for c in fr.torch_cases() if c.label.startswith(("torch.softmax", "F.cross_entropy"))]
    path = fr.write_frameworks_report(tmp_path, dtypes=("bfloat16", "float32"), cases=cases, magnitudes=(1.0,))
    text = path.read_text()
    assert path.name == "frameworks.md"
    assert f"| torch | {torch.__version__} |" in text and "| torch device | " in text
    assert "## `torch.softmax(z, dim=1)`" in text and "gradaudit op: `cross_entropy[labels=index,reduction=mean]`" in text
    assert text.count("| bfloat16 | 1 |") == 4        # two kernels × forward/backward
    again = fr.write_frameworks_report(tmp_path, dtypes=("bfloat16", "float32"), cases=cases, magnitudes=(1.0,))
    assert again.read_text() == text                   # deterministic


@needs_torch
def test_a_kernel_that_raises_is_reported_not_fatal(tmp_path):
    def broken(z):
        raise RuntimeError("no kernel for this dtype")
    case = fr.KernelCase("torch", "broken", broken, fr._logits, (0,), (1.0,), "M", op="softmax")
    text = fr.write_frameworks_report(tmp_path, dtypes=("float32",), cases=[case]).read_text()
    assert "| float32 | 1 | not measured: RuntimeError: no kernel for this dtype |" in text


def test_jax_child_module_imports_neither_sympy_nor_the_rest_of_numeric():
    """The spawned JAX child imports numeric.frameworks_jax only: no SymPy, no op of derive (its package
    shell and derive.lazy, standard library only, are what ``import numeric`` reads), no numeric.adapters."""
    import subprocess
    import sys
    code = ("import sys, numeric.frameworks_jax; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sympy', 'derive', 'torch', 'jax') "
            "and m not in ('derive', 'derive.lazy') or m.startswith('numeric.adapters')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_jax_run_gives_softmax_and_its_vjp_for_the_upstream_it_drew():
    """One forward and one pullback: outputs within 1e-5 relative of mpmath's softmax (κ·u ≈ 1e-6 at |z| ≲ 10),
    gradient within 1e-5 relative
    of s ⊙ (g − Σ s g) (textbook VJP) for the upstream g = default_rng(seed + 1).standard_normal."""
    from numeric import frameworks_jax
    z = (3.0 * np.random.default_rng(4).standard_normal((4, 8))).astype(np.float32)
    outs, grads, ups = frameworks_jax.run(frameworks_jax.softmax, (0,), (z,), np.dtype(np.float32), 7)
    g = np.random.default_rng(8).standard_normal((4, 8)).astype(np.float32)
    assert np.array_equal(ups[0], g) and outs[0].dtype == grads[0].dtype == np.float32
    with mpmath.workdps(40):
        for b in range(4):
            exps = [mpmath.exp(mpmath.mpf(float(v))) for v in z[b]]
            s = [e / mpmath.fsum(exps) for e in exps]
            sg = mpmath.fsum(sk * mpmath.mpf(float(gk)) for sk, gk in zip(s, g[b]))
            for k in range(8):
                assert outs[0][b, k] == pytest.approx(float(s[k]), rel=1e-5)
                exact = float(s[k] * (mpmath.mpf(float(g[b, k])) - sg))
                assert grads[0][b, k] == pytest.approx(exact, rel=1e-5, abs=1e-7)


def test_child_results_are_matched_to_their_entries():
    """Entries whose inputs overflow get no task; float64 rows are dropped when JAX's 64-bit mode is off."""
    f16, f64 = np.dtype(np.float16), np.dtype(np.float64)
    z = np.zeros((4, 8))
    entries = [(0, f16, 1e4, None), (0, f16, 1.0, z.astype(f16)), (0, f64, 1.0, z), (1, f16, 1.0, z.astype(f16))]
    results = [("error", "RuntimeError: a"), None, ("error", "ValueError: b")]
    rows = fr._jax_rows(fr.jax_cases(), entries, results, x64=False)
    assert rows == [(0, "float16", 1e4, {"unrepresentable": True}), (0, "float16", 1.0, {"error": "RuntimeError: a"}),
                    (1, "float16", 1.0, {"error": "ValueError: b"})]


@needs_torch
def test_exact_values_are_shared_by_kernels_of_one_op_on_the_same_inputs():
    """A second kernel of the same op on the same rounded inputs and upstream (JAX's twin of a torch
    kernel) reuses the memo's exact values: one entry, and the same row as a run without the memo."""
    import torch
    first = next(c for c in fr.torch_cases() if c.label.startswith("torch.softmax"))
    twin = fr.KernelCase("torch", "softmax again", lambda z: torch.softmax(z, dim=1), fr._logits, (0,), (1.0,),
                         "M", op="softmax")
    memo = {}
    a = fr.measure_case(first, "bfloat16", 10.0, memo=memo)
    b = fr.measure_case(twin, "bfloat16", 10.0, memo=memo)
    assert len(memo) == 1 and a == b == fr.measure_case(twin, "bfloat16", 10.0)
    fr.measure_case(twin, "float32", 10.0, memo=memo)          # other dtype: other rounded inputs
    fr.measure_case(twin, "bfloat16", 10.0, seed=1, memo=memo)  # other seed: other inputs and upstream
    assert len(memo) == 3


def test_memo_key_tells_inputs_apart_by_bytes_and_dtype():
    case = fr.KernelCase("torch", "k", None, fr._logits, (0,), (1.0,), "M", op="softmax")
    z = np.arange(6.0).reshape(2, 3)
    key = fr._memo_key(case, np.dtype(np.float32), (z.astype(np.float32),), [None])
    assert key == fr._memo_key(case, np.dtype(np.float32), (z.astype(np.float32).copy(),), [None])
    assert key != fr._memo_key(case, np.dtype(np.float32), (z.astype(np.float64),), [None])
    assert key != fr._memo_key(case, np.dtype(np.float32), (z[::-1].astype(np.float32),), [None])
    assert fr._memo_key(fr.KernelCase("torch", "k", None, fr._logits, (0,), (1.0,), "M"), np.float32, (z,), [None]) is None


@needs_torch
def test_start_then_finish_writes_the_report(tmp_path):
    cases = [c for c in fr.torch_cases() if c.label.startswith("torch.softmax")]
    run = fr.start_frameworks_report(tmp_path / "a", dtypes=("float32",), cases=cases, magnitudes=(1.0,))
    (tmp_path / "a").mkdir()
    with run:
        run.measure()
        run.measure()                          # once
        path = run.finish()
    (tmp_path / "b").mkdir()
    assert path.read_text() == fr.write_frameworks_report(tmp_path / "b", dtypes=("float32",), cases=cases,
                                                          magnitudes=(1.0,)).read_text()


def test_a_cached_report_is_written_without_measuring(tmp_path, monkeypatch):
    """A default run whose text is in the disk cache builds no case and starts no child."""
    monkeypatch.setattr(frameworks_start, "cached_text", lambda *args: (tmp_path / "entry.json", "# cached\n", "inputs"))
    monkeypatch.setattr(fr, "torch_cases", lambda: pytest.fail("torch cases built on a cache hit"))
    monkeypatch.setattr(fr, "jax_cases", lambda: pytest.fail("JAX cases built on a cache hit"))
    monkeypatch.setattr(frameworks_start, "spawn_jax_child", lambda *args: pytest.fail("JAX child started on a cache hit"))
    run = fr.start_frameworks_report(tmp_path)
    if run is not None:                       # None: neither torch nor JAX installed
        assert run.finish().read_text() == "# cached\n"


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_a_jax_child_that_dies_is_an_error_not_a_hang(tmp_path, monkeypatch):
    """The JAX child killed before it sends its results: finish raises, naming it (a Pool would have
    replaced the dead worker and waited forever for the lost task)."""
    monkeypatch.setenv("GRADAUDIT_CACHE", str(tmp_path / "cache"))          # a cache miss: a child starts
    started = frameworks_start.start(("float32",), 0, (1.0,))
    run = fr.FrameworksRun(tmp_path / "frameworks.md", None, [], (("float32",), (1.0,), 0))
    with run:
        run.adopt(started)
        run._child.kill()
        with pytest.raises(RuntimeError, match="JAX child process died"):
            run.finish()
    assert run._child is None and not (tmp_path / "frameworks.md").exists()


def test_torch_device_of_a_cpu_build_is_read_without_importing_torch():
    import subprocess
    import sys
    code = ("import sys; from importlib import metadata; import numeric.frameworks_start as fs; "
            "d = fs.torch_device(); v = metadata.version('torch'); "
            "print(d == 'cpu' and 'torch' not in sys.modules if v.endswith('+cpu') else d in ('cpu', 'cuda'))")
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_jax_compile_cache_is_filled_and_gives_the_same_results(tmp_path):
    """run_all with a persistent compilation cache, in two fresh processes (it sets JAX's global
    configuration): the first fills the directory, the second loads from it; both give the outputs and
    gradients bit for bit of a run without the cache (this process)."""
    import pickle
    import subprocess
    import sys
    from numeric import frameworks_jax
    z = (3.0 * np.random.default_rng(2).standard_normal((4, 8))).astype(np.float32)
    tasks = [(frameworks_jax.softmax, (0,), (z,), np.dtype(np.float32), 0)]
    (tmp_path / "tasks.pkl").write_bytes(pickle.dumps(tasks))
    code = ("import pickle, sys; from numeric import frameworks_jax; "
            "tasks = pickle.load(open(sys.argv[1], 'rb')); "
            "sys.stdout.buffer.write(pickle.dumps(frameworks_jax.run_all(tasks, sys.argv[2])[0]))")
    runs = [pickle.loads(subprocess.run([sys.executable, "-c", code, str(tmp_path / "tasks.pkl"), str(tmp_path / "jax")],
                                        capture_output=True, check=True).stdout) for _ in range(2)]
    outs, grads, ups = frameworks_jax.run(*tasks[0])
    expected = [outs[0].tobytes(), grads[0].tobytes(), ups[0].tobytes()]
    for (result,) in runs:
        assert result[0] == "ok" and [result[1][0].tobytes(), result[2][0].tobytes(), result[3][0].tobytes()] == expected
    assert any((tmp_path / "jax").iterdir())


def test_compile_cache_starts_once_the_cache_directory_has_persisted(tmp_path, monkeypatch):
    """No JAX compile cache in a fresh cache directory (its writes would be thrown away with it); one
    once a frameworks report entry (or the compile cache itself) is there; none with the cache off."""
    import derive.cache
    monkeypatch.setenv("GRADAUDIT_CACHE", str(tmp_path))
    assert frameworks_start.compile_cache() is None
    (tmp_path / "frameworks").mkdir()
    (tmp_path / "frameworks" / "0123.json").write_text("{}")
    assert frameworks_start.compile_cache() == str(tmp_path / "jax")
    monkeypatch.setattr(derive.cache, "available", lambda: False)
    assert frameworks_start.compile_cache() is None
