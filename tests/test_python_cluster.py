"""The Python module in a cluster: members and clients in this process, and interplay with
`dstore node` processes and the `dstore` command (tests/harness.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import dstore
from harness import KEY, SECRET, Cluster, wait_for
from harness import cli as dstore_cli

CHUNK = 4096
DATA_KEY = bytes.fromhex(KEY)


def member(root: Path, peers: list[str] | None = None, **kw: object) -> dstore.Node:
    return dstore.Node(root, key=DATA_KEY, secret=SECRET.encode(), chunk_size=CHUNK, listen="127.0.0.1:0", peers=peers or [], **kw)


def test_members_replicate_and_serve_each_other(tmp_path: Path) -> None:
    a = member(tmp_path / "a")
    assert a.addr and not a.addr.endswith(":0")
    b = member(tmp_path / "b", [a.addr])
    c = member(tmp_path / "c", [a.addr], zone="z2")
    with a, b, c:
        wait_for(lambda: all(len(n.peers()) == 2 for n in (a, b, c)), "membership")
        assert {p["id"] for p in a.peers()} == {b.id, c.id}
        assert {p["zone"] for p in a.peers()} == {None, "z2"}
        value = os.urandom(5 * CHUNK + 3)
        b.store("shared/value", value)
        for n in (a, b, c):
            assert n.get("shared/value") == value
            assert list(n.keys()) == ["shared/value"]
        c.delete("shared/value")
        with pytest.raises(KeyError):
            a.get("shared/value")


def test_a_client_reads_and_writes_through_the_members(tmp_path: Path) -> None:
    a = member(tmp_path / "a")
    b = member(tmp_path / "b", [a.addr])
    with a, b, dstore.Node(tmp_path / "client", key=DATA_KEY, secret=SECRET.encode(), peers=[a.addr], client=True) as client:
        assert client.addr is None
        assert client.settle(10) == 2
        client.store("from-client", b"hello cluster")
        assert b.get("from-client") == b"hello cluster"
        assert "from-client" in list(a.keys())


def test_a_client_with_the_wrong_secret_is_refused_at_once(tmp_path: Path) -> None:
    with member(tmp_path / "a") as a:
        with dstore.Node(tmp_path / "c", secret=b"wrong", peers=[a.addr], client=True) as intruder:
            started = time.monotonic()
            with pytest.raises(dstore.UnavailableError, match="refused"):
                intruder.settle(30)
            assert time.monotonic() - started < 30
        assert list(a.keys()) == []


def test_a_member_that_was_away_is_repaired_when_it_returns(tmp_path: Path) -> None:
    """Values stored while a member is closed reach it through the others' repair passes
    once it reopens on the same root (with 3 replicas and 3 members, it owns everything)."""
    tuning = {"repair_interval": 0.5}
    a = member(tmp_path / "a", **tuning)
    b = member(tmp_path / "b", [a.addr], **tuning)
    c = member(tmp_path / "c", [a.addr], **tuning)
    open_nodes = [a, b, c]
    try:
        wait_for(lambda: all(len(n.peers()) == 2 for n in (a, b, c)), "membership")
        a.store("before", b"stored while everyone was there")
        wait_for(lambda: c.stats()["keys"] == 1, "c holds the first value")
        c_id = c.id
        c.close()
        away = {f"while-away/{i}": os.urandom(CHUNK + i) for i in range(5)}
        away_chunks = 1 + 2 * (len(away) - 1)  # one full chunk each, and a tail but for i=0
        for k, v in away.items():
            b.store(k, v)  # two of three owners are a majority
        assert c.closed

        c = member(tmp_path / "c", [a.addr], **tuning)
        open_nodes.append(c)
        assert c.id == c_id
        assert c.stats()["keys"] == 1

        def repaired() -> bool:
            s = c.stats()
            # "before" is small enough to live inside its manifest: no chunk.
            return s["keys"] == 1 + len(away) and s["chunks"] == away_chunks

        wait_for(repaired, "c is repaired", seconds=60)

        def counted() -> bool:
            pushed = [n.stats()["repair"] for n in (a, b)]
            return (
                sum(r["manifests_pushed"] for r in pushed) >= len(away)
                and sum(r["chunks_pushed"] for r in pushed) >= away_chunks
            )

        wait_for(counted, "a and b count what they pushed")
        pushed = [n.stats()["repair"] for n in (a, b)]
        assert sum(r["bytes_pushed"] for r in pushed) > sum(map(len, away.values()))
        for r in pushed:  # pushes happen in a pass: one under way, or one completed
            assert r["passes"] > 0 or r["running"] or r["manifests_pushed"] == 0, r
        assert c.get("while-away/3") == away["while-away/3"]
    finally:
        for n in open_nodes:
            n.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"replicas": 0},
        {"replicas": 256},
        {"client": True, "listen": "127.0.0.1:0"},
        {"peers": ["127.0.0.1:1"]},  # a member needs a listen address
    ],
)
def test_bad_cluster_options_are_value_errors(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        dstore.Node(tmp_path / "r", **kwargs)


def test_an_address_that_cannot_be_bound_is_an_os_error(tmp_path: Path) -> None:
    with member(tmp_path / "a") as a:
        with pytest.raises(OSError):
            dstore.Node(tmp_path / "b", secret=SECRET.encode(), listen=a.addr)


def test_python_and_the_command_line_share_one_cluster(cluster: Cluster, tmp_path: Path) -> None:
    first, _, _ = cluster.cluster(3)
    (tmp_path / "in.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    dstore_cli("put", "--peer", first, "from-cli", str(tmp_path / "in.bin"))
    with dstore.Node(tmp_path / "py", key=DATA_KEY, secret=SECRET.encode(), peers=[first], client=True) as py:
        assert py.settle() == 3
        assert py.get("from-cli") == (tmp_path / "in.bin").read_bytes()
        py.store("from-python", b"written by Python")
    assert dstore_cli("get", "--peer", first, "from-python").stdout == b"written by Python"


def test_dstore_log_sends_the_core_logs_to_stderr(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import dstore, sys\n"
        f"a = dstore.Node({str(tmp_path / 'a')!r}, secret=b'right', listen='127.0.0.1:0')\n"
        f"b = dstore.Node({str(tmp_path / 'b')!r}, secret=b'wrong', peers=[a.addr], client=True)\n"
        "try:\n    b.settle(10)\nexcept dstore.UnavailableError:\n    pass\n"
        "a.close(); b.close()\n"
    )
    quiet = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                           env={k: v for k, v in os.environ.items() if k != "DSTORE_LOG"})
    assert quiet.returncode == 0 and quiet.stderr == ""
    loud = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "DSTORE_LOG": "warn"})
    assert loud.returncode == 0
    assert "refused" in loud.stderr


def test_close_leaves_the_cluster_and_frees_the_port_at_once(tmp_path: Path) -> None:
    a = member(tmp_path / "a")
    b = member(tmp_path / "b", [a.addr])
    wait_for(lambda: len(a.peers()) == 1, "joined")
    addr = b.addr
    b.close()
    # Reopening the same root on the same address works right away.
    with dstore.Node(tmp_path / "b", key=DATA_KEY, secret=SECRET.encode(), chunk_size=CHUNK, listen=addr) as again:
        assert again.addr == addr
    a.close()
