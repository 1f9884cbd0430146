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


def test_derive_lists_every_known_mistake_with_its_verdict(capsys):
    """``gradaudit derive`` (and the reports) list the op's catalogue of known mistakes, each shown to differ."""
    from derive import get_op
    assert main(["derive", "batchnorm_backward"]) == 0
    out = capsys.readouterr().out
    section = out.split("# Known mistakes", 1)[1].split("# Generated numpy code", 1)[0]
    for m in get_op("batchnorm_backward").mistakes:
        assert f"- differs: `{m.name}` — {m.message}" in section


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


def test_the_program_flushes_its_output_and_runs_the_exit_handlers(tmp_path):
    """``run`` ends the process with os._exit (no interpreter teardown): every line printed still reaches
    the pipe, and exit handlers still run — here one that a user's --ops file registered."""
    from derive import OPS
    marker = tmp_path / "exit-handler-ran"
    ops = tmp_path / "ops.py"
    ops.write_text(f"import atexit, pathlib\natexit.register(pathlib.Path({str(marker)!r}).write_text, 'ran')\n")
    proc = run("--ops", str(ops), "list")
    assert proc.returncode == 0, proc.stderr
    assert marker.read_text() == "ran"
    assert all(name in proc.stdout for name in OPS)
    assert run("--ops", str(ops), "derive", "nope").returncode == 2


def test_a_profiler_attached_to_the_program_still_writes_its_data(tmp_path):
    """``python -m cProfile -o F -m numeric.cli …`` writes F: with a profiler attached the process exits
    through the interpreter's teardown, where cProfile writes it (os._exit would skip it)."""
    out = tmp_path / "cli.prof"
    proc = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), "-m", "numeric.cli", "list"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0
