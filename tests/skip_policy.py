"""In CI (environment variable CI set), a skipped test fails the run unless its reason is on the
allow-list below: a test that quietly skips checks nothing, and a missing install or data folder
must show as a failure there, not as a shorter green run. Loaded by conftest.py; a plugin of its
own so that tests/test_skip_policy.py can run it on a file of its own."""

from __future__ import annotations

import os
import re

import pytest

# reason pattern -> why CI may skip it
ALLOWED_IN_CI = {
    r"needs CUDA": "CI has no GPU; scripts/gpu_check.sh runs these tests on a GPU node",
}

_unexpected: list[tuple[str, str]] = []


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def pytest_runtest_logreport(report):
    if not (report.skipped and _in_ci()) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    if not any(re.search(pattern, reason) for pattern in ALLOWED_IN_CI):
        _unexpected.append((report.nodeid, reason))


def pytest_terminal_summary(terminalreporter):
    if _unexpected:
        terminalreporter.section("skips not allowed in CI (tests/skip_policy.py)")
        for nodeid, reason in _unexpected:
            terminalreporter.line(f"{nodeid}: {reason}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    if _unexpected and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
