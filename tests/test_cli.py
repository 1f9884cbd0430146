import subprocess
import sys

import pytest

from numeric.cli import main


def run(*argv):
    return subprocess.run([sys.executable, "-m", "numeric.cli", *argv], capture_output=True, text=True)


def test_derive_batchnorm_backward_shows_steps_proof_and_code(capsys):
    assert main(["derive", "batchnorm_backward"]) == 0
    out = capsys.readouterr().out
    for needle in ("Derivation", "$$", "Proof: proved", "N=4", "```python",
                   "dvar", "Generic size"):
        assert needle in out
    assert "NOT PROVED" not in out and "FAILED" not in out


def test_list_names_every_op(capsys):
    from derive import OPS
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in OPS)


@pytest.mark.parametrize("argv", [[], ["derive"], ["derive", "nope"], ["derive", "softmax", "--all"],
                                  ["frobnicate"], ["list", "--bogus"]])
def test_usage_errors_exit_2_with_one_line_and_no_traceback(argv):
    proc = run(*argv)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
