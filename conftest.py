"""Test-session settings shared by every test folder (packages' and cross-package tests).

Under pytest-xdist (``make test`` runs ``--dist loadgroup``) the tests of one file stay on one
worker, so a module fixture (a trained run, a browser) is built once. A file whose tests are
independent and costly one by one (no module fixture, or only copies of shared runs) sets
``SPREAD_OVER_WORKERS = True`` and its tests are shared out among the workers.
"""

from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Group each test with the other tests of its file unless the file spreads them."""
    for item in items:
        module = getattr(item, "module", None)
        if not getattr(module, "SPREAD_OVER_WORKERS", False):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
