"""The suite's own promise (docs/guide/development.md): tests sharing a service carry an xdist_group, and
`make test` (`--dist loadgroup`) runs each group on one worker, so the service starts once. pytest
9.2 silently broke that (pytest-xdist issue 1386); this fails if an upgrade breaks it again."""

import os
import subprocess
import sys

GROUPED = """
import os
import pytest

pytestmark = pytest.mark.xdist_group("one_service")


@pytest.mark.parametrize("n", range(6))
def test_runs_beside_the_others(n):
    with open(os.environ["RAN_ON"], "a") as ran_on:
        ran_on.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")
"""


def test_a_group_of_tests_runs_on_one_worker(tmp_path):
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:looptime_plugin", "-n", "3", "--dist", "loadgroup",
         str(tmp_path / "test_grouped.py")],
        cwd=tmp_path, env={**os.environ, "RAN_ON": str(tmp_path / "ran_on")}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    ran_on = (tmp_path / "ran_on").read_text().split()
    assert len(ran_on) == 6 and len(set(ran_on)) == 1, f"one group ran on several workers: {ran_on}"
