"""The tutorial (``shared/reference/tutorial-batchnorm-softmax.md``) audited by ``gradaudit audit``: the
wrong numbers the old hand-curated list found are still found, with independently computed values."""
import importlib.util
import math
import statistics
from pathlib import Path

import pytest

from numeric.docaudit import audit_document

TUTORIAL = Path(__file__).resolve().parent.parent.parent / "shared" / "reference" / "tutorial-batchnorm-softmax.md"
pytestmark = pytest.mark.skipif(not TUTORIAL.is_file(), reason="the tutorial is not beside the repository")


@pytest.fixture(scope="module")
def audit():
    return audit_document(TUTORIAL, timeout=60)


def at(audit, line, text):
    return [c for c in audit.checks if c.line == line and text in c.what]


def test_outlier_example_is_wrong_and_its_certified_values_match_an_independent_softmax(audit):
    (check,) = at(audit, 3698, "softmax")
    e = [math.exp(v) for v in (1.0, 1.0, 5.0)]
    independent = [v / sum(e) for v in e]
    shown = [float(v) for v in check.certified.strip("[]").split(",")]
    assert [round(v, 4) for v in shown] == [round(v, 4) for v in independent]
    assert check.verdict == "wrong"          # the tutorial prints 0.037, 0.037, 0.927


@pytest.mark.parametrize("neuron, line, ok", [((0.56, 2.31, 1.78, -0.45), 531, True),
                                              ((-0.23, 0.87, 2.45, 0.12), 532, False),
                                              ((1.45, -1.12, 0.34, 0.89), 533, False)])
def test_batchnorm_table_rows_2_and_3_are_wrong_and_row_1_is_right(audit, neuron, line, ok):
    (variance,) = at(audit, line, "variance")
    assert abs(float(variance.certified) - statistics.pvariance(neuron)) < 1e-4
    assert (variance.verdict == "agrees") is ok
    (normalized,) = at(audit, line, "normalized")
    assert (normalized.verdict == "agrees") is ok


def test_wrong_output_blocks_and_prose_statistics_are_found(audit):
    wrong_lines = {c.line for c in audit.wrong}
    manual_softmax = next(b for b in audit.blocks if b.line == 2847)
    if importlib.util.find_spec("torch") is not None:
        assert {2918, 2919, 2920, 2924} <= wrong_lines   # Output of the manual softmax block: code prints 0.5810 …
    else:
        assert manual_softmax.status == "skipped" and "torch is not importable" in manual_softmax.error
    assert 903 in wrong_lines                            # "Output std: 1.0000" of a normalized batch of 4
    assert {431, 434, 437} <= wrong_lines                # std = 0.963 / 1.058 / 0.604 match neither convention
    assert 3281 in wrong_lines and 3631 in wrong_lines   # probabilities inconsistent with the printed logits
    right = {c.line for c in audit.checks if c.verdict == "agrees"}
    assert {2149, 2303, 2382, 2520, 2673} <= right       # worked examples that are right stay right
