"""Members that come and go never strand an acknowledged write: applications that embed a
member write and close, members join while values are written, a `dstore node` leaves for
good and its disk is deleted, and a member closes while every other owner is stopped. Each
test reads every acknowledged value back and prints its counts (run with -s). The same in
one process, in Rust: dstore-core/tests/churn.rs."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import dstore
from harness import (
    FAST,
    MIB,
    Cluster,
    check_all,
    check_through_every_node,
    cli,
    member,
    wait_for,
    writer,
)

pytestmark = pytest.mark.usefixtures("dstore_binary")

# The sizes of issue 8's report: a tiny value, one small chunk, one chunk with a tail, and two
# chunks (the last one partial) at the default chunk size of 1 MiB.
SIZES = (100, 4096, 70_000, 11 * MIB // 10)


def value(tag: str, i: int) -> tuple[str, bytes]:
    key = f"{tag}/{i:04d}"
    head = key.encode() + b":"
    return key, head + os.urandom(SIZES[i % len(SIZES)] - len(head))


def test_embedded_members_write_in_parallel_close_and_lose_nothing(cluster: Cluster, tmp_path: Path) -> None:
    """The defect of issue 8, as a user met it: three applications embed a member each, write
    400 values each in parallel (100 B to 1.1 MiB), and close, all at once. At once (no wait
    for repair), every value reads back right through each of the three `dstore node`
    members that stay. Before the fix about one value in eight was NotFound everywhere."""
    addrs = cluster.cluster(3, *FAST)
    writers = [member(tmp_path / f"app{w}", addrs) for w in range(3)]
    for w in writers:
        w.settle(20)
    acked: dict[str, bytes] = {}
    lock = threading.Lock()

    def write(w: int) -> None:
        for i in range(400):
            key, data = value(f"app{w}", i)
            writers[w].store(key, data)
            with lock:
                acked[key] = data

    started = time.monotonic()
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(write, range(3)))
    wrote = time.monotonic() - started
    with ThreadPoolExecutor(3) as pool:
        closes = list(pool.map(lambda n: timed(n.close), writers))
    handed = [n for n in writers if n.closed]
    assert len(handed) == 3
    total = sum(map(len, acked.values()))
    print(f"\n3 embedded members wrote {len(acked)} values ({total / MIB:.0f} MiB) in {wrote:.1f} s; "
          f"closed in {', '.join(f'{c:.2f}' for c in closes)} s")  # fmt: skip
    check_through_every_node(tmp_path, dict(enumerate(addrs)), dict(acked), "closed")


def timed(f) -> float:
    start = time.monotonic()
    f()
    return time.monotonic() - start


def test_a_value_reads_back_through_the_newest_member_at_once(cluster: Cluster, tmp_path: Path, writer_kind: str) -> None:
    """Members join while a writer stores values: after each acknowledgement the value is
    read through the member that joined last, at once. The writer may not know that member
    yet, and places the value on owners the newest member no longer counts as owners; the
    read must find it all the same."""
    addrs = cluster.cluster(3, *FAST)
    joined: list[dstore.Node] = []
    lost = wrong = checked = 0
    try:
        with writer(writer_kind, tmp_path / "writer", addrs) as w:
            for round_ in range(4):
                newest = member(tmp_path / f"joined{round_}", addrs)
                joined.append(newest)
                wait_for(lambda: len(newest.peers()) >= 3, "the new member knows the cluster", 20)
                for i in range(40):
                    key, data = value(f"r{round_}", i % 3)  # no 1.1 MiB values: many rounds
                    key = f"{key}-{i}"
                    w.store(key, data)
                    checked += 1
                    try:
                        if newest.get(key) != data:
                            wrong += 1
                    except dstore.NotFoundError:
                        lost += 1
    finally:
        for n in joined:
            n.close()
    print(f"\n{checked} values read through the newest of 4 members that joined ({writer_kind} writer): lost={lost} wrong={wrong}")
    assert lost == 0 and wrong == 0


def test_dstore_leave_then_delete_its_root_and_lose_another(cluster: Cluster, tmp_path: Path, writer_kind: str) -> None:
    """`dstore leave` on one of 5 nodes (replicas 3): it hands everything it holds to the
    others (progress in `dstore status`), they stop counting it at once, and it exits 0.
    Then its root is deleted and another node is killed: every value reads back through
    every node left."""
    addrs = cluster.cluster(5, *FAST)
    values: dict[str, bytes] = {}
    with writer(writer_kind, tmp_path / "writer", addrs) as w:
        for i in range(120):
            key, data = value("left", i % 3)
            key = f"{key}-{i}"
            w.store(key, data)
            values[key] = data
    leaving = 2
    held = cluster.stats(0)[addrs[leaving]]
    assert held["chunks"] > 0
    started = time.monotonic()
    r = cli("leave", "--peer", addrs[leaving], timeout=180)
    took = time.monotonic() - started
    assert b"has left the cluster" in r.stderr, r.stderr
    assert cluster.procs[leaving].wait(timeout=30) == 0, cluster.log(leaving)[-2000:]
    assert "left the cluster" in cluster.log(leaving)
    # The others stopped counting it at once: no wait for failure detection.
    members = {m["addr"] for m in cluster.status(0)["members"]}
    assert addrs[leaving] not in members and len(members) == 4, members
    print(f"\nnode {leaving} held {held['keys']} keys and {held['chunks']} chunks; `dstore leave` took {took:.2f} s")
    import shutil

    shutil.rmtree(cluster.root(leaving))
    cluster.gone.add(leaving)
    cluster.remove(0)
    rest = {i: addrs[i] for i in cluster.live()}
    check_through_every_node(tmp_path, rest, dict(values), "leave")


def test_a_drain_that_times_out_says_so_and_loses_nothing(cluster: Cluster, tmp_path: Path) -> None:
    """An embedded member writes, then every other owner stops (SIGSTOP: alive, silent). Its
    close cannot hand off: after `drain_timeout` it closes all the same and says so with a
    DrainWarning. Once the others run again, every value it acknowledged reads back."""
    addrs = cluster.cluster(2, *FAST)
    values: dict[str, bytes] = {}
    w = member(tmp_path / "app", addrs, drain_timeout=4)
    w.settle(20)
    for i in range(30):
        key, data = value("drain", i % 3)
        key = f"{key}-{i}"
        w.store(key, data)
        values[key] = data
    for i in range(2):
        cluster.pause(i)
    started = time.monotonic()
    with pytest.warns(dstore.DrainWarning, match="hand-off did not finish") as warned:
        w.close()
    took = time.monotonic() - started
    assert w.closed
    print(f"\nclose with every other owner stopped: {took:.1f} s, warned: {warned[0].message}")
    for i in range(2):
        cluster.resume(i)
    with writer("client", tmp_path / "reader", addrs) as c:
        lost, wrong, kinds = check_all(c, values)
    print(f"after the others resumed: {len(values)} values, lost={lost} wrong={wrong} {dict(kinds)}")
    assert lost == 0 and wrong == 0
