import json
import math
import re
from fractions import Fraction
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from derive import get_op
from numeric.report import FAMILIES, ReportConfig, _conventions_section, source_digest, write_reports
from numeric.thresholds import op_thresholds

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "reports"


def _builtin_families() -> list[str]:
    """The families of a fresh process (other tests may have registered user ops in this one)."""
    proc = subprocess.run([sys.executable, "-c", "import derive; print(' '.join(derive.families()))"],
                          capture_output=True, text=True, check=True)
    return proc.stdout.split()


def test_committed_reports_are_from_the_current_source():
    manifest = json.loads((COMMITTED / "manifest.json").read_text())
    assert manifest["source_digest"] == source_digest(), \
        "reports/ is stale: run `gradaudit report` and commit reports/"
    builtin = _builtin_families()
    assert {"softmax", "cross_entropy", "batchnorm", "log_softmax", "layer_norm"} <= set(builtin)
    assert sorted(manifest["families"]) == sorted(builtin)
    for family in builtin:
        assert (COMMITTED / f"{family}.md").is_file()


def test_committed_reports_reference_only_existing_figures_and_prove_everything():
    for path in COMMITTED.glob("*.md"):
        text = path.read_text()
        for figure in re.findall(r"\(figures/([^)]+\.svg)\)", text):
            assert (COMMITTED / "figures" / figure).is_file(), figure
        assert "NOT PROVED" not in text and "FAILED" not in text
        assert "| NO |" not in text, f"{path.name}: a threshold disagrees with its analytic value"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    first, second = tmp_path_factory.mktemp("first"), tmp_path_factory.mktemp("second")
    families = ["softmax", "batchnorm"]
    write_reports(families, ReportConfig(out=first, dtypes=("float16", "float32"), seed=3))
    write_reports(families, ReportConfig(out=second, dtypes=("float16", "float32"), seed=3, jobs=2))
    return first, second


def test_same_seed_gives_the_same_bytes_serial_or_parallel(two_runs):
    first, second = two_runs
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert any(str(f).endswith(".svg") for f in files)
    for f in files:
        assert (first / f).read_bytes() == (second / f).read_bytes(), f


def test_report_sections(two_runs):
    first, _ = two_runs
    text = (first / "batchnorm.md").read_text()
    for needle in ("## Floating-point error", "$$", "Proof: proved", "```python", "## The ε study",
                   "Does float16 need ε = 1e-3?", "max error ÷ κu", "*batchnorm_backward: bits of error"):
        assert needle in text
    assert not list(first.rglob("*.tmp"))


@pytest.mark.parametrize("argv", [["report", "nosuchop"], ["report", "--dtypes", "float8"],
                                  ["report", "--jobs", "0"], ["report", "--out", str(ROOT / "README.md")]])
def test_report_usage_errors_exit_2(argv):
    proc = subprocess.run([sys.executable, "-m", "numeric.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_report_is_quiet_under_ci(tmp_path):
    env = dict(__import__("os").environ, CI="1")
    proc = subprocess.run([sys.executable, "-m", "numeric.cli", "report", "softmax", "--dtypes", "float32",
                           "--out", str(tmp_path)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "sweep points" not in proc.stderr
    assert (tmp_path / "softmax.md").is_file() and (tmp_path / "index.md").is_file()


# ---------------------------------------------------------------- families without a hand-written report

@pytest.fixture(scope="module")
def generic_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("generic")
    write_reports(["log_softmax", "layer_norm"], ReportConfig(out=out, dtypes=("float32",), seed=1))
    return out


@pytest.mark.parametrize("family", ["log_softmax", "layer_norm"])
def test_generic_family_report_has_derivations_table_figure_and_generated_prose(generic_run, family):
    text = (generic_run / f"{family}.md").read_text()
    for op in FAMILIES[family]:
        assert f"## `{op}`" in text and f"### `{op}`" in text
        for form in get_op(op).formulations:
            assert f"| `{form}` | float32 |" in text           # one table row per formulation
    assert "Proof: proved" in text and "NOT PROVED" not in text
    figures = re.findall(r"\(figures/([^)]+\.svg)\)", text)
    assert len(figures) == len(FAMILIES[family])
    for figure in figures:
        assert (generic_run / "figures" / figure).read_bytes().startswith(b"<?xml")
    assert text.count("**Measured.**") == len(FAMILIES[family])
    index = (generic_run / "index.md").read_text()
    assert f"[{family}]({family}.md)" in index


def test_generic_thresholds_meet_the_analytic_overflow():
    """log_softmax's naive formulation overflows at z = [[m, 0]] where exp(m) exceeds float32's max: m = ln(max)."""
    ln_max = math.log(float(np.finfo(np.float32).max))
    found = [t for t in op_thresholds("log_softmax", ("float32",)) if "`naive`" in t.name and "[[m, 0]]" in t.name]
    assert len(found) == 1
    last_good, first_bad = found[0].found
    assert last_good < ln_max <= first_bad and first_bad == np.nextafter(np.float32(last_good), np.float32(np.inf))
    # the stable formulation never breaks on the probe
    assert not [t for t in op_thresholds("log_softmax", ("float32",)) if "`logsumexp`" in t.name]
    # bce_with_logits' naive log σ(z) overflows for z < −ln(max): e^{−z} > max
    bce = [t for t in op_thresholds("bce_with_logits", ("float32",)) if "`naive`" in t.name and "[[−m, 0]]" in t.name]
    assert len(bce) == 1 and bce[0].found[0] < ln_max <= bce[0].found[1]


@pytest.mark.parametrize("op", ["log_softmax_backward", "layer_norm"])
def test_stacked_probe_scan_finds_the_thresholds_one_probe_at_a_time_finds(op, monkeypatch):
    """The threshold scan evaluates many probe magnitudes in one call (rows stacked along the independent
    axis).  It must decide each row as the single-probe predicate does; its thresholds must be real
    transitions of the single-probe predicate, never later than the one-probe-at-a-time search finds, and
    in float16 (every value scanned) preceded by no failure at all."""
    from derive import get_op
    import numeric.thresholds as thresholds

    the_op = get_op(op)
    assert thresholds._rows_apart(the_op)
    stacked = op_thresholds(op, ("float16", "float32"))
    monkeypatch.setattr(thresholds, "_rows_apart", lambda the_op: False)
    alone_found = op_thresholds(op, ("float16", "float32"))
    assert [(t.name, t.dtype) for t in stacked] == [(t.name, t.dtype) for t in alone_found]

    def fails(m, form, dtype):
        return thresholds._nonfinite(thresholds.evaluate(op, *thresholds.probe_inputs(the_op, m), dtype=dtype,
                                                         formulation=form))
    with np.errstate(all="ignore"):
        for t, u in zip(stacked, alone_found):
            form = t.name.split("`")[1]
            (a, b), dt = t.found, np.dtype(t.dtype)
            assert not fails(a, form, t.dtype) and fails(b, form, t.dtype)
            assert b <= u.found[1]
            if t.dtype == "float16":
                every = np.arange(np.float16(1.0).view(np.uint16), np.float16(a).view(np.uint16) + 1,
                                  dtype=np.uint16).view(np.float16).astype(np.float64)
                assert not thresholds._nonfinite_rows(the_op, form, 1.0, every, dt).any()
    values = np.geomspace(1.0, 6e4, 50).astype(np.float16).astype(np.float64)
    broken = []
    with np.errstate(all="ignore"):          # the probes overflow on purpose (and ε = 0)
        for form in the_op.formulations:
            rows = thresholds._nonfinite_rows(the_op, form, 1.0, values, np.dtype(np.float16))
            alone = [thresholds._nonfinite(thresholds.evaluate(op, *thresholds.probe_inputs(the_op, float(m)),
                                                               dtype="float16", formulation=form)) for m in values]
            assert rows.tolist() == alone, form
            broken += [form] if any(alone) else []
    assert broken                            # some formulation does return inf/nan on the way


def test_backward_ops_with_parameter_gradients_are_scanned_one_probe_at_a_time():
    """dγ sums over the rows, so stacking probes would mix magnitudes: no stacked scan there."""
    from derive import get_op
    import numeric.thresholds as thresholds

    assert not thresholds._rows_apart(get_op("layer_norm_backward"))


@pytest.fixture
def gelu(monkeypatch):
    """The example's ops registered in a throw-away copy of the registry (no other test sees them)."""
    from derive import load_ops, registry

    monkeypatch.setattr(registry, "OPS", dict(registry.OPS))
    monkeypatch.setattr(registry, "_INSTANCES", dict(registry._INSTANCES))
    assert load_ops(ROOT / "examples" / "custom_op.py") == ["gelu", "gelu_backward"]


def test_a_user_family_gets_a_report(gelu, tmp_path):
    assert FAMILIES["gelu"] == ("gelu", "gelu_backward")             # read from the registry at call time
    write_reports(["gelu"], ReportConfig(out=tmp_path, dtypes=("float32",), seed=0))
    text = (tmp_path / "gelu.md").read_text()
    assert "## `gelu_backward`" in text and "Proof: proved" in text and "**Measured.**" in text
    assert (tmp_path / "figures" / "gelu_backward_error_vs_magnitude.svg").is_file()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["families"] == ["gelu"]


def test_conventions_section_lists_proved_instances():
    text = "\n".join(_conventions_section("cross_entropy"))
    row = next(line for line in text.splitlines() if line.startswith("| `cross_entropy_backward[labels=index,reduction=mean]`"))
    assert "| proved |" in row and "`sum_instead_of_mean`" in row
    assert "`cross_entropy_backward[label_smoothing=0.1]`" in text
    assert "NOT PROVED" not in text


def test_running_statistics_table_matches_an_exact_update():
    """PyTorch's running variance: (1 − m)·r + m·Σ(x − μ)²/(N − 1); the biased one divides by N."""
    text = "\n".join(_conventions_section("batchnorm"))
    assert "`batchnorm_running_stats[correction=0]` | proved" in text
    assert "`batchnorm_backward[correction=1]` | proved" in text
    rows = {int(cells[1]): cells for cells in (line.split("|") for line in text.splitlines())
            if len(cells) == 9 and cells[1].strip().isdigit()}
    rng = np.random.default_rng(0)
    for n in (2, 4, 16, 64):
        x = [Fraction(float(v)) for v in rng.standard_normal((n, 1))[:, 0]]
        mean = sum(x) / n
        ss = sum((v - mean) ** 2 for v in x)
        m = Fraction(0.1)
        unbiased, biased = (1 - m) + m * ss / (n - 1), (1 - m) + m * ss / n
        cells = rows[n]
        assert float(cells[3]) == pytest.approx(float(unbiased), rel=1e-9)
        assert float(cells[4]) == pytest.approx(float(biased), rel=1e-9)
        assert float(cells[7]) == pytest.approx(n / (n - 1), rel=1e-4)


def test_log_axis_tick_labels_are_plain_text_powers_of_ten():
    from numeric.figures import _power_of_ten
    assert [_power_of_ten(x) for x in (1e-8, 1e-3, 1.0, 10.0, 1e12)] == ["10⁻⁸", "10⁻³", "10⁰", "10¹", "10¹²"]
    assert _power_of_ten(3.0) == "3" and _power_of_ten(0.0) == "0"


def test_a_figure_is_the_same_bytes_when_drawn_again_and_after_another_figure():
    """Nothing carries over from one figure to the next in a worker: serial and parallel runs agree."""
    from numeric.figures import draw_svg, figure_job
    point = {"max_bits": 3.0, "pct_nonfinite": 0}
    job = figure_job({"naive": {"float16": [(1.0, point), (10.0, {**point, "max_bits": 7.5})],
                                "float32": [(1.0, point), (1e3, {"max_bits": 1.0, "pct_nonfinite": 50})]}},
                     ("float16", "float32"), xlabel="M", title="t", vlines={"float16": [(5.0, "M = 5")]})
    other = figure_job({"shifted eps=1e-03": {"float64": [(1e-6, point), (1e6, point)]}}, ("float64",),
                       xlabel="x", title="other", vlines=None)
    first = draw_svg(job)
    draw_svg(other)
    assert first.startswith(b"<?xml") and draw_svg(job) == first



PREPARED = """
import json, sys
from numeric import report
kernel = sys.modules["numeric.evaluate"].kernel
from numeric.executors import LocalProcesses
tasks = [("proofs", ("softmax",)), ("points", [("cross_entropy", 10.0, "float16", 0, ())])]
modules = ("matplotlib", "sympy.physics.units")
before = [name in sys.modules for name in modules]
report._prepare_workers(tasks)
print(json.dumps([before, [name in sys.modules for name in modules], kernel.cache_info().currsize,
                  LocalProcesses(2).forks]))
"""


def test_what_every_worker_needs_is_made_once_before_they_fork():
    """Workers fork from the parent: matplotlib (for the figures), the part of SymPy that ``simplify``
    imports and the kernels of the ops with sweep points are made there, once, not in each worker."""
    proc = subprocess.run([sys.executable, "-c", PREPARED], capture_output=True, text=True, check=True)
    before, after, kernels, forks = json.loads(proc.stdout)
    assert before == [False, False] and after == [True, True]
    assert kernels >= len(get_op("cross_entropy").formulations) and forks
