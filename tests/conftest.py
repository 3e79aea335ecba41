"""Shared by the tests that run `dstore node` processes on 127.0.0.1: building the binary,
starting nodes, and stopping every one of them at teardown."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
DSTORE = TARGET / "release" / "dstore"
SECRET = "e2e cluster secret"
KEY = "5a" * 32


@pytest.fixture(scope="session")
def dstore_binary() -> Path:
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "dstore-cli"], cwd=REPO, check=True)
    return DSTORE


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("DSTORE_")}
    e.update(DSTORE_SECRET=SECRET, DSTORE_KEY=KEY)
    e.update(extra)
    return e


class Nodes:
    """Starts `dstore node` processes and stops them all at teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[str]] = []
        self.addrs: list[str] = []
        self.files: list = []  # log files, closed at teardown

    def start(
        self, *extra: str, listen: str = "127.0.0.1:0", peer: str | None = None, environ: dict[str, str] | None = None
    ) -> str:
        i = len(self.procs)
        args = [str(DSTORE), "node", "--root", str(self.tmp / f"n{i}"), "--listen", listen, *extra]
        if peer:
            args += ["--peer", peer]
        log = open(self.tmp / f"n{i}.log", "w")
        self.files.append(log)
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, env=environ or env())
        self.procs.append(p)
        line = self.first_line(p)
        assert " listening on " in line, f"node {i} did not start: {line!r}, log: {self.log(i)}"
        addr = line.strip().rsplit(" ", 1)[1]
        self.addrs.append(addr)
        return addr

    @staticmethod
    def first_line(p: subprocess.Popen[str]) -> str:
        """The node's one line of stdout (its address); nothing else is written there."""
        assert p.stdout is not None
        line = p.stdout.readline()
        p.stdout.close()
        return line

    def cluster(self, n: int, *extra: str) -> list[str]:
        first = self.start(*extra)
        for _ in range(n - 1):
            self.start(*extra, peer=first)
        time.sleep(1.5)  # a few heartbeats: let peer exchange finish before clients place data
        return self.addrs

    def log(self, i: int) -> str:
        return (self.tmp / f"n{i}.log").read_text()

    def stop_all(self) -> list[int | None]:
        codes = []
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                codes.append(p.wait(timeout=15))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait())
        for f in self.files:
            f.close()
        self.files.clear()
        return codes


@pytest.fixture
def nodes(tmp_path: Path, dstore_binary: Path):
    n = Nodes(tmp_path)
    yield n
    n.stop_all()


def dstore(*args: str, environ: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    r = subprocess.run([str(DSTORE), *args], capture_output=True, env=environ or env(), timeout=120)
    if check:
        assert r.returncode == 0, r.stderr.decode()
    return r
