"""pytest integration, registered through the ``pytest11`` entry point ``gradaudit``.

* ``--gradaudit-examples N``: the default number of Hypothesis examples of ``check_gradient`` /
  ``assert_gradient`` (and of everything built on them) for the whole run; a call that passes
  ``examples=`` itself keeps its own.  Also exported as the environment variable ``GRADAUDIT_EXAMPLES``.
* A test that fails inside ``assert_gradient`` gets a report section "gradaudit counterexample" with the
  Markdown of the check (``CheckResult.to_markdown()``: worst element, diagnosis, shrunk inputs).
* Hypothesis settings profile ``gradaudit-ci`` (load with ``--hypothesis-profile=gradaudit-ci``):
  derandomized (the same examples on every CI run), no deadline (shared CI machines are noisy), no
  example database, 50 examples, failure blobs printed so a failure can be reproduced locally.
"""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

__all__ = ["CI_PROFILE", "ENV_EXAMPLES"]

CI_PROFILE = "gradaudit-ci"
ENV_EXAMPLES = "GRADAUDIT_EXAMPLES"

settings.register_profile(CI_PROFILE, max_examples=50, deadline=None, derandomize=True, database=None,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow])

_saved: list = []          # (module or dict, name, old value) to restore at exit


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise pytest.UsageError(f"--gradaudit-examples must be a positive integer; got {text!r}")
    return value


def pytest_addoption(parser):
    group = parser.getgroup("gradaudit", "gradient checks (gradaudit)")
    group.addoption("--gradaudit-examples", action="store", default=None, metavar="N",
                    help="default number of Hypothesis examples per check_gradient / assert_gradient call")


def _check_module():
    """The module that defines ``check_gradient`` (numeric/check.py or the numeric/check package)."""
    import sys
    from numeric import check_gradient
    return check_gradient, sys.modules[check_gradient.__module__]


def pytest_configure(config):
    text = config.getoption("--gradaudit-examples", default=None)
    if text is None:
        return
    n = _positive_int(text)
    os.environ[ENV_EXAMPLES] = str(n)          # read by numeric.check when it is imported after this
    fn, module = _check_module()               # and set where it was imported already
    if isinstance(getattr(module, "DEFAULT_EXAMPLES", None), int):
        _saved.append((module, "DEFAULT_EXAMPLES", module.DEFAULT_EXAMPLES))
        module.DEFAULT_EXAMPLES = n
    defaults = fn.__kwdefaults__ or {}
    if isinstance(defaults.get("examples"), int):     # a keyword-only int default: every caller sees N
        _saved.append((defaults, "examples", defaults["examples"]))
        defaults["examples"] = n


def pytest_unconfigure(config):
    while _saved:
        target, name, value = _saved.pop()
        if isinstance(target, dict):
            target[name] = value
        else:
            setattr(target, name, value)
    if config.getoption("--gradaudit-examples", default=None) is not None:
        os.environ.pop(ENV_EXAMPLES, None)


def _failed_check(excinfo):
    """The CheckResult behind an assert_gradient failure: the exception's ``result`` attribute, else
    the ``result`` local of the ``assert_gradient`` frame in the traceback."""
    result = getattr(excinfo.value, "result", None)
    if result is not None and hasattr(result, "to_markdown"):
        return result
    tb = excinfo.tb
    found = None
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "assert_gradient" and frame.f_globals.get("__name__", "").startswith("numeric"):
            candidate = frame.f_locals.get("result")
            if hasattr(candidate, "to_markdown"):
                found = candidate
        tb = tb.tb_next
    return found


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is None or not report.failed or not call.excinfo.errisinstance(AssertionError):
        return
    result = _failed_check(call.excinfo)
    if result is not None:
        report.sections.append(("gradaudit counterexample", result.to_markdown()))
