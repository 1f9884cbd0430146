"""The gradaudit pytest plugin: --gradaudit-examples, the Markdown counterexample of a failing
assert_gradient in the report, and the gradaudit-ci Hypothesis profile."""
import pytest
from hypothesis import settings

import numeric.pytest_plugin as plugin

pytest_plugins = ["pytester"]

# Load the plugin explicitly whether or not the entry point is installed in this environment.
PLUGIN = ("-p", "no:gradaudit", "-p", "numeric.pytest_plugin", "-p", "no:cacheprovider")

WRONG_SOFTMAX_BACKWARD = '''
import numpy as np
from numeric import assert_gradient

def diagonal_only(z, dy):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    s = e / e.sum(axis=1, keepdims=True)
    return s * (1 - s) * dy

def test_wrong():
    assert_gradient(diagonal_only, "softmax_backward", dtype="float32", examples=20)
'''


def test_failing_assert_gradient_shows_markdown(pytester):
    pytester.makepyfile(test_user=WRONG_SOFTMAX_BACKWARD)
    result = pytester.runpytest_subprocess(*PLUGIN)
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "gradaudit counterexample" in text
    assert "### `softmax_backward` in float32: **FAILED**" in text
    assert "| output | index | got | expected |" in text and "dy = " in text


EXAMPLES_SEEN = '''
import json, os
from numeric import check_gradient

calls = []
def f(z):
    calls.append(1)
    e = __import__("numpy").exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)

def test_count():
    result = check_gradient(f, "softmax", edge_cases=False)
    assert result.ok
    print("EXAMPLES", result.examples, os.environ.get("GRADAUDIT_EXAMPLES"))

def test_explicit_wins():
    assert check_gradient(f, "softmax", edge_cases=False, examples=2).examples == 2
'''


def test_examples_option(pytester):
    pytester.makepyfile(test_user=EXAMPLES_SEEN)
    result = pytester.runpytest_subprocess(*PLUGIN, "--gradaudit-examples", "3", "-s")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*EXAMPLES 3 3*"])


def test_examples_option_rejects_bad_value(pytester):
    pytester.makepyfile(test_user="def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess(*PLUGIN, "--gradaudit-examples", "zero")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--gradaudit-examples must be a positive integer; got 'zero'*"])


def test_ci_profile_registered():
    profile = settings.get_profile(plugin.CI_PROFILE)
    assert profile.derandomize is True and profile.deadline is None and profile.database is None
    assert profile.max_examples == 50


def test_ci_profile_loads_from_the_command_line(pytester):
    pytester.makepyfile(test_user="from hypothesis import settings\n\ndef test_profile():\n"
                                  "    assert settings().derandomize and settings().max_examples == 50\n")
    result = pytester.runpytest_subprocess(*PLUGIN, "--hypothesis-profile=gradaudit-ci")
    result.assert_outcomes(passed=1)
