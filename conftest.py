"""Test-session settings shared by every test folder (packages' and cross-package tests).

``make test`` runs pytest-xdist with ``--dist loadfile``, scheduled by :class:`_FileScheduling`:
the tests of one file stay on one worker, so a module fixture (a trained run, a browser) is built
once, except the files in :data:`SPREAD_OVER_WORKERS`, whose tests are independent and costly one
by one (copies of shared runs) and are shared out among the workers. The longest files
(:data:`LONGEST_FIRST`) start first, so that no worker is left alone with one at the end.

(xdist's own ``loadgroup`` cannot group on pytest >= 9.2, whose node ids ignore the group suffix
xdist writes: pytest-xdist issue #1386. This scheduler groups by node id alone.)
"""

from __future__ import annotations

from typing import Any

import pytest

SPREAD_OVER_WORKERS = frozenset({"tests/test_bad_input.py"})

# Files measured longest (make test's slowest list), longest first.
LONGEST_FIRST = (
    "tests/test_ddp.py",
    "tests/test_pipeline_digits.py",
    "tests/test_train_selection.py",
    "tests/test_reliability.py",
    "tests/test_own_data_readme.py",
    "tests/test_stopped_runs.py",
    "tests/test_ddp_embed.py",
    "tests/test_training_quality.py",
    "tests/test_tasks.py",
    "tests/test_cifar_pipeline.py",
)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Return the file scheduler for ``--dist loadfile`` (None: xdist's own for other modes)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class _FileScheduling(LoadScopeScheduling):
        """A work unit per test file (per test in a spread file), the longest files first."""

        ordered = False

        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return nodeid if path in SPREAD_OVER_WORKERS else path

        def _assign_work_unit(self, node: Any) -> None:
            if not self.ordered:
                for scope in reversed(LONGEST_FIRST):
                    if scope in self.workqueue:
                        self.workqueue.move_to_end(scope, last=False)
                self.ordered = True
            super()._assign_work_unit(node)

    return _FileScheduling(config, log)
