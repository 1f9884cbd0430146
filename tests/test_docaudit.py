"""gradaudit audit: two documents written for these tests (tests/data/docaudit_*.md), one all right and
one with four planted errors, give exactly the planted verdicts; expected values come from math /
statistics, not from the code under test."""
import math
import statistics
import textwrap
from pathlib import Path

import pytest

from numeric.cli import main
from numeric.docaudit import audit_document, audit_text, render_markdown
from numeric.docaudit.arith import evaluate

DATA = Path(__file__).resolve().parent / "data"
CORRECT, PLANTED = DATA / "docaudit_correct.md", DATA / "docaudit_planted.md"
CHECKED_LINES = {18, 19, 24, 31, 32, 38, 45, 46, 50, 51}
PLANTED_LINES = {19: "code output", 24: "inline", 38: "inline", 46: "table"}   # Output, softmax, loss, std


def softmax(z):
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


@pytest.fixture(scope="module")
def correct():
    return audit_document(CORRECT, timeout=60)


@pytest.fixture(scope="module")
def planted():
    return audit_document(PLANTED, timeout=60)


def test_the_correct_document_has_every_claim_checked_and_right(correct):
    assert {c.line for c in correct.checks} == CHECKED_LINES
    assert [c for c in correct.checks if c.verdict != "agrees"] == []
    assert correct.ok


def test_the_planted_document_gives_exactly_the_planted_verdicts(planted):
    wrong = {c.line: c.source for c in planted.wrong}
    assert wrong == PLANTED_LINES
    assert {c.line for c in planted.checks} == CHECKED_LINES
    assert all(c.verdict == "agrees" for c in planted.checks if c.line not in PLANTED_LINES)
    assert planted.wrong_blocks() == [0, 17, 37, 43]      # prose, the Output fence, the loss fence, the table


def test_planted_errors_are_reported_with_independently_computed_values(planted):
    by_line = {c.line: c for c in planted.wrong}
    exact_loss = -math.log(softmax([2.0, 1.0, 0.1])[0])
    assert f"{exact_loss:.4f}" in by_line[19].certified                          # code prints 0.4170, doc 0.4710
    shown = [float(v) for v in by_line[24].certified.strip("[]").split(",")]
    assert shown == pytest.approx(softmax([1.0, 2.0, 3.0]), abs=1e-5)
    assert float(by_line[38].certified) == pytest.approx(-math.log(0.8), abs=1e-5)
    assert float(by_line[46].certified) == pytest.approx(statistics.pstdev([10.0, 12.0, 14.0]), abs=1e-3)
    assert "neither convention" in by_line[46].note


def test_conventions_are_named(correct):
    notes = {c.line: c.note for c in correct.checks if "convention" in c.note}
    assert "population convention matches" in notes[45]      # std 2.0 of the textbook 8 numbers: σ = 2
    assert statistics.stdev([10.0, 12.0, 14.0]) == 2.0 and "sample convention matches" in notes[46]


def test_report_is_deterministic_and_lists_wrong_first(planted):
    again = audit_document(PLANTED, timeout=60)
    text = render_markdown(planted)
    assert text == render_markdown(again)
    rows = [r for r in text.splitlines() if r.startswith("| ") and r.split("|")[1].strip().isdigit()]
    verdicts = [r.split("|")[6].strip() for r in rows[:len(planted.checks)]]
    assert verdicts[:4] == ["**wrong**"] * 4 and "**wrong**" not in verdicts[4:]


def test_cli_exit_codes(tmp_path, capsys):
    assert main(["audit", str(CORRECT), "--out", str(tmp_path / "a.md")]) == 0
    assert (tmp_path / "a.md").read_text().startswith("# Audit of")
    assert main(["audit", str(PLANTED), "--out", str(tmp_path / "b.md")]) == 1
    capsys.readouterr()
    for argv in (["audit", str(tmp_path / "missing.md")], ["audit"], ["audit", str(CORRECT), "--timeout", "0"],
                 ["audit", str(CORRECT), "--claims", str(tmp_path / "none.toml")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_claims_file_pins_numbers_to_op_calls(tmp_path, capsys):
    claims = tmp_path / "claims.toml"
    claims.write_text(textwrap.dedent("""
        [[claim]]
        line = 24
        op = "softmax"
        args = { z = [[1.0, 2.0, 3.0]] }
        index = [0, 2]
        printed = "0.6652"

        [[claim]]
        line = 25
        op = "softmax"
        args = { z = [[1.0, 2.0, 3.0]] }
        index = [0, 2]
        printed = 0.6650

        [[claim]]
        line = 38
        op = "cross_entropy"
        args = { z = [[0.0, 0.0]], y = [[1.0, 0.0]] }
        printed = 0.5
    """))
    audit = audit_document(CORRECT, claims=claims, timeout=60)
    pinned = {c.line: c for c in audit.checks if c.source == "claims file"}
    assert pinned[24].verdict == "agrees"                       # softmax([1, 2, 3])[2] = 0.66524…
    assert pinned[25].verdict == "wrong"                        # 0.6650 as written: four decimals, 0.66524… ≠
    assert pinned[38].verdict == "wrong"                        # log 2 = 0.693…, not 0.5
    assert float(pinned[38].certified) == pytest.approx(math.log(2), abs=1e-6)
    assert main(["audit", str(CORRECT), "--claims", str(claims), "--out", str(tmp_path / "c.md")]) == 1
    bad = tmp_path / "bad.toml"
    bad.write_text('[[claim]]\nline = 1\nop = "softmax"\nargs = { q = [[1.0]] }\nprinted = "1"\n')
    capsys.readouterr()
    assert main(["audit", str(CORRECT), "--claims", str(bad)]) == 2
    assert "no input 'q'" in capsys.readouterr().err


def test_sys_exit_and_an_endless_loop_are_contained_and_reported():
    doc = textwrap.dedent("""
        ```python
        x = 41
        import sys
        sys.exit(3)
        ```

        ```python
        print(x + 1)
        ```

        **Output:**

        ```
        42
        ```

        ```python
        while True:
            pass
        ```

        ```python
        print(x)
        ```

        ```python
        import not_a_module_gradaudit_xyz
        ```
    """)
    audit = audit_text(doc, timeout=2)
    status = [b.status for b in audit.blocks]
    assert status[:3] == ["exit", "ok", "timeout"]
    assert "sys.exit(3)" in audit.blocks[0].error and "2 s" in audit.blocks[2].error
    assert audit.blocks[1].verdict == "agrees"                   # the namespace survived sys.exit
    assert status[3] == "error" and "NameError" in audit.blocks[3].error   # a fresh child after the timeout
    assert status[4] == "skipped" and "not importable" in audit.blocks[4].error
    assert "| timeout: no result after 2 s" in render_markdown(audit)


def test_unseeded_random_output_is_only_checked_for_consistency():
    doc = textwrap.dedent("""
        ```python
        import random
        p = random.random()
        print("Probabilities:", [round(p, 2), round(1 - p, 2) + 0.3])
        ```

        **Output:**

        ```
        Probabilities: [0.25, 0.85]
        ```

        ```python
        import random
        random.seed(0)
        print(round(random.random(), 4))
        ```

        **Output:**

        ```
        0.8444
        ```
    """)
    audit = audit_text(doc, timeout=30)
    first, second = audit.blocks
    assert not first.deterministic and "random" in first.reason and first.verdict == "wrong"  # sums to 1.10
    assert second.deterministic and second.verdict == "agrees"      # random.seed(0): 0.8444218515250481


def test_arithmetic_is_parsed_never_evaluated():
    assert evaluate("__import__('os').system('true')") is None
    assert evaluate("(1).__class__") is None
    assert float(evaluate("e^2.0")) == pytest.approx(math.exp(2.0))
    assert float(evaluate("[(0.56-1.05)² + (2.31-1.05)²] / 4")) == pytest.approx((0.49 ** 2 + 1.26 ** 2) / 4)


def test_claims_inside_prose_sentences():
    doc = ("For logits `z = [2, 1, 0.1]` we get `softmax(z) ≈ [0.66, 0.24, 0.10]`.\n\n"
           "Halving the logits: softmax([1, 2, 3] / 2) = [0.19, 0.31, 0.61], and -log(0.5) = 0.69.\n")
    checks = {(c.line, c.what.split("(")[0]): c for c in audit_text(doc, run_code=False).checks}
    assert checks[(1, "softmax")].verdict == "agrees"
    assert checks[(3, "softmax")].verdict == "wrong"            # softmax([0.5, 1, 1.5])[2] = 0.5065, not 0.61
    assert float(checks[(3, "-log")].certified) == pytest.approx(math.log(2), abs=1e-4)
    assert softmax([0.5, 1.0, 1.5])[2] == pytest.approx(0.5065, abs=1e-4)


def test_output_comments_inside_code_are_checked():
    doc = textwrap.dedent("""
        ```python
        import math
        e = [math.exp(v) for v in (0.0, 1.0, 2.0)]
        s = [v / sum(e) for v in e]
        print(round(s[2], 4))  # Output: 0.6652
        print(round(s[1], 4))  # Output: 0.2474
        ```
    """)
    checks = {c.line: c.verdict for c in audit_text(doc, timeout=30).checks}
    assert softmax([0.0, 1.0, 2.0])[2] == pytest.approx(0.6652, abs=5e-5)
    assert checks == {6: "agrees", 7: "wrong"}                   # s[1] = 0.2447, not 0.2474


def test_a_loss_is_checked_against_the_probability_printed_beside_it():
    doc = textwrap.dedent("""
        ```python
        import random
        print(random.random())
        ```

        **Output:**

        ```
        Sample 0:
          True label: 2
          Probabilities: [0.10, 0.20, 0.70]
          Loss: 0.3567
        Sample 1:
          True label: 0
          Probabilities: [0.50, 0.25, 0.25]
          Loss: 0.6391
        ```
    """)
    losses = {c.line: c for c in audit_text(doc, run_code=False).checks if "Loss" in c.what}
    assert -math.log(0.7) == pytest.approx(0.3567, abs=5e-5) and -math.log(0.5) == pytest.approx(0.6931, abs=5e-5)
    assert [losses[n].verdict for n in sorted(losses)] == ["agrees", "wrong"]
