"""The CI skip policy (tests/skip_policy.py) on a test file of its own: in CI a skip fails the run
unless its reason is allowed; outside CI skips stay skips. And shared() refuses a test that reads
../shared/data without the realdata mark."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

CASES = '''
import pytest

def test_runs():
    pass

def test_skips_for_a_missing_install():
    pytest.skip("no such package installed")

def test_skips_for_no_gpu():
    pytest.skip("needs CUDA (scripts/gpu_check.sh)")
'''


def run_pytest(tmp_path, ci: str | None, *select: str):
    (tmp_path / "test_cases.py").write_text(CASES)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": ci} if ci is not None else {})
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "skip_policy", "-p", "no:cacheprovider", "test_cases.py", *select],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )


def test_in_ci_an_unexpected_skip_fails_the_run_and_is_named(tmp_path):
    out = run_pytest(tmp_path, "true")
    assert out.returncode == 1, out.stdout
    assert "test_cases.py::test_skips_for_a_missing_install: no such package installed" in out.stdout
    assert "test_skips_for_no_gpu:" not in out.stdout.split("skips not allowed in CI")[1]


def test_in_ci_an_allowed_skip_passes_and_outside_ci_every_skip_does(tmp_path):
    assert run_pytest(tmp_path, "true", "-k", "not missing_install").returncode == 0
    assert run_pytest(tmp_path, None).returncode == 0
    assert run_pytest(tmp_path, "false").returncode == 0


def test_reading_the_shared_data_needs_the_realdata_mark():
    from conftest import shared

    with pytest.raises(pytest.fail.Exception, match="reads ../shared/data: mark it @pytest.mark.realdata"):
        shared("beir")
