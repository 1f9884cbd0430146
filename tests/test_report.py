import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from numeric.report import FAMILIES, ReportConfig, source_digest, write_reports

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "reports"


def test_committed_reports_are_from_the_current_source():
    manifest = json.loads((COMMITTED / "manifest.json").read_text())
    assert manifest["source_digest"] == source_digest(), \
        "reports/ is stale: run `gradaudit report` and commit reports/"
    assert sorted(manifest["families"]) == sorted(FAMILIES)
    for family in FAMILIES:
        assert (COMMITTED / f"{family}.md").is_file()


def test_committed_reports_reference_only_existing_figures_and_prove_everything():
    for path in COMMITTED.glob("*.md"):
        text = path.read_text()
        for figure in re.findall(r"\(figures/([^)]+\.png)\)", text):
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
    assert any(str(f).endswith(".png") for f in files)
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
