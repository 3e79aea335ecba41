"""Hostile outsiders and clients against real nodes (issue 9): what a machine on the network,
or one given only the client credential, can and cannot do to `dstore node` processes and
to members embedded in an application.
"""

from __future__ import annotations

import os
import socket
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import dstore
from harness import KEY, SECRET, Cluster, cli, env, wait_for, writer

# A member embedded in a Python process, started like `dstore node` (it prints its address,
# and closes on SIGTERM), so that the same test can run against both.
EMBEDDED = textwrap.dedent(
    """
    import signal, sys, dstore
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
    n = dstore.Node(sys.argv[1], key=bytes.fromhex(sys.argv[2]), secret=sys.argv[3].encode(),
                    listen="127.0.0.1:0")
    print("embedded member listening on", n.addr, flush=True)
    signal.sigwait([signal.SIGTERM])
    n.close()
    """
)


def start_limited(cluster: Cluster, kind: str, tmp: Path, open_files: int) -> int:
    """A member (a `dstore node` process or an embedded one) allowed `open_files`
    descriptors."""
    limit = ["prlimit", f"--nofile={open_files}:{open_files}"]
    if kind == "node":
        return cluster.start(prefix=limit)
    script = tmp / "embedded.py"
    script.write_text(EMBEDDED)
    return cluster.start_with([*limit, sys.executable, str(script), str(tmp / "embedded"), KEY, SECRET])


@pytest.mark.parametrize("kind", ["node", "embedded"])
def test_idle_sockets_from_outsiders_do_not_exhaust_descriptors(cluster: Cluster, tmp_path: Path, kind: str) -> None:
    """Item 3: with 128 descriptors, 200 idle sockets made the node's reads fail with "too many
    open files" and new sessions time out, and each refusal logged a warning. Now sockets
    still in the handshake have a small pool of their own (the oldest are dropped for new
    ones) and a quarter of the descriptors is kept for the store: reads and writes go on, and
    the warnings are rate-limited. Idle sockets that arrive while an honest client is in its
    handshake (CI once saw a burst the kernel handed over late) evict silent sockets, not the
    client's, which has spoken. The node accepts a socket only when its pool has room, so
    the descriptors it holds, sampled throughout, stay below the limit less its reserve."""
    i = start_limited(cluster, kind, tmp_path, 128)
    addr = cluster.addrs[i]
    data = b"kept through the flood " * 1000
    (tmp_path / "in").write_bytes(data)
    cli("put", "--peer", addr, "--replicas", "1", "before", str(tmp_path / "in"))
    host, port = addr.rsplit(":", 1)
    fds = Path(f"/proc/{cluster.procs[i].pid}/fd")
    peak = 0
    sampling = True

    def sample() -> None:
        nonlocal peak
        while sampling:
            try:
                peak = max(peak, len(os.listdir(fds)))
            except OSError:
                pass

    sampler = threading.Thread(target=sample)
    sampler.start()
    idle = []
    try:
        def flood(count: int) -> None:
            for _ in range(count):
                idle.append(socket.create_connection((host, int(port)), timeout=5))

        flood(200)
        for n in range(3):
            late = threading.Thread(target=flood, args=(100,))
            late.start()
            try:
                assert cli("get", "--peer", addr, "--replicas", "1", "before", timeout=60).stdout == data
            finally:
                late.join()
            cli("put", "--peer", addr, "--replicas", "1", f"during-{n}", str(tmp_path / "in"), timeout=60)
    finally:
        for s in idle:
            s.close()
        sampling = False
        sampler.join()
    assert peak <= 128 - 32, f"{peak} descriptors open at the peak"  # a quarter is reserved
    assert cli("get", "--peer", addr, "--replicas", "1", "during-2").stdout == data
    if kind == "node":
        log = cluster.log(i)
        assert "Too many open files" not in log
        refusals = log.count("refused a connection") + log.count("accept failed")
        assert refusals < 20, f"{refusals} warnings logged for 200 sockets"


def test_a_client_credential_cannot_downgrade_leave_or_join(cluster: Cluster, tmp_path: Path, writer_kind: str) -> None:
    """Items 2 and 9, as the issue reproduced them: a machine given only the client
    credential ran `dstore put --plain notes/todo.txt evil.txt` over an encrypted value, and a
    reader holding the data key then got "attacker chosen" with exit 0. Now no member takes
    it (a newer version must be sealed by the key that sealed the one held), so the put fails
    and the value reads back; a key nobody sealed is written, and readers holding the data key
    refuse it (IntegrityError, exit 1) unless they accept unsealed manifests. That machine
    cannot ask a member to leave, nor run a member."""
    addrs = cluster.cluster(3)
    with writer(writer_kind, tmp_path / "w", addrs) as honest:
        honest.store("notes/todo.txt", b"the real list")
        credential = dstore.client_credential(SECRET.encode())
        assert credential == cli("client-credential").stdout.decode().strip()
        attacker = env(DSTORE_SECRET=credential)
        del attacker["DSTORE_KEY"]
        evil = tmp_path / "evil.txt"
        evil.write_bytes(b"attacker chosen")
        put = cli("put", "--peer", addrs[0], "notes/todo.txt", str(evil), environ=attacker, check=False)
        assert put.returncode != 0 and b"data key" in put.stderr  # it cannot encrypt
        over = cli("put", "--peer", addrs[0], "--plain", "notes/todo.txt", str(evil), environ=attacker, check=False)
        assert over.returncode != 0 and b"not sealed by the data key" in over.stderr
        # No member took it: every reader gets the honest value.
        assert honest.get("notes/todo.txt") == b"the real list"
        assert cli("get", "--peer", addrs[1], "notes/todo.txt").stdout == b"the real list"
        # A key nobody sealed is written, and refused by readers holding the data key.
        cli("put", "--peer", addrs[0], "--plain", "planted", str(evil), environ=attacker)
        with pytest.raises(dstore.IntegrityError, match="not sealed"):
            honest.get("planted")
        got = cli("get", "--peer", addrs[1], "planted", check=False)
        assert got.returncode != 0 and b"not sealed" in got.stderr and got.stdout == b""
        lenient = cli("get", "--peer", addrs[1], "--accept-unsealed", "planted")
        assert lenient.stdout == b"attacker chosen"
        left = cli("leave", "--peer", addrs[2], "--timeout", "10", environ=attacker, check=False)
        assert left.returncode != 0 and b"client credential" in left.stderr
        assert wait_for(lambda: len(cluster.live()) == 3, "every node still runs")
        member = ["node", "--root", str(tmp_path / "m"), "--listen", "127.0.0.1:0", "--peer", addrs[0]]
        joined = cli(*member, environ=attacker, check=False, timeout=30)
        assert joined.returncode != 0 and b"member needs the cluster secret" in joined.stderr


def test_ls_lists_by_prefix_in_pages(cluster: Cluster, tmp_path: Path, writer_kind: str) -> None:
    """Item 7 through the command: `dstore ls --prefix` lists a page at a time (1000 keys per
    request), every key once and in byte order, through any member."""
    addrs = cluster.cluster(3)
    with writer(writer_kind, tmp_path / "w", addrs) as w:
        keys = [f"logs/{i:05}" for i in range(2300)] + ["other/a", "logs"]
        for k in keys:
            w.store(k, b"", encrypt=False)
        for via in addrs:
            listed = cli("ls", "--peer", via, "--prefix", "logs/").stdout.decode().split("\n")[:-1]
            assert listed == sorted(k for k in keys if k.startswith("logs/"))
        everything = cli("ls", "--peer", addrs[0]).stdout.decode().split("\n")[:-1]
        assert everything == sorted(keys)
        assert list(w.keys("other/")) == ["other/a"]
