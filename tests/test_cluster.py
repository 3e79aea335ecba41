"""End to end: `dstore node` processes on 127.0.0.1, driven by the `dstore` client commands
and by raw sockets. Every test stops every process it starts (the `cluster` fixture's
teardown, in conftest.py) and works in pytest's temporary directories."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from harness import DSTORE, SECRET, Cluster, env, wait_for
from harness import cli as dstore

pytestmark = pytest.mark.usefixtures("dstore_binary")


def test_a_value_put_through_one_member_is_read_listed_and_removed_through_others(cluster: Cluster, tmp_path: Path) -> None:
    a, b, c = cluster.cluster(3)
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


def test_reads_survive_a_killed_node(cluster: Cluster, tmp_path: Path) -> None:
    a, b, c = cluster.cluster(3)
    data = os.urandom(8 * 1024 * 1024)
    (tmp_path / "in.bin").write_bytes(data)
    dstore("put", "--peer", a, "big", str(tmp_path / "in.bin"))
    cluster.kill(0)  # SIGKILL the node the value was put through
    assert dstore("get", "--peer", b, "big").stdout == data
    assert dstore("get", "--peer", c, "big").stdout == data


def test_a_wrong_secret_is_refused_learns_nothing_and_changes_nothing(cluster: Cluster, tmp_path: Path) -> None:
    a, _, _ = cluster.cluster(3)
    (tmp_path / "in.txt").write_bytes(b"intruder")
    wrong = env(DSTORE_SECRET="not the secret")
    for cmd in (["ls"], ["put", "x", str(tmp_path / "in.txt")], ["get", "x"]):
        r = dstore(cmd[0], "--peer", a, *cmd[1:], environ=wrong, check=False)
        assert r.returncode == 4, (cmd, r.stderr)  # wrong key or secret
        assert b"refused by the cluster" in r.stderr and r.stdout == b""
    assert dstore("ls", "--peer", a).stdout == b""
    assert "the peer does not know the cluster secret" in cluster.log(0)


def test_garbage_oversized_frames_and_silent_peers_leave_the_node_serving(cluster: Cluster, tmp_path: Path) -> None:
    a, _, _ = cluster.cluster(3)
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
    assert cluster.live() == [0, 1, 2]
    log = cluster.log(0)
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


def test_sigterm_stops_a_node_cleanly_and_frees_its_root(cluster: Cluster, tmp_path: Path) -> None:
    (a,) = cluster.cluster(1)
    assert cluster.stop_all() == [0]
    assert "dstore node stopped" in cluster.log(0)
    # The root is unlocked and still belongs to the cluster: a local ls opens it.
    r = dstore("ls", "--root", str(tmp_path / "n0"))
    assert r.returncode == 0


def test_a_node_started_from_a_config_file(cluster: Cluster, tmp_path: Path) -> None:
    first = cluster.addrs[cluster.start()]
    (tmp_path / "secret").write_text(SECRET)
    (tmp_path / "node.toml").write_text(
        f'root = "{tmp_path / "from-file"}"\nlisten = "127.0.0.1:0"\npeers = ["{first}"]\n'
        f'replicas = 2\nzone = "z1"\nsecret_file = "{tmp_path / "secret"}"\n'
    )
    i = cluster.start_with(
        [str(DSTORE), "node", "--config", str(tmp_path / "node.toml")],
        environ={k: v for k, v in os.environ.items() if not k.startswith("DSTORE_")},
    )
    assert cluster.addrs[i].startswith("127.0.0.1:")
    wait_for(lambda: "members  2" in dstore("status", "--peer", first).stdout.decode(), "the node joins")
    assert "zone z1" in dstore("status", "--peer", first).stdout.decode()
    assert (tmp_path / "from-file" / "node.key").is_file()
    bad = tmp_path / "bad.toml"
    bad.write_text('roots = "typo"\n')
    r = dstore("node", "--config", str(bad), check=False)
    assert r.returncode != 0 and b"unknown field" in r.stderr


def test_ports_and_wildcards_are_advertised_as_dialable_addresses(cluster: Cluster) -> None:
    a = cluster.addrs[cluster.start()]
    assert not a.endswith(":0")
    wildcard = cluster.addrs[cluster.start(listen="0.0.0.0:0", peers=[a])]
    assert not wildcard.startswith("0.0.0.0")
    wait_for(lambda: "members  2" in dstore("status", "--peer", a).stdout.decode(), "the wildcard node joins")


def test_secrets_are_never_taken_from_flags(tmp_path: Path) -> None:
    r = dstore("node", "--root", str(tmp_path / "r"), "--listen", "127.0.0.1:0", environ=env(DSTORE_SECRET=""), check=False)
    assert r.returncode != 0 and b"DSTORE_SECRET" in r.stderr
    help_text = dstore("node", "--help").stdout.decode()
    assert "--secret " not in help_text and "--key " not in help_text


def test_the_demo_runs_and_checks_every_step() -> None:
    out = dstore("demo").stdout.decode()
    assert "Everything above was checked" in out
    assert "Killed node-1" in out


def test_a_restarted_member_is_redialled_and_serves_what_it_holds(cluster: Cluster, tmp_path: Path) -> None:
    a, b, c = cluster.cluster(3)
    (tmp_path / "in.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    dstore("put", "--peer", a, "kept", str(tmp_path / "in.bin"))
    cluster.kill(2)
    # The same root, on the same address: the others redial it (with backoff) and take it back.
    cluster.restart(2)
    assert cluster.addrs[2] == c
    wait_for(lambda: "members  3" in dstore("status", "--peer", a).stdout.decode(), "the restarted member is seen again")
    assert dstore("get", "--peer", c, "kept").stdout == (tmp_path / "in.bin").read_bytes()
