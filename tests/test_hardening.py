"""Issue 9, report/cache/CLI part: a bad cache, an interrupted or unwritable report, and report prose
that must agree with its numbers.  Every test here failed on main before the fix."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import mpmath
import ml_dtypes
import numpy as np
import pytest

from derive import OPS, get_op, prove_op

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "reports"


@pytest.fixture
def cli(monkeypatch, capsys):
    """``gradaudit`` in this process: (exit status, stdout, stderr); ``env`` and ``cwd`` set for the call."""
    from numeric.cli import main

    def run(*argv, env=None, cwd=None):
        monkeypatch.setenv("CI", "1")
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()
        status = main(list(argv))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(argv, status, out, err)
    return run


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _entries(root: Path, pattern="*"):
    return [p for p in root.rglob(pattern) if p.is_file() and not p.name.startswith(".")]


@pytest.fixture(autouse=True, scope="module")
def _no_frameworks_report():
    """frameworks.md (torch/JAX timings) is another part's subject and costs ~15 s per report here."""
    import numeric.report
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(numeric.report, "start_frameworks_report", lambda *args, **kwargs: None)
        yield


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("GRADAUDIT_CACHE", str(root))
    return root


# ---------------------------------------------------------------- atomic writes

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_their_permissions_from_the_umask(tmp_path, umask, mode):
    from derive.atomic import write_text
    old = os.umask(umask)
    try:
        write_text(tmp_path / "report.md", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "report.md").stat().st_mode & 0o777 == mode


# ---------------------------------------------------------------- the cache

@pytest.mark.parametrize("garbage", [b"", b"{\"op\": \"softm", b"\x00\xff garbage", b"[]", b"null"])
def test_a_corrupt_proof_entry_is_recomputed_with_a_warning_naming_it(cache, capsys, garbage):
    first = prove_op(OPS["softmax"])
    entries = _entries(cache)
    assert entries
    for path in entries:
        path.write_bytes(garbage)
    capsys.readouterr()
    again = prove_op(OPS["softmax"])
    err = capsys.readouterr().err
    assert not again.cached and again.proved and again.sizes == first.sizes
    assert any(str(p) in err for p in entries) and "Traceback" not in err
    assert prove_op(OPS["softmax"]).cached               # the recomputed entry replaced the bad one


def test_a_proof_entry_edited_to_say_proved_is_not_believed(cache, capsys):
    from derive.ops import softmax as softmax_mod
    from derive.program import Elementwise, Formulation, value_symbol as v
    good = softmax_mod._jacobian_form("naive")
    wrong = Formulation("wrong", "J = −s_i s_j", good.inputs, good.steps[:-1] + (Elementwise("J", -v("s_i") * v("s_j")),),
                        good.outputs, good.axis_order)
    op = replace(OPS["softmax_jacobian"], formulations={**OPS["softmax_jacobian"].formulations, "wrong": wrong})
    assert not prove_op(op).proved
    for path in _entries(cache):
        data = path.read_bytes()
        path.write_bytes(data.replace(b'"proved": false', b'"proved": true')
                         .replace(b'\\"proved\\": false', b'\\"proved\\": true'))
    capsys.readouterr()
    again = prove_op(op)
    assert not again.proved and not again.cached
    assert "ignoring cache entry" in capsys.readouterr().err


def test_a_proof_entry_of_another_op_is_not_used(cache, capsys):
    prove_op(OPS["softmax"])
    prove_op(OPS["softmax_backward"])
    (source,) = [p for p in _entries(cache) if "softmax-" in p.name and "backward" not in p.name]
    (target,) = [p for p in _entries(cache) if "softmax_backward" in p.name]
    target.write_bytes(source.read_bytes())
    capsys.readouterr()
    result = prove_op(OPS["softmax_backward"])
    assert result.op == "softmax_backward" and list(result.sizes) == list(OPS["softmax_backward"].formulations)
    assert str(target) in capsys.readouterr().err


def test_an_unusable_cache_directory_means_no_cache_and_one_warning(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv("GRADAUDIT_CACHE", str(blocker))
    first, second = prove_op(OPS["softmax"]), prove_op(OPS["softmax"])
    assert first.proved and second.proved and not second.cached
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and str(blocker) in warnings[0]
    assert blocker.read_text() == "a file where the cache directory should be"


def test_the_report_command_runs_with_an_unusable_cache(tmp_path, cli):
    blocker = tmp_path / "cache-file"
    blocker.write_text("x")
    proc = cli("report", "softmax", "--dtypes", "float32", "--out", str(tmp_path / "out"),
                env={"GRADAUDIT_CACHE": str(blocker / "sub")})
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if "warning" in line]) == 1
    assert (tmp_path / "out" / "softmax.md").is_file()


@pytest.fixture(scope="module")
def softmax_float32_set(tmp_path_factory):
    """A clean softmax report (float32) and the cache that made it."""
    from numeric.report import ReportConfig, write_reports
    root = tmp_path_factory.mktemp("clean")
    old = os.environ.get("GRADAUDIT_CACHE")
    os.environ["GRADAUDIT_CACHE"] = str(root / "cache")
    try:
        write_reports(["softmax"], ReportConfig(out=root / "out", dtypes=("float32",), seed=0))
    finally:
        if old is None:
            os.environ.pop("GRADAUDIT_CACHE", None)
        else:
            os.environ["GRADAUDIT_CACHE"] = old
    return root


def test_wrong_sweep_points_and_empty_figures_in_the_cache_do_not_change_the_report(softmax_float32_set, tmp_path,
                                                                                    monkeypatch, capsys):
    import shutil
    from numeric.report import ReportConfig, write_reports
    cache = tmp_path / "cache"
    shutil.copytree(softmax_float32_set / "cache", cache)
    monkeypatch.setenv("GRADAUDIT_CACHE", str(cache))
    sweeps, figures = _entries(cache / "sweeps"), _entries(cache / "figures")
    assert sweeps and figures
    for path in sweeps:
        path.write_text("[]")
    for path in figures:
        path.write_bytes(b"")
    capsys.readouterr()
    write_reports(["softmax"], ReportConfig(out=tmp_path / "out", dtypes=("float32",), seed=0))
    err = capsys.readouterr().err
    assert _files(tmp_path / "out") == _files(softmax_float32_set / "out")
    assert all(str(p) in err for p in sweeps[:3] + figures[:3])


def test_an_intact_entry_whose_value_cannot_be_right_is_rejected(cache, capsys):
    """Well-formed, correct digests, but a sweep point with no formulations / an SVG that is not whole."""
    from derive import cache as disk
    from numeric.figures import _is_svg
    from numeric.report import _valid_sweep
    path = cache / "x.json"
    task = ("softmax", 1.0, "float32", 0, ())
    disk.store(path, "sweep point", "inputs", b"[]")
    assert disk.load(path, "sweep point", "inputs", validate=_valid_sweep(task)) is None
    disk.store(path, "figure", "inputs", b"<?xml version=\"1.0\"?><svg>")
    assert disk.load(path, "figure", "inputs", validate=_is_svg) is None
    assert disk.load(path, "figure", "other inputs") is None
    assert capsys.readouterr().err.count(str(path)) == 3


# ---------------------------------------------------------------- the report set

def test_an_interrupted_report_leaves_the_old_set_intact(softmax_float32_set, tmp_path, monkeypatch):
    import shutil
    import numeric.report as report
    out = tmp_path / "reports"
    shutil.copytree(softmax_float32_set / "out", out)
    before = _files(out)
    monkeypatch.setenv("GRADAUDIT_CACHE", str(tmp_path / "cache"))
    shutil.copytree(softmax_float32_set / "cache", tmp_path / "cache")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(report, "_index", interrupted)     # after every family's report was written
    with pytest.raises(KeyboardInterrupt):
        report.write_reports(["softmax"], report.ReportConfig(out=out, dtypes=("float32",), seed=1))
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "reports"]     # no staging left behind


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path):
    out = tmp_path / "reports"
    proc = subprocess.Popen([sys.executable, "-m", "numeric.cli", "report", "batchnorm", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, CI="1", GRADAUDIT_CACHE=str(tmp_path / "cache")))
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".reports.new-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["gradaudit: interrupted"]
    assert not out.exists() and not list(tmp_path.glob(".reports.*"))


def test_reports_and_figures_are_written_with_the_umask(softmax_float32_set):
    out = softmax_float32_set / "out"
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.rglob("*")}
    expected_file = 0o666 & ~_umask()
    assert modes and all(m == expected_file for name, m in modes.items() if name != "figures"), modes
    assert modes["figures"] == 0o777 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("make_out", [
    lambda tmp: tmp / "a-file" / "reports",                       # a file where a directory must be
    lambda tmp: tmp / "a-file",                                   # --out itself a file
    lambda tmp: tmp / "project",                                  # a directory holding other files, no manifest
])
def test_an_unusable_out_is_a_usage_error_before_any_computation(tmp_path, make_out, cli):
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "setup.py").write_text("keep me")
    start = time.monotonic()
    proc = cli("report", "--out", str(make_out(tmp_path)), env={"GRADAUDIT_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "cache").exists(), "something was computed (and cached) before the check"
    assert (tmp_path / "project" / "setup.py").read_text() == "keep me"
    assert time.monotonic() - start < 5


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_out_is_a_usage_error(tmp_path, cli):
    out = tmp_path / "reports"
    out.mkdir()
    out.chmod(0o500)
    try:
        proc = cli("report", "--out", str(out), env={"GRADAUDIT_CACHE": str(tmp_path / "cache")})
    finally:
        out.chmod(0o700)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_repeated_dtypes_count_once_and_a_partial_report_is_a_whole_set(softmax_float32_set, tmp_path, cli):
    import shutil
    out = tmp_path / "reports"
    shutil.copytree(softmax_float32_set / "out", out)           # an older set that also had batchnorm.md
    (out / "batchnorm.md").write_text("an older report of another family")
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "files": manifest["files"] + ["batchnorm.md"]}))
    shutil.copytree(softmax_float32_set / "cache", tmp_path / "cache")
    proc = cli("report", "softmax", "--dtypes", "float32,,float32", "--out", str(out),
                env={"GRADAUDIT_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    text = (out / "softmax.md").read_text()
    with_shifted = sum("shifted" in get_op(op).formulations for op in ("softmax", "softmax_jacobian", "softmax_backward"))
    assert len(re.findall(r"^\| `shifted` \| float32 \|", text, flags=re.M)) == with_shifted
    assert json.loads((out / "manifest.json").read_text())["dtypes"] == ["float32"]
    assert not (out / "batchnorm.md").exists()            # the set is this run's files, nothing older
    index = (out / "index.md").read_text()
    for link in re.findall(r"\]\(([^)]+\.md)\)", index):
        assert (out / link).is_file(), link


# ---------------------------------------------------------------- prose that agrees with the numbers

def test_where_the_exact_value_is_0_there_are_no_ulps_but_an_absolute_error():
    from numeric.metrics import error_metrics
    got = np.array([2.3, 1.0, 0.0], dtype=ml_dtypes.bfloat16)
    m = error_metrics(got, np.array([mpmath.mpf(0), mpmath.mpf(1), mpmath.mpf(0)], dtype=object), "bfloat16")
    assert np.isnan(m.ulps[0]) and np.isnan(m.ulps[2]) and m.ulps[1] == 0
    smallest_normal = 2.0 ** -126                      # bfloat16 keeps float32's exponent range
    assert m.abs_at_zero[0] == float(got[0]) / smallest_normal and m.abs_at_zero[2] == 0
    s = m.summary()
    assert s["max_bits"] == 0 and s["exact_zeros"] == 2 and s["max_abs_at_zero"] == float(got[0]) / smallest_normal


def test_inputs_that_overflow_the_dtype_are_not_the_formulations_inf_nan():
    from numeric.sweep import sample_inputs, sweep_point
    args = sample_inputs("batchnorm", 1e5, 0)              # x ≈ 1e5 > 65504, the largest float16
    for row in sweep_point("batchnorm", args, "float16"):
        assert row["summary"]["input_overflow"] is True
        assert not row["summary"]["pct_nonfinite"] > 0


def _tables(text: str):
    """Error tables of a report: (header cells, [row cells]) each."""
    tables, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("| formulation | dtype |"):
            header = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]])
            tables.append((header, rows, i))
    return tables


def _number(cell: str) -> float:
    return {"—": float("nan"), "∞": float("inf")}.get(cell, None) or float(cell)


@pytest.mark.parametrize("name", ["softmax", "cross_entropy", "batchnorm"])
def test_committed_report_prose_agrees_with_its_tables(name):
    text = (COMMITTED / f"{name}.md").read_text()
    assert "small multiple of 1" not in text
    lines = text.splitlines()
    for header, rows, at in _tables(text):
        assert "% inputs not representable" in header
        col = {h: k for k, h in enumerate(header)}
        ratio, nonfinite = col["max error ÷ κu"], col["% inf/nan"]
        measured = next(l for l in lines[at:] if l.startswith("**Measured.**"))
        by_form = {}
        for row in rows:
            by_form.setdefault(row[0].strip("`"), []).append(row)
        stable = re.search(r"Within 10·κu in every dtype: (.*?)\.(?: Beyond|$)", measured)
        for form in re.findall(r"`([^`]+)` \(worst", stable.group(1)) if stable else []:
            assert all(not _number(r[ratio]) > 10 for r in by_form[form]), (name, form)
        beyond = re.search(r"Beyond 10·κu: (.*)$", measured)
        for form, worst in re.findall(r"`([^`]+)` \(worst ([^,]+),", beyond.group(1)) if beyond else []:
            assert max(_number(r[ratio]) for r in by_form[form]) == pytest.approx(float(worst), rel=0.01)
        clean = re.search(r"((?:`[^`]+`(?:, )?)+) returns? no inf/nan", measured)
        for form in re.findall(r"`([^`]+)`", clean.group(1)) if clean else []:
            assert all(_number(r[nonfinite]) in (0, float("nan")) or np.isnan(_number(r[nonfinite]))
                       for r in by_form[form]), (name, form)


@pytest.mark.parametrize("name", ["softmax", "cross_entropy", "batchnorm"])
def test_captions_name_only_the_ops_own_formulations(name):
    text = (COMMITTED / f"{name}.md").read_text()
    every = {f for op in OPS.values() for f in op.formulations}
    captions = re.findall(r"^\*(\w+): bits of error(.*)\*$", text, flags=re.M)
    assert captions
    for op_name, caption in captions:
        named = {w for w in re.findall(r"[a-z_]+", caption.replace("-", "_")) if w in every}
        assert named <= set(get_op(op_name).formulations), (op_name, named)


def test_out_containing_the_current_directory_is_refused(tmp_path, cli):
    out = tmp_path / "reports"
    (out / "figures").mkdir(parents=True)
    proc = cli("report", "--out", str(out), cwd=out / "figures", env={"GRADAUDIT_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 2 and "current directory" in proc.stderr and "Traceback" not in proc.stderr
    assert (out / "figures").is_dir()


def test_findings_are_generated_from_the_points_they_summarise():
    from numeric.report import _findings
    from numeric.sweep import UNREPRESENTABLE

    def point(ratio, nonfinite=0.0):
        return {"max_rel_over_kappa_u": ratio, "pct_nonfinite": nonfinite, "input_overflow": False}
    series = {"a": {"float32": [(1.0, point(1.5)), (10.0, point(193.0))]},
              "b": {"float32": [(1.0, point(2.0)), (10.0, point(3.0, nonfinite=25.0))]},
              "c": {"float32": [(1.0, dict(UNREPRESENTABLE))]}}
    text = _findings(series, ("float32",), xname="M")
    assert "Beyond 10·κu: `a` (worst 193, float32)" in text
    assert "`b` returns inf/nan in float32 at 1 of 2 measured points (M = 10)" in text
    assert "Within 10·κu in every dtype: `b` (worst 3, float32)" in text
    assert "Inputs overflow float32 at M = 1" in text
    assert "`c`" not in text                      # nothing measured, nothing claimed


def test_entries_that_are_not_part_of_the_old_set_are_kept(softmax_float32_set, tmp_path, cli):
    import shutil
    out = tmp_path / "reports"
    shutil.copytree(softmax_float32_set / "out", out)
    (out / "exhaustive").mkdir()
    (out / "exhaustive" / "softmax.md").write_text("another command's output")
    (out / "notes.txt").write_text("mine")
    shutil.copytree(softmax_float32_set / "cache", tmp_path / "cache")
    proc = cli("report", "softmax", "--dtypes", "float32", "--seed", "1", "--out", str(out),
               env={"GRADAUDIT_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.err
    assert (out / "exhaustive" / "softmax.md").read_text() == "another command's output"
    assert (out / "notes.txt").read_text() == "mine"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 1
    assert "notes.txt" not in manifest["files"] and "softmax.md" in manifest["files"]
    assert all((out / f).is_file() for f in manifest["files"])


def test_a_cache_directory_without_write_permission_means_no_cache_and_one_warning(cache, monkeypatch, capsys):
    import derive.cache

    def denied(path, data):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(derive.cache, "write_bytes", denied)       # what a read-only directory does (root ignores modes)
    first, second = prove_op(OPS["softmax"]), prove_op(OPS["softmax"])
    assert first.proved and second.proved and not second.cached
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "Permission denied" in warnings[0] and str(cache) in warnings[0]
