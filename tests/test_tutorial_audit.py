import math
import statistics

from numeric.tutorial_audit import CLAIMS, audit


def by_line_and_text(line, text):
    return next(r for r in audit() if r["claim"].line == line and text in r["claim"].what)


def test_outlier_example_is_flagged_with_an_independently_computed_softmax():
    row = by_line_and_text(3698, "softmax([1, 1, 5])")
    e = [math.exp(v) for v in (1.0, 1.0, 5.0)]
    independent = [v / sum(e) for v in e]
    assert [round(v, 4) for v in row["exact"]] == [round(v, 4) for v in independent]
    assert not any(row["agrees"])               # the tutorial prints 0.037, 0.037, 0.927


def test_batchnorm_table_rows_2_and_3_are_wrong_and_row_1_is_right():
    for neuron, line, ok in (((0.56, 2.31, 1.78, -0.45), 473, True), ((-0.23, 0.87, 2.45, 0.12), 532, False),
                             ((1.45, -1.12, 0.34, 0.89), 533, False)):
        row = by_line_and_text(line, "variance")
        assert abs(row["exact"][0] - statistics.pvariance(neuron)) < 1e-12
        assert all(row["agrees"]) is ok


def test_every_claim_has_as_many_certified_values_as_printed_numbers():
    for row in audit():
        assert len(row["exact"]) == len(row["claim"].claimed) == len(row["agrees"])
    assert {c.family for c in CLAIMS} == {"softmax", "cross_entropy", "batchnorm"}
