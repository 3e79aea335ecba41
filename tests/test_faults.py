"""Durability under failure: `dstore node` processes killed with SIGKILL, partitioned in
network namespaces, lost for good, bit-rotted on disk, out of disk space and with a clock five
minutes off. Every test checks the one thing that matters: each write that was acknowledged is
readable, with its bytes, through every member afterwards (and nothing deleted comes back).

The writers are Python clients (`dstore.Node(..., client=True)`) shared by threads, so a test
makes thousands of writes without a process per write. Each test stops every process it
starts, in fixtures' teardowns, also when it fails. Figures are printed (run with -s)."""

from __future__ import annotations

import errno
import json
import os
import random
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pytest

import dstore
from conftest import DSTORE, KEY, SECRET, dstore as cli, env
from netns import Net

pytestmark = pytest.mark.usefixtures("dstore_binary")

DATA_KEY = bytes.fromhex(KEY)
MIB = 1024 * 1024
# Failure detection and repair in seconds rather than the defaults' tens of seconds.
FAST = (
    "--suspect-after-ms", "1000",
    "--dead-after-ms", "3000",
    "--call-timeout-ms", "2000",
    "--repair-interval-ms", "1000",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Helpers


def wait_for(cond: Callable[[], object], what: str, seconds: float = 30, every: float = 0.2) -> float:
    """Polls `cond` until it is true; returns the seconds it took. Fails after `seconds`."""
    start = time.monotonic()
    while True:
        if cond():
            return time.monotonic() - start
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(every)


class Cluster:
    """`dstore node` processes with one root and one address each, which can be killed
    (SIGKILL), restarted on the same root and address, or removed for good. Node i keeps
    root `tmp/n{i}` and log `tmp/n{i}.log` (appended to across restarts)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.addrs: list[str] = []
        self.args: list[tuple[list[str], list[str]]] = []  # per node: (prefix, flags)
        self.procs: dict[int, subprocess.Popen[str]] = {}  # the running process of each node
        self.every: list[subprocess.Popen[str]] = []  # every process ever started
        self.gone: set[int] = set()  # removed for good

    def root(self, i: int) -> Path:
        return self.tmp / f"n{i}"

    def log(self, i: int) -> str:
        return (self.tmp / f"n{i}.log").read_text(errors="replace")

    def start(self, *flags: str, listen: str = "127.0.0.1:0", peers: Iterable[str] = (), prefix: Iterable[str] = ()) -> int:
        i = len(self.addrs)
        self.addrs.append(listen)
        self.args.append((list(prefix), list(flags)))
        self._launch(i, listen, list(peers))
        return i

    def cluster(self, n: int, *flags: str) -> list[str]:
        """n members on 127.0.0.1, all joined through the first; waits until each sees all."""
        first = self.start(*flags)
        for _ in range(n - 1):
            self.start(*flags, peers=[self.addrs[first]])
        self.wait_members()
        return list(self.addrs)

    def _launch(self, i: int, listen: str, peers: list[str]) -> None:
        prefix, flags = self.args[i]
        args = [*prefix, str(DSTORE), "node", "--root", str(self.root(i)), "--listen", listen, *flags]
        for peer in peers:
            args += ["--peer", peer]
        with open(self.tmp / f"n{i}.log", "a") as log:
            p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, env=env())
        self.every.append(p)
        self.procs[i] = p
        line = first_line(p, 30)
        assert " listening on " in line, f"node {i} did not start: {line!r}, log: {self.log(i)[-3000:]}"
        self.addrs[i] = line.strip().rsplit(" ", 1)[1]

    def live(self) -> list[int]:
        return [i for i, p in sorted(self.procs.items()) if p.poll() is None]

    def kill(self, i: int) -> None:
        """SIGKILL: no chance to flush, close or say goodbye."""
        p = self.procs[i]
        p.kill()
        p.wait()

    def restart(self, i: int) -> None:
        """Node i again, on its root and its address, joining through the others."""
        assert self.procs[i].poll() is not None
        self._launch(i, self.addrs[i], [a for j, a in enumerate(self.addrs) if j != i and j not in self.gone])

    def remove(self, i: int) -> None:
        """Node i is lost for good: killed, and its disk gone."""
        self.kill(i)
        self.gone.add(i)
        shutil.rmtree(self.root(i))

    def terminate(self, i: int) -> int:
        p = self.procs[i]
        p.send_signal(signal.SIGTERM)
        return p.wait(timeout=30)

    def stop_all(self) -> None:
        for p in self.every:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.every:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def status(self, i: int) -> dict:
        """`dstore status --json` through node i."""
        r = cli("status", "--json", "--peer", self.addrs[i])
        return json.loads(r.stdout)

    def stats(self, via: int) -> dict[str, Any]:
        """Every member's figures by address, as seen through node `via`."""
        return {n["addr"]: n["stats"] for n in self.status(via)["nodes"]}

    def wait_members(self, seconds: float = 30) -> float:
        """Until every live node's view has exactly the live nodes as members."""
        live = self.live()
        want = sorted(self.addrs[i] for i in live)

        def all_see_all() -> bool:
            return all(sorted(m["addr"] for m in self.status(i)["members"]) == want for i in live)

        return wait_for(all_see_all, f"members {want} seen by all", seconds, every=0.3)

    def wait_repaired(self, passes: int = 2, seconds: float = 60) -> dict[str, dict]:
        """Until every live node has completed `passes` more repair passes than now (so at
        least one pass started after this call); returns the figures then."""
        via = self.live()[0]
        before = self.stats(via)
        want = {self.addrs[i] for i in self.live()}
        after: dict[str, Any] = {}

        def done() -> bool:
            nonlocal after
            after = self.stats(via)
            return set(after) >= want and all(
                after[a] is not None and before.get(a) is not None
                and after[a]["repair"]["passes"] >= before[a]["repair"]["passes"] + passes
                for a in want
            )  # fmt: skip

        wait_for(done, f"{passes} repair passes on {sorted(want)}", seconds, every=0.3)
        return {a: s for a, s in after.items() if s is not None}


def first_line(p: subprocess.Popen[str], seconds: float) -> str:
    """The node's one line of stdout (its address), or '' if none comes within `seconds`."""
    assert p.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(p.stdout, selectors.EVENT_READ)
        ready = sel.select(seconds)
    line = p.stdout.readline() if ready else ""
    p.stdout.close()
    return line


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop_all()


def client(root: Path, peers: Iterable[str], **kw: Any) -> dstore.Node:
    """A Python cluster client: owns nothing, reaches the members through `peers`."""
    opts: dict[str, Any] = dict(suspect_after=1, dead_after=3, call_timeout=2)
    opts.update(kw)
    return dstore.Node(root, key=DATA_KEY, secret=SECRET.encode(), peers=list(peers), client=True, **opts)


def check_all(c: dstore.Node, expected: dict[str, bytes | None], threads: int = 4) -> tuple[int, int, Counter]:
    """Reads every key of `expected` through `c` (None: must be NotFound). Returns (lost,
    wrong, what went wrong by kind)."""
    keys = sorted(expected)
    kinds: Counter = Counter()
    lock = threading.Lock()

    def part(ks: list[str]) -> tuple[int, int]:
        lost = wrong = 0
        for k in ks:
            want = expected[k]
            try:
                got = c.get(k)
            except dstore.NotFoundError:
                if want is not None:
                    lost += 1
                    with lock:
                        kinds["not found"] += 1
                continue
            except dstore.Error as e:
                lost += 1
                with lock:
                    kinds[f"{type(e).__name__}: {str(e)[:80]}"] += 1
                continue
            if got != want:
                wrong += 1
                with lock:
                    kinds["deleted but read" if want is None else "wrong bytes"] += 1
        return lost, wrong

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(part, [keys[t::threads] for t in range(threads)]))
    return sum(r[0] for r in results), sum(r[1] for r in results), kinds


def check_through_every_node(tmp: Path, addrs: dict[int, str], expected: dict[str, bytes | None], tag: str, **kw: Any) -> None:
    """Every key of `expected` through a client per member (that member its only peer);
    `addrs` maps node numbers to addresses, `kw` are client options."""
    for i, addr in addrs.items():
        with client(tmp / f"{tag}-reader{i}", [addr], **kw) as c:
            c.settle(20)
            lost, wrong, kinds = check_all(c, expected)
        print(f"  through node {i} ({addr}): {len(expected)} keys read, lost={lost} wrong={wrong} {dict(kinds)}")
        assert lost == 0 and wrong == 0, f"through node {i}: lost={lost} wrong={wrong}: {dict(kinds)}"


def value_for(key: str, n: int, rng: random.Random, size: int) -> bytes:
    """A value that names its key and write, so no two writes store the same bytes."""
    head = f"{key}#{n}:".encode()
    return head + rng.randbytes(max(0, size - len(head)))


def flip(files: Iterable[Path]) -> None:
    """Bit rot: one byte in the middle of each file changes."""
    for f in files:
        with open(f, "r+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(size // 2)
            byte = fh.read(1)
            fh.seek(size // 2)
            fh.write(bytes([byte[0] ^ 0x5A]))


def tree_bytes(root: Path, *dirs: str) -> int:
    return sum(f.stat().st_size for d in dirs for f in (root / d).rglob("*") if f.is_file())


# ---------------------------------------------------------------------------------------------
# 1. SIGKILL during writes


def test_kill9_random_node_during_writes(cluster: Cluster, tmp_path: Path) -> None:
    """Proves that an acknowledged write survives members being SIGKILLed at random moments
    (mid-request, mid-fsync, mid-repair) and restarted on the same root and address: four
    writer threads store 2,000 distinct small values through a 5-member, 3-replica cluster
    while a random member is killed every 1.5-2.5 s and brought back 0.2-1.5 s later.
    Afterwards every acknowledged value reads back, byte for byte, through every member, and
    once repair has run every key is on 3 members again."""
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

    def write(t: int) -> None:
        wrng = random.Random(seeds[t])
        with client(tmp_path / f"writer{t}", addrs) as c:
            c.settle(20)
            for n in range(per_writer):
                if stop.wait(max(0.0, start + n * span / per_writer - time.monotonic())):
                    return
                key = f"w{t}/{n:05d}"
                value = value_for(key, n, wrng, wrng.randint(16, 600))
                try:
                    c.store(key, value)
                except dstore.Error as e:
                    with lock:
                        failed[f"{type(e).__name__}: {str(e)[:60]}"] += 1
                    continue
                acked[t][key] = value

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
    print(f"\nwrote for {wrote:.1f} s: {len(expected)} acknowledged, {n_failed} failed {dict(failed)}; killed {killed} (seed {seed})")
    assert len(expected) >= writers * per_writer // 2, "most writes should have been acknowledged"

    settle = cluster.wait_members(60)
    stats = cluster.wait_repaired(2)
    print(f"members settled after {settle:.1f} s; repair: " + ", ".join(
        f"{s['repair']['passes']} passes/{s['repair']['manifests_pushed']} manifests pushed" for s in stats.values()))  # fmt: skip
    check_through_every_node(tmp_path, dict(enumerate(addrs)), expected, "kill9")
    print(f"acknowledged={len(expected)} failed={n_failed} lost=0 wrong=0 kills={len(killed)}")

    # Replication is restored: once repair has run, each key is held by 3 members (the writes
    # that failed may have landed too; the cluster's count includes them).
    def three_copies() -> bool:
        s = cluster.status(0)
        held = [n["stats"]["keys"] for n in s["nodes"] if n["stats"]]
        return len(held) == 5 and sum(held) == 3 * s["keys"]

    wait_for(three_copies, "every key on exactly 3 members", 60, every=1)


# ---------------------------------------------------------------------------------------------
# 2. A partition, healed


@pytest.fixture
def net() -> Iterator[Net]:
    n = Net(5)
    try:
        n.up()
        yield n
    finally:
        n.down()


def test_partition_minority_then_heal(net: Net, cluster: Cluster, tmp_path: Path) -> None:
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
    with client(tmp_path / "writer", addrs) as c:
        c.settle(20)
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

    def three_copies() -> bool:
        s = cluster.status(0)
        held = [n["stats"]["keys"] for n in s["nodes"] if n["stats"]]
        return len(held) == 5 and sum(held) == 3 * s["keys"]

    converged = wait_for(three_copies, "every key on exactly 3 members", 60, every=1)
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


def test_permanent_loss_with_replicas_2(cluster: Cluster, tmp_path: Path) -> None:
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
    with client(tmp_path / "writer", addrs, replicas=2) as c:  # a client places data too
        c.settle(20)
        for k, v in values.items():
            c.store(k, v)
    base = cluster.wait_repaired(2)
    held_chunks = sum(s["chunks"] for s in base.values())
    held_keys = sum(s["keys"] for s in base.values())
    assert held_keys == 2 * len(values)

    victim = rng.randrange(4)
    lost_bytes = tree_bytes(cluster.root(victim), "chunks", "manifests")
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


def test_bit_rot_is_read_around_and_scrubbed(cluster: Cluster, tmp_path: Path) -> None:
    """Proves that flipped bits on one member's disk never reach a reader and are repaired
    without an operator. 3 members, replicas 3, so every member holds everything. Bytes are
    flipped in chunk and manifest files (of the values in group A) of member 2, whose scrubber
    is off at first: reads through it return the right bytes, however often they meet a bad
    copy. Then member 2 is restarted with a fast scrubber, and bytes are flipped in the files
    of group B, which nothing reads: the scrubber finds them, sets them aside in quarantine/
    and puts good copies, fetched from the other owners, back in place byte for byte; the bad
    files of group A are back too."""
    rng = random.Random(11)
    fast_scrub = ("--scrub-rate", "1000000000", "--scrub-interval-ms", "500")
    a = cluster.start(*FAST, *fast_scrub)
    cluster.start(*FAST, *fast_scrub, peers=[cluster.addrs[a]])
    cluster.start(*FAST, "--scrub-rate", "0", peers=[cluster.addrs[a]])
    cluster.wait_members()
    addrs = cluster.addrs
    group_a = {f"a/big{i}": rng.randbytes(5 * MIB // 2 + i) for i in range(3)}
    group_a.update({f"a/small{i}": rng.randbytes(3000 + i) for i in range(12)})
    # Group B is stored without encryption, so its files can be told apart on disk.
    group_b = {f"b/big{i}": rng.randbytes(3 * MIB // 2 + i) for i in range(2)}
    group_b.update({f"b/small{i}": rng.randbytes(2000 + i) for i in range(4)})
    with client(tmp_path / "writer", addrs) as c:
        c.settle(20)
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
    manifest_files = sorted(f for f in (root / "manifests").rglob("*") if f.is_file())
    assert len(manifest_files) == n_values, manifest_files
    probes = [v[o : o + 64] for v in group_b.values() for o in range(0, len(v), MIB)]  # each chunk's start
    b_chunks = [f for f in chunk_files if any(p in f.read_bytes() for p in probes)]
    b_manifests = [f for f in manifest_files if b"b/" in f.read_bytes()]
    assert len(b_chunks) == len(probes) and len(b_manifests) == len(group_b), (len(b_chunks), len(b_manifests))
    a_chunks = [f for f in chunk_files if f not in b_chunks]
    a_manifests = [f for f in manifest_files if f not in b_manifests]
    bad_a = rng.sample(a_chunks, 6) + rng.sample(a_manifests, 4)
    bad_b = rng.sample(b_chunks, 2) + rng.sample(b_manifests, 2)
    originals = {f: f.read_bytes() for f in bad_a + bad_b}
    flip(bad_a)
    print(f"\nflipped a byte in {len(bad_a)} of node 2's files ({len(chunk_files)} chunks, {len(manifest_files)} manifests)")

    for round_ in range(3):  # each read picks its owners afresh: give the bad copies a chance
        with client(tmp_path / f"reader{round_}", [addrs[2]]) as c:
            c.settle(20)
            lost, wrong, kinds = check_all(c, dict(group_a))
        assert lost == 0 and wrong == 0, f"read through the rotted member: lost={lost} wrong={wrong} {dict(kinds)}"
    met = sum(1 for f in bad_a if not f.exists() or f.read_bytes() == originals[f])
    print(f"reads of group A through node 2 were all right; {met} of its {len(bad_a)} bad files were met (set aside or repaired)")

    assert cluster.terminate(2) == 0
    cluster.args[2] = (cluster.args[2][0], [*FAST, *fast_scrub])
    cluster.restart(2)
    flip(bad_b)

    def restored() -> bool:
        return all(f.is_file() and f.read_bytes() == data for f, data in originals.items())

    took = wait_for(restored, "the rotted files back with their original bytes", 60, every=0.2)
    quarantined = [f for f in (root / "quarantine").rglob("*") if f.is_file()]
    scrub_stats = cluster.stats(0)[addrs[2]]["scrub"]
    print(f"flipped a byte in {len(bad_b)} more files; all restored {took:.1f} s later; quarantine holds {len(quarantined)} files; scrub {scrub_stats}")
    assert len(quarantined) >= len(bad_b), "the bad files were not set aside in quarantine/"
    assert scrub_stats["bad"] >= len(bad_b) and scrub_stats["restored"] >= len(bad_b), scrub_stats
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


def test_a_member_with_a_full_disk_is_written_around(tmpfs: Callable[[str, str], Path], cluster: Cluster, tmp_path: Path) -> None:
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
    with client(tmp_path / "writer", cluster.addrs) as c:
        c.settle(20)
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
            assert r.keys() == live
    finally:
        for r in rs:
            r.close()
    print(f"\n{len(expected)} keys: last writes won across a 5-minute skew, before and after a full restart")
