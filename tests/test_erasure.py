"""Erasure coding (4+2) across `dstore node` processes and a member embedded in this process:
what it costs on disk, what it survives, and how reads go when holders stall.

One cluster of 8 members (7 processes started with `--erasure 4+2`, and an embedded Python
member with `erasure=(4, 2)`), written to by the embedded member (its default), by a Python
client (`store(..., erasure=(4, 2))`) and by `dstore put --erasure 4+2`. Figures are printed
(run with -s)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dstore
from harness import FAST, MIB, Cluster, chunk_copies, cli, client, member, wait_for

EC = ("--erasure", "4+2")
SHARDS_PER_VALUE = 3 * 6  # a 3 MiB value is 3 chunks of 1 MiB, each cut into 4 + 2 shards


def held(cluster: Cluster, via: int) -> tuple[int, int]:
    """(objects held, shards rebuilt) summed over the members that answer through `via`."""
    stats = [s for s in cluster.stats(via).values() if s]
    return sum(s["chunks"] for s in stats), sum(s["repair"]["shards_rebuilt"] for s in stats)


def read_all(readers: list[dstore.Node], values: dict[str, bytes]) -> float:
    """Reads every value through every reader; returns the slowest read in seconds."""
    slowest = 0.0
    for r in readers:
        for key, value in values.items():
            started = time.monotonic()
            assert r.get(key) == value, key
            slowest = max(slowest, time.monotonic() - started)
    return slowest


def test_four_plus_two_survives_two_lost_members_twice_and_reads_around_stalled_holders(cluster: Cluster, tmp_path: Path) -> None:
    addrs = cluster.cluster(7, *FAST, *EC)
    embedded = member(tmp_path / "embedded", addrs, erasure=(4, 2))
    writer = client(tmp_path / "client", addrs)
    try:
        cluster.wait_members(also=[embedded.addr])
        writer.settle(20)
        values = {f"ec/{i}": os.urandom(3 * MIB) for i in range(9)}
        for i, (key, value) in enumerate(values.items()):
            if i % 3 == 0:
                embedded.store(key, value)
            elif i % 3 == 1:
                writer.store(key, value, erasure=(4, 2))
            else:
                (tmp_path / "in.bin").write_bytes(value)
                cli("put", "--peer", addrs[i % 7], *EC, key, str(tmp_path / "in.bin"))
        shards = SHARDS_PER_VALUE * len(values)
        wait_for(lambda: held(cluster, 0)[0] == shards, f"{shards} shards on their holders")
        roots = [cluster.root(i) for i in range(7)] + [tmp_path / "embedded"]
        on_disk = sum(c.length for r in roots for c in chunk_copies(r))
        data = sum(len(v) for v in values.values())
        ratio = on_disk / data
        print(f"\n4+2: {on_disk} bytes on disk for {data} stored: {ratio:.3f}x")
        assert 1.45 < ratio < 1.65, ratio

        # Degraded reads: two members stalled (alive to the kernel, silent to their peers)
        # hold up to 2 of the 6 shards of each chunk; every read still succeeds, in a
        # bounded time. Shards are hedged around the stalled holders; the manifest, kept on 3
        # members and read from 2, waits out one call timeout (2 s) for a key whose owners
        # include both stalled members.
        cluster.pause(5)
        cluster.pause(6)
        try:
            slowest = read_all([embedded, writer], values)
        finally:
            cluster.resume(5)
            cluster.resume(6)
        print(f"slowest read with 2 members stalled: {slowest:.2f} s")
        assert slowest < 10, slowest
        cluster.wait_members(also=[embedded.addr], seconds=60)

        # Two members lost for good, twice, with repair between.
        _, rebuilt_before = held(cluster, 0)
        for lost in (5, 6):
            cluster.remove(lost)
        cluster.wait_members(also=[embedded.addr], seconds=60)
        read_all([embedded, writer], values)
        started = time.monotonic()
        wait_for(lambda: held(cluster, 0)[0] == shards, "repair rebuilds the lost shards", seconds=120)
        rebuilt = held(cluster, 0)[1] - rebuilt_before
        print(f"repair rebuilt {rebuilt} shards in {time.monotonic() - started:.1f} s")
        # Each lost member held one shard of about 3/4 of the 27 chunks; none is rebuilt twice.
        assert 10 <= rebuilt <= 2 * 27, rebuilt
        for lost in (3, 4):
            cluster.remove(lost)
        cluster.wait_members(also=[embedded.addr], seconds=60)
        read_all([embedded, writer], values)
        # Fewer live members (4) than shards (6): a write says so.
        refused = cli("put", "--peer", addrs[0], *EC, "late", str(tmp_path / "in.bin"), check=False)
        assert refused.returncode != 0 and b"4 are live" in refused.stderr, refused.stderr
    finally:
        writer.close()
        embedded.close()
