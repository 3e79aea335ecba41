"""End to end: `dstore node` processes on 127.0.0.1, driven by the `dstore` client commands
and by raw sockets. Every test stops every process it starts (the `nodes` fixture's teardown)
and works in pytest's temporary directories."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
DSTORE = TARGET / "release" / "dstore"
SECRET = "e2e cluster secret"
KEY = "5a" * 32


@pytest.fixture(scope="session", autouse=True)
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
def nodes(tmp_path: Path):
    n = Nodes(tmp_path)
    yield n
    n.stop_all()


def dstore(*args: str, environ: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    r = subprocess.run([str(DSTORE), *args], capture_output=True, env=environ or env(), timeout=120)
    if check:
        assert r.returncode == 0, r.stderr.decode()
    return r


def test_a_value_put_through_one_member_is_read_listed_and_removed_through_others(nodes: Nodes, tmp_path: Path) -> None:
    a, b, c = nodes.cluster(3)
    data = os.urandom(3 * 1024 * 1024 + 11)
    (tmp_path / "in.bin").write_bytes(data)
    dstore("put", "--peer", a, "photos/big.bin", str(tmp_path / "in.bin"))
    dstore("put", "--peer", b, "--plain", "notes/plain.txt", str(tmp_path / "in.bin"))
    assert dstore("ls", "--peer", c).stdout.decode().split() == ["notes/plain.txt", "photos/big.bin"]
    dstore("get", "--peer", c, "photos/big.bin", "-o", str(tmp_path / "out.bin"))
    assert (tmp_path / "out.bin").read_bytes() == data
    assert dstore("get", "--peer", b, "notes/plain.txt").stdout == data  # to a pipe
    status = dstore("status", "--peer", a).stdout.decode()
    assert "members  3" in status and "keys     2" in status
    dstore("rm", "--peer", b, "photos/big.bin")
    missing = dstore("get", "--peer", a, "photos/big.bin", "-o", str(tmp_path / "x"), check=False)
    assert missing.returncode != 0 and b"not found" in missing.stderr
    assert not (tmp_path / "x").exists()


def test_reads_survive_a_killed_node(nodes: Nodes, tmp_path: Path) -> None:
    a, b, c = nodes.cluster(3)
    data = os.urandom(8 * 1024 * 1024)
    (tmp_path / "in.bin").write_bytes(data)
    dstore("put", "--peer", a, "big", str(tmp_path / "in.bin"))
    nodes.procs[0].kill()  # SIGKILL the node the value was put through
    nodes.procs[0].wait()
    assert dstore("get", "--peer", b, "big").stdout == data
    assert dstore("get", "--peer", c, "big").stdout == data


def test_a_wrong_secret_is_refused_learns_nothing_and_changes_nothing(nodes: Nodes, tmp_path: Path) -> None:
    a, _, _ = nodes.cluster(3)
    (tmp_path / "in.txt").write_bytes(b"intruder")
    wrong = env(DSTORE_SECRET="not the secret")
    for cmd in (["ls"], ["put", "x", str(tmp_path / "in.txt")], ["get", "x"]):
        r = dstore(cmd[0], "--peer", a, *cmd[1:], environ=wrong, check=False)
        assert r.returncode != 0, cmd
        assert b"unavailable" in r.stderr and r.stdout == b""
    assert dstore("ls", "--peer", a).stdout == b""
    assert "the peer does not know the cluster secret" in nodes.log(0)


def test_garbage_oversized_frames_and_silent_peers_leave_the_node_serving(nodes: Nodes, tmp_path: Path) -> None:
    a, _, _ = nodes.cluster(3)
    host, port = a.rsplit(":", 1)
    payloads = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\xff\xff\xff\xff" + b"x" * 100,  # a 4 GiB frame length
        b"\x00\x00\x00\x10" + os.urandom(16),  # a well-framed hello of garbage
        os.urandom(4096),
    ]
    with socket.create_connection((host, int(port))):  # a peer that says nothing at all
        for p in payloads:
            # The node closes on us (perhaps before we finish sending); it never answers.
            assert send_and_collect((host, int(port)), p) == b""
    (tmp_path / "in.txt").write_bytes(b"still serving")
    dstore("put", "--peer", a, "k", str(tmp_path / "in.txt"))
    assert dstore("get", "--peer", a, "k").stdout == b"still serving"
    assert all(p.poll() is None for p in nodes.procs)
    log = nodes.log(0)
    assert "refused a connection" in log and "protocol violation" in log


def send_and_collect(addr: tuple[str, int], payload: bytes) -> bytes:
    """Sends `payload`, then returns everything the other side sent until it closed."""
    got = b""
    with socket.create_connection(addr, timeout=10) as s:
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            while chunk := s.recv(1 << 16):
                got += chunk
        except OSError:  # closed or reset by the node while we were still talking
            pass
    return got


def test_sigterm_stops_a_node_cleanly_and_frees_its_root(nodes: Nodes, tmp_path: Path) -> None:
    (a,) = nodes.cluster(1)
    assert nodes.stop_all() == [0]
    assert "dstore node stopped" in nodes.log(0)
    # The root is unlocked and still belongs to the cluster: a local ls opens it.
    r = dstore("ls", "--root", str(tmp_path / "n0"))
    assert r.returncode == 0


def test_a_node_started_from_a_config_file(nodes: Nodes, tmp_path: Path) -> None:
    first = nodes.start()
    (tmp_path / "secret").write_text(SECRET)
    (tmp_path / "node.toml").write_text(
        f'root = "{tmp_path / "from-file"}"\nlisten = "127.0.0.1:0"\npeers = ["{first}"]\n'
        f'replicas = 2\nzone = "z1"\nsecret_file = "{tmp_path / "secret"}"\n'
    )
    p = subprocess.Popen(
        [str(DSTORE), "node", "--config", str(tmp_path / "node.toml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("DSTORE_")},
    )
    nodes.procs.append(p)
    assert " listening on 127.0.0.1:" in nodes.first_line(p)
    time.sleep(1.5)
    status = dstore("status", "--peer", first).stdout.decode()
    assert "members  2" in status and "zone z1" in status
    assert (tmp_path / "from-file" / "node_id").is_file()
    bad = tmp_path / "bad.toml"
    bad.write_text('roots = "typo"\n')
    r = dstore("node", "--config", str(bad), check=False)
    assert r.returncode != 0 and b"unknown field" in r.stderr


def test_ports_and_wildcards_are_advertised_as_dialable_addresses(nodes: Nodes) -> None:
    a = nodes.start()
    assert not a.endswith(":0")
    wildcard = nodes.start(listen="0.0.0.0:0", peer=a)
    assert not wildcard.startswith("0.0.0.0")
    time.sleep(1.5)
    assert "members  2" in dstore("status", "--peer", a).stdout.decode()


def test_secrets_are_never_taken_from_flags(tmp_path: Path) -> None:
    r = dstore("node", "--root", str(tmp_path / "r"), "--listen", "127.0.0.1:0", environ=env(DSTORE_SECRET=""), check=False)
    assert r.returncode != 0 and b"DSTORE_SECRET" in r.stderr
    help_text = dstore("node", "--help").stdout.decode()
    assert "--secret " not in help_text and "--key " not in help_text


def test_the_demo_runs_and_checks_every_step() -> None:
    out = dstore("demo").stdout.decode()
    assert "Everything above was checked" in out
    assert "Killed node-1" in out
