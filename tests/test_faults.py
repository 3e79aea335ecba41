"""Durability under failure: `dstore node` processes killed with SIGKILL, partitioned in
network namespaces, lost for good, bit-rotted on disk, out of disk space and with a clock five
minutes off. Every test checks the one thing that matters: each write that was acknowledged is
readable, with its bytes, through every member afterwards (and nothing deleted comes back).

Each test with Python writers runs twice (`writer_kind`): its writers are clients
(`client=True`), then members embedded in this process (listening, owning their share of the
data, and closing, which hands what they acknowledged to the others). A writer is shared by
threads, so a test makes thousands of writes without a process per write. Each test stops
every process it starts, in fixtures' teardowns, also when it fails. Figures are printed (run
with -s)."""

from __future__ import annotations

import errno
import os
import random
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pytest

import dstore
from harness import (
    DATA_KEY,
    FAST,
    MIB,
    SECRET,
    Cluster,
    Net,
    check_all,
    check_through_every_node,
    cli,
    client,
    flip,
    flip_in_catalog,
    tree_bytes,
    value_for,
    wait_for,
    writer,
)

pytestmark = pytest.mark.usefixtures("dstore_binary")


# ---------------------------------------------------------------------------------------------
# 1. SIGKILL during writes


def test_kill9_random_node_during_writes(cluster: Cluster, tmp_path: Path, writer_kind: str) -> None:
    """Proves that an acknowledged write survives members being SIGKILLed at random moments
    (mid-request, mid-fsync, mid-repair) and restarted on the same root and address: four
    writers store 2,000 distinct small values through a 5-member, 3-replica cluster while a
    random member is killed every 1.5-2.5 s and brought back 0.2-1.5 s later. Embedded-member
    writers also close and reopen on their roots during the run (every 100 writes). Afterwards
    every acknowledged value reads back, byte for byte, through every `dstore node` member
    (the writers have closed), and once repair has run every key is on 3 of them again."""
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    addrs = cluster.cluster(5, *FAST)
    writers, per_writer, kills, every = 4, 500, 6, 2.5
    span = kills * every  # writes spread over at least this long
    acked: list[dict[str, bytes]] = [{} for _ in range(writers)]
    failed: Counter = Counter()
    lock = threading.Lock()
    stop = threading.Event()  # set if the test fails while the writers run
    seeds = [rng.random() for _ in range(writers)]
    start = time.monotonic()

    reopened = Counter()

    def write(t: int) -> None:
        wrng = random.Random(seeds[t])
        c = writer(writer_kind, tmp_path / f"writer{t}", addrs)
        try:
            for n in range(per_writer):
                if stop.wait(max(0.0, start + n * span / per_writer - time.monotonic())):
                    return
                if writer_kind == "member" and n and n % 100 == 0:
                    c.close()  # hands off what it acknowledged, then opens again
                    c = writer(writer_kind, tmp_path / f"writer{t}", addrs)
                    with lock:
                        reopened[t] += 1
                key = f"w{t}/{n:05d}"
                value = value_for(key, n, wrng, wrng.randint(16, 600))
                try:
                    c.store(key, value)
                except dstore.Error as e:
                    with lock:
                        failed[f"{type(e).__name__}: {str(e)[:60]}"] += 1
                    continue
                acked[t][key] = value
        finally:
            c.close()

    killed: list[int] = []
    with ThreadPoolExecutor(writers) as pool:
        futures = [pool.submit(write, t) for t in range(writers)]
        try:
            # At least `kills` kills, and on until the last write is done.
            while len(killed) < kills or not all(f.done() for f in futures):
                time.sleep(every * rng.uniform(0.6, 1.0))
                victim = rng.randrange(len(addrs))
                cluster.kill(victim)
                killed.append(victim)
                time.sleep(rng.uniform(0.2, 1.5))  # writes meet the dead member for a while
                cluster.restart(victim)
        finally:
            stop.set()
        for f in futures:
            f.result()  # re-raises a writer's unexpected exception
    wrote = time.monotonic() - start
    expected: dict[str, bytes | None] = {k: v for a in acked for k, v in a.items()}
    n_failed = sum(failed.values())
    print(f"\n{writer_kind} writers wrote for {wrote:.1f} s: {len(expected)} acknowledged, {n_failed} failed {dict(failed)}; "
          f"killed {killed}; writers closed and reopened {sum(reopened.values())} times (seed {seed})")  # fmt: skip
    assert len(expected) >= writers * per_writer // 2, "most writes should have been acknowledged"

    settle = cluster.wait_members(60)
    stats = cluster.wait_repaired(2)
    print(f"members settled after {settle:.1f} s; repair: " + ", ".join(
        f"{s['repair']['passes']} passes/{s['repair']['manifests_pushed']} manifests pushed" for s in stats.values()))  # fmt: skip
    check_through_every_node(tmp_path, dict(enumerate(addrs)), expected, "kill9")
    print(f"acknowledged={len(expected)} failed={n_failed} lost=0 wrong=0 kills={len(killed)}")

    # Replication is restored: once repair has run, each key is held by 3 members (the writes
    # that failed may have landed too; the cluster's count includes them).
    wait_for(cluster.copies_of_every_key(3, 5), "every key on exactly 3 members", 60, every=1)


# ---------------------------------------------------------------------------------------------
# 2. A partition, healed


def test_partition_minority_then_heal(net: Net, cluster: Cluster, tmp_path: Path, writer_kind: str) -> None:
    """Proves that a partition loses nothing and that the cut-off side catches up: 5 members
    in their own network namespaces (replicas 3); 2 of them are moved to another bridge (they
    still see each other, nobody else), while a client on the majority side writes new keys,
    overwrites and deletes old ones. After the heal, every acknowledged write reads back
    through every member, deleted keys stay deleted, and the minority's own disks hold the
    newest version of what they own: no deleted key, no stale overwrite, and their share of
    the keys written while they were away."""
    # (The `cluster` fixture is torn down before `net`: processes stop before their namespaces go.)
    for i in range(5):
        cluster.start(*FAST, listen=net.addr(i), peers=[net.addr(0)] if i else [], prefix=net.prefix(i))
    addrs = list(cluster.addrs)
    cluster.wait_members()
    rng = random.Random(7)
    expected: dict[str, bytes | None] = {}
    failed: Counter = Counter()
    minority = (3, 4)
    # An embedded member listens on this namespace's port on the majority's bridge.
    with writer(writer_kind, tmp_path / "writer", addrs, listen=f"{net.client_ip}:0") as c:
        for n in range(200):
            key = f"before/{n:04d}"
            value = value_for(key, 0, rng, 100)
            c.store(key, value)
            expected[key] = value

        cut_at = time.monotonic()
        net.cut(*minority)
        n = 0
        while time.monotonic() - cut_at < 10:  # before and after the cut is noticed
            time.sleep(max(0.0, cut_at + n / 60 - time.monotonic()))  # at most 60 keys a second
            key, n = f"during/{n:04d}", n + 1
            ops: list[tuple[str, bytes | None]] = [(key, value_for(key, 1, rng, 150))]
            if n <= 60:
                old = f"before/{n - 1:04d}"
                ops.append((old, None if n % 3 == 0 else value_for(old, 1, rng, 333)))
            for k, v in ops:
                try:
                    if v is None:
                        c.delete(k)
                    else:
                        c.store(k, v)
                except dstore.Error as e:
                    failed[f"{type(e).__name__}: {str(e)[:60]}"] += 1
                    if v is None or k not in expected:
                        continue  # an unacknowledged delete or new key: either outcome is fine
                    expected.pop(k)  # an unacknowledged overwrite: old or new value may win
                    continue
                expected[k] = v
        partitioned = time.monotonic() - cut_at
    during = [k for k in expected if k.startswith("during/")]
    print(f"\npartitioned {partitioned:.1f} s: {len(during)} new keys, "
          f"{sum(1 for k, v in expected.items() if k.startswith('before/') and v is None)} deletes and "
          f"{sum(1 for k, v in expected.items() if k.startswith('before/') and v and len(v) == 333)} overwrites acknowledged; "
          f"failed {dict(failed)}")  # fmt: skip

    net.heal(*minority)
    healed = cluster.wait_members(60)
    cluster.wait_repaired(2, 90)
    print(f"all 5 members see each other {healed:.1f} s after the heal")
    check_through_every_node(tmp_path, dict(enumerate(addrs)), expected, "partition")

    converged = wait_for(cluster.copies_of_every_key(3, 5), "every key on exactly 3 members", 60, every=1)
    for i in range(5):
        assert cluster.terminate(i) == 0, cluster.log(i)[-3000:]

    # Each member's own disk, opened directly: live keys carry their newest size (overwrites
    # are 333 bytes, the old values 100), deleted keys are not live anywhere.
    copies: Counter = Counter()
    for i in range(5):
        with dstore.Node(cluster.root(i), key=DATA_KEY, secret=SECRET.encode()) as local:
            held = set(local.keys())
            for k in held:
                copies[k] += 1
                want = expected.get(k)
                if want is not None:
                    assert local.size(k) == len(want), f"node {i} holds a stale version of {k}"
            back = sorted(k for k in held if k in expected and expected[k] is None)
            assert not back, f"node {i} holds deleted keys {back[:5]}"
            share = sum(1 for k in during if k in held)
            print(f"  node {i}{' (minority)' if i in minority else ''}: {len(held)} keys, "
                  f"{share}/{len(during)} of those written during the partition")  # fmt: skip
            if i in minority:
                assert share >= 0.4 * len(during), f"minority node {i} did not catch up: {share}/{len(during)}"
    short = sorted(k for k, v in expected.items() if v is not None and copies[k] < 3)
    assert not short, f"{len(short)} keys on fewer than 3 members, e.g. {short[:5]}"
    print(f"converged {converged:.1f} s after repair; lost=0 wrong=0")


# ---------------------------------------------------------------------------------------------
# 3. Permanent loss


def test_permanent_loss_with_replicas_2(cluster: Cluster, tmp_path: Path, writer_kind: str) -> None:
    """Proves that repair restores the replica count after a member and its disk are lost for
    good, before the next loss: 4 members with replicas 2 hold 32 MiB (values from 20 KiB to
    2.5 MiB, several chunks each for the big ones). One member is SIGKILLed and its root
    deleted; once the others have declared it dead and repaired, every chunk is on 2 members
    again. Then a second member is lost the same way, and every value still reads back
    correctly. Without repair about a sixth of the chunks would be gone."""
    rng = random.Random(3)
    addrs = cluster.cluster(4, "--replicas", "2", *FAST)
    sizes = [5 * MIB // 2] * 8 + [256 * 1024] * 24 + [20 * 1024 + 7 * i for i in range(300)]
    values = {f"v/{i:04d}": rng.randbytes(s) for i, s in enumerate(sizes)}
    total = sum(sizes)
    with writer(writer_kind, tmp_path / "writer", addrs, replicas=2) as c:
        for k, v in values.items():
            c.store(k, v)
    # A member writer has handed what it held to the others as it closed; repair settles
    # every key on exactly its 2 owners.
    wait_for(cluster.copies_of_every_key(2, 4), "every key on exactly 2 members", 60, every=0.5)
    base = cluster.wait_repaired(2)
    held_chunks = sum(s["chunks"] for s in base.values())
    held_keys = sum(s["keys"] for s in base.values())
    assert held_keys == 2 * len(values)

    victim = rng.randrange(4)
    lost_bytes = tree_bytes(cluster.root(victim), "chunks", "segments") + (cluster.root(victim) / "catalog.redb").stat().st_size
    pushed_before = sum(s["repair"]["bytes_pushed"] for a, s in base.items() if a != addrs[victim])
    # A client that has been watching all along (a fresh one would never see the lost member
    # answer, and leave it out at once) tells when the loss is detected: after 3 s of silence.
    with client(tmp_path / "watcher", addrs, replicas=2) as watcher:
        watcher.settle(20)
        assert addrs[victim] in {p["addr"] for p in watcher.peers()}
        killed_at = time.monotonic()
        cluster.remove(victim)
        dead_after = wait_for(
            lambda: addrs[victim] not in {p["addr"] for p in watcher.peers()},
            "the lost member leaves the members", 30, every=0.1)  # fmt: skip
    survivors = cluster.live()
    after: dict[str, dict] = {}

    def repaired() -> bool:
        nonlocal after
        after = {a: s for a, s in cluster.stats(survivors[0]).items() if s}
        return len(after) == 3 and sum(s["chunks"] for s in after.values()) == held_chunks and sum(
            s["keys"] for s in after.values()) == held_keys and not any(s["repair"]["running"] for s in after.values())  # fmt: skip

    wait_for(repaired, f"{held_chunks} chunk copies held again by the survivors", 120, every=0.25)
    took = time.monotonic() - killed_at
    after = cluster.wait_repaired(1)  # nothing more to do: one more full pass changes nothing
    assert sum(s["chunks"] for s in after.values()) == held_chunks
    moved = sum(s["repair"]["bytes_pushed"] for s in after.values()) - pushed_before
    print(f"\nstored {total / MIB:.1f} MiB in {len(values)} values ({held_chunks} chunk copies)")
    print(f"repair of {lost_bytes / MIB:.1f} MiB took {took:.1f} s, {moved} bytes moved, dead detected after {dead_after:.1f} s")

    second = rng.choice(survivors)
    killed_at = time.monotonic()
    cluster.remove(second)
    rest = cluster.live()
    dead2 = wait_for(
        lambda: addrs[second] not in {m["addr"] for m in cluster.status(rest[0])["members"]},
        "the second lost member leaves the members", 30, every=0.1)  # fmt: skip
    print(f"second loss (node {second}): gone from a new client's members after {dead2:.1f} s")
    check_through_every_node(tmp_path, {i: addrs[i] for i in rest}, dict(values), "loss", replicas=2)


# ---------------------------------------------------------------------------------------------
# 4. Bit rot


def test_bit_rot_is_read_around_and_scrubbed(cluster: Cluster, tmp_path: Path, writer_kind: str) -> None:
    """Proves that flipped bits on one member's disk never reach a reader and are repaired
    without an operator. 3 members, replicas 3, so every member holds everything. Bytes are
    flipped, while member 2 is down, in chunk files and in manifests in its catalog (of the
    values in group A); it comes back with its scrubber off: reads through it return the right
    bytes, however often they meet a bad copy. Then it is stopped again, bytes are flipped in
    the chunks and manifests of group B, which nothing reads, and it comes back with a fast
    scrubber: it finds them, sets them aside in quarantine/ and puts good copies, fetched from
    the other owners, back in place (chunk files byte for byte); the bad copies of group A
    are back too. (Rot is made while the member is down: a running one serves its catalog's
    pages from its cache.)"""
    rng = random.Random(11)
    fast_scrub = ("--scrub-rate", "1000000000", "--scrub-interval-ms", "500")
    a = cluster.start(*FAST, *fast_scrub)
    cluster.start(*FAST, *fast_scrub, peers=[cluster.addrs[a]])
    cluster.start(*FAST, "--scrub-rate", "0", peers=[cluster.addrs[a]])
    cluster.wait_members()
    addrs = cluster.addrs
    group_a = {f"a/big{i}": rng.randbytes(5 * MIB // 2 + i) for i in range(3)}
    group_a.update({f"a/small{i}": rng.randbytes(3000 + i) for i in range(12)})
    # Group B is stored without encryption, so its chunk files can be told apart on disk.
    group_b = {f"b/big{i}": rng.randbytes(3 * MIB // 2 + i) for i in range(2)}
    group_b.update({f"b/small{i}": rng.randbytes(2000 + i) for i in range(4)})
    with writer(writer_kind, tmp_path / "writer", addrs) as c:
        for k, v in group_a.items():
            c.store(k, v)
        for k, v in group_b.items():
            c.store(k, v, encrypt=False)
    n_values = len(group_a) + len(group_b)

    def all_copies_on_2() -> bool:
        s = cluster.stats(2)
        mine = s.get(addrs[2])
        return mine is not None and mine["keys"] == n_values and all(x and x["chunks"] == mine["chunks"] for x in s.values())

    wait_for(all_copies_on_2, "every value on all 3 members", 30)
    root = cluster.root(2)
    chunk_files = sorted(f for f in (root / "chunks").rglob("*") if f.is_file())
    # Each chunk's start; the small values live inside their manifests.
    probes = [v[o : o + 64] for v in group_b.values() if len(v) > dstore.INLINE_MAX for o in range(0, len(v), MIB)]
    b_chunks = [f for f in chunk_files if any(p in f.read_bytes() for p in probes)]
    assert len(b_chunks) == len(probes), (len(b_chunks), len(probes))
    a_chunks = [f for f in chunk_files if f not in b_chunks]
    bad_a, bad_a_keys = rng.sample(a_chunks, 6), rng.sample(sorted(group_a), 4)
    bad_b, bad_b_keys = rng.sample(b_chunks, 2), rng.sample(sorted(group_b), 2)
    originals = {f: f.read_bytes() for f in bad_a + bad_b}

    def rot(files: list[Path], keys: list[str]) -> None:
        assert cluster.terminate(2) == 0
        flip(files)
        for k in keys:
            assert flip_in_catalog(root, k, 40) >= 1, k
        cluster.restart(2)
        cluster.wait_members()

    rot(bad_a, bad_a_keys)
    print(f"\nflipped a byte in {len(bad_a)} of node 2's {len(chunk_files)} chunks and {len(bad_a_keys)} of its manifests")
    for round_ in range(3):  # each read picks its owners afresh: give the bad copies a chance
        with client(tmp_path / f"reader{round_}", [addrs[2]]) as c:
            c.settle(20)
            lost, wrong, kinds = check_all(c, dict(group_a))
        assert lost == 0 and wrong == 0, f"read through the rotted member: lost={lost} wrong={wrong} {dict(kinds)}"
    met = sum(1 for f in bad_a if not f.exists() or f.read_bytes() == originals[f])
    print(f"reads of group A through node 2 were all right; {met} of its {len(bad_a)} bad chunk files were met (set aside or repaired)")

    def manifests_aside() -> int:
        return sum(1 for f in (root / "quarantine").rglob("manifest-*") if f.is_file())

    cluster.args[2] = (cluster.args[2][0], [*FAST, *fast_scrub])
    aside_before = manifests_aside()
    rot(bad_b, bad_b_keys)

    def restored() -> bool:
        chunks_back = all(f.is_file() and f.read_bytes() == data for f, data in originals.items())
        mine = cluster.stats(2).get(addrs[2])
        found = manifests_aside() >= aside_before + len(bad_b_keys)
        return chunks_back and found and mine is not None and mine["keys"] == n_values and mine["scrub"]["bad"] >= len(bad_b_keys)

    took = wait_for(restored, "the rotted copies back", 60, every=0.2)
    quarantined = [f for f in (root / "quarantine").rglob("*") if f.is_file()]
    scrub_stats = cluster.stats(0)[addrs[2]]["scrub"]
    print(f"flipped a byte in {len(bad_b)} more chunks and {len(bad_b_keys)} manifests; all restored {took:.1f} s later; quarantine holds {len(quarantined)} files; scrub {scrub_stats}")
    assert len(quarantined) >= len(bad_b) + len(bad_b_keys), "the bad copies were not set aside in quarantine/"
    check_through_every_node(tmp_path, dict(enumerate(addrs)), {**group_a, **group_b}, "rot")


# ---------------------------------------------------------------------------------------------
# 5. A full disk


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """mount(name, size): a tmpfs of that size at tmp_path/name, unmounted at teardown."""
    mounted: list[Path] = []

    def mount(name: str, size: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True, text=True)
        if r.returncode != 0:
            why = r.stderr.lower()
            if any(s in why for s in ("permission denied", "not permitted", "must be superuser", "only root")):
                pytest.skip(f"may not mount a tmpfs here: {r.stderr.strip()}")
            raise AssertionError(f"mount failed: {r.stderr}")
        mounted.append(d)
        return d

    try:
        yield mount
    finally:
        for d in reversed(mounted):
            if subprocess.run(["umount", str(d)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_disk_full_refuses_writes_then_recovers(tmpfs: Callable[[str, str], Path], tmp_path: Path) -> None:
    """Proves that running out of disk is a clean, explained refusal: on an 8 MiB tmpfs,
    `dstore put` of 1.5 MiB values succeeds until one fails with a message naming the full
    disk; the earlier values still read back, the failed key is not listed and nothing is
    left in tmp/. Deleting values (or growing the disk) makes the next put succeed."""
    mnt = tmpfs("disk", "8m")
    root = str(mnt / "root")
    rng = random.Random(5)
    stored: dict[str, bytes] = {}
    failure = None
    for i in range(20):
        data = rng.randbytes(3 * MIB // 2)
        (tmp_path / "in.bin").write_bytes(data)
        r = cli("put", "--root", root, f"k{i}", str(tmp_path / "in.bin"), check=False)
        if r.returncode != 0:
            failure = (f"k{i}", data, r)
            break
        stored[f"k{i}"] = data
    assert failure is not None, "20 puts of 1.5 MiB fit on an 8 MiB disk"
    key, data, r = failure
    message = r.stderr.decode(errors="replace")
    print(f"\nput {len(stored)} values of 1.5 MiB, then: exit {r.returncode}: {message.strip()}")
    assert len(stored) >= 2
    assert "No space left" in message or "disk full" in message, message
    for k, v in stored.items():
        assert cli("get", "--root", root, k).stdout == v
    assert cli("ls", "--root", root).stdout.decode().split() == sorted(stored)
    assert list((mnt / "root" / "tmp").iterdir()) == [], "a failed put left files in tmp/"

    for k in sorted(stored)[:2]:
        cli("rm", "--root", root, k)
        del stored[k]
    (tmp_path / "in.bin").write_bytes(data)
    cli("put", "--root", root, key, str(tmp_path / "in.bin"))
    stored[key] = data
    subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
    for i in range(4):
        more = rng.randbytes(3 * MIB // 2)
        (tmp_path / "in.bin").write_bytes(more)
        cli("put", "--root", root, f"more{i}", str(tmp_path / "in.bin"))
        stored[f"more{i}"] = more
    for k, v in stored.items():
        assert cli("get", "--root", root, k).stdout == v
    assert cli("ls", "--root", root).stdout.decode().split() == sorted(stored)


def test_a_member_with_a_full_disk_is_written_around(
    tmpfs: Callable[[str, str], Path], cluster: Cluster, tmp_path: Path, writer_kind: str
) -> None:
    """Proves that one member out of disk space does not stop a cluster: of 3 members
    (replicas 3) one has its root on a full tmpfs; writes through the cluster still succeed
    (the two others hold them) and read back through every member, the full member keeps
    running, and once space is freed repair gives it its copies."""
    disk = tmpfs("n2", "6m")  # node 2's root
    a = cluster.start(*FAST)
    cluster.start(*FAST, peers=[cluster.addrs[a]])
    cluster.start(*FAST, peers=[cluster.addrs[a]])
    cluster.wait_members()
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        for block in (65536, 4096, 1):  # to the last byte
            try:
                while True:
                    f.write(b"\0" * block)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    rng = random.Random(9)
    values = {f"v/{i}": rng.randbytes(300 * 1024 + i) for i in range(10)}
    with writer(writer_kind, tmp_path / "writer", cluster.addrs) as c:
        for k, v in values.items():
            c.store(k, v)
    assert cluster.procs[2].poll() is None, "the full member died"
    check_through_every_node(tmp_path, dict(enumerate(cluster.addrs)), dict(values), "full")
    held = cluster.stats(0)
    print("\nwhile full, keys/chunks held: " + ", ".join(
        f"node {i} {held[a]['keys']}/{held[a]['chunks']}" for i, a in enumerate(cluster.addrs) if held.get(a)))  # fmt: skip
    assert held[cluster.addrs[2]]["chunks"] < len(values), "the full member stored the values: the disk was not full"
    filler.unlink()

    def caught_up() -> bool:
        s = cluster.stats(0)
        full, other = s.get(cluster.addrs[2]), s.get(cluster.addrs[0])
        return full is not None and other is not None and full["keys"] == len(values) and full["chunks"] == other["chunks"]

    took = wait_for(caught_up, "the member with space again gets its copies", 60)
    print(f"the full member got its {len(values)} keys {took:.1f} s after space was freed")


# ---------------------------------------------------------------------------------------------
# 6. Clock skew, then every member restarted


def test_clock_skew_and_whole_cluster_restart(cluster: Cluster, tmp_path: Path) -> None:
    """Proves that the order of writes, not the writers' wall clocks, decides which value a
    key keeps: one of 3 members runs 5 minutes behind (and so do the clients that write
    through it). A write through it that follows a write through a normal member wins
    everywhere, and so does a write through a normal member that follows one through it; a
    delete through the slow member after a write elsewhere deletes. Then every member is
    stopped with SIGTERM (exit 0) and started again on the same roots and ports: every key
    still has its last value, through every member, and the deleted ones stay deleted."""
    skew = ("--clock-offset-ms", "-300000")
    a = cluster.start(*FAST)
    cluster.start(*FAST, peers=[cluster.addrs[a]])
    slow = cluster.start(*FAST, *skew, peers=[cluster.addrs[a]])
    cluster.wait_members()
    addrs = cluster.addrs
    normal = ["--peer", addrs[0]]
    skewed = ["--peer", addrs[slow], *skew]
    expected: dict[str, bytes | None] = {}

    def put(via: list[str], key: str, value: bytes) -> None:
        f = tmp_path / "value"
        f.write_bytes(value)
        cli("put", *via, key, str(f))
        expected[key] = value

    def readers() -> list[dstore.Node]:
        rs = [client(tmp_path / f"reader{j}-{time.monotonic_ns()}", [addr]) for j, addr in enumerate(addrs)]
        for r in rs:
            r.settle(20)
        return rs

    def check(rs: list[dstore.Node], keys: Iterable[str]) -> None:
        for key in keys:
            for j, r in enumerate(rs):
                if expected[key] is None:
                    with pytest.raises(dstore.NotFoundError):
                        r.get(key)
                else:
                    assert r.get(key) == expected[key], (key, j)

    rs = readers()
    try:
        for i in range(6):
            key = f"k{i}"
            first, second = (normal, skewed) if i % 2 == 0 else (skewed, normal)
            put(first, key, f"first {key}".encode())
            put(second, key, f"second {key}".encode())
            check(rs, [key])
        for i in range(3):
            key = f"gone{i}"
            put(normal, key, b"to be deleted")
            cli("rm", *skewed, key)
            expected[key] = None
            check(rs, [key])
        # And the other way round: written late through the slow member, deleted by a normal one.
        put(skewed, "gone-slow", b"to be deleted")
        cli("rm", *normal, "gone-slow")
        expected["gone-slow"] = None
        check(rs, expected)
    finally:
        for r in rs:
            r.close()

    codes = [cluster.terminate(i) for i in range(3)]
    assert codes == [0, 0, 0], codes
    for i in range(3):
        cluster.restart(i)
    cluster.wait_members()
    rs = readers()
    try:
        check(rs, expected)
        live = sorted(k for k, v in expected.items() if v is not None)
        for r in rs:
            assert list(r.keys()) == live
    finally:
        for r in rs:
            r.close()
    print(f"\n{len(expected)} keys: last writes won across a 5-minute skew, before and after a full restart")
