"""Fixtures shared by the tests that run dstore nodes; the harness itself (processes, Python
writers, waits, network namespaces) is tests/harness.py."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from harness import DSTORE, REPO, Cluster, Net, writer_kind  # noqa: F401  (a fixture)


@pytest.fixture(scope="session")
def dstore_binary() -> Path:
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "dstore-cli"], cwd=REPO, check=True)
    return DSTORE


@pytest.fixture
def cluster(tmp_path: Path, dstore_binary: Path) -> Iterator[Cluster]:
    """`dstore node` processes, every one stopped at teardown, also when the test fails."""
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop_all()


@pytest.fixture
def net() -> Iterator[Net]:
    """Five hosts in network namespaces; torn down after the `cluster` that runs on them."""
    n = Net(5)
    try:
        n.up()
        yield n
    finally:
        n.down()
