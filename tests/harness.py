"""The one harness for tests that run dstore nodes: `dstore node` processes on 127.0.0.1 (or on
hosts in network namespaces), the `dstore` command, and Python writers that are either
clients or embedded members. Every wait has a deadline (`wait_for`); every process started
through a `Cluster` is stopped by `stop_all`, which the `cluster` fixture (conftest.py) calls
at teardown, also when a test fails.

Node i of a `Cluster` keeps root `tmp/n{i}` and log `tmp/n{i}.log` (appended to across
restarts), and is restarted on its own root and address.
"""

from __future__ import annotations

import os
import random
import selectors
import signal
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

import pytest

import dstore

REPO = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
DSTORE = TARGET / "release" / "dstore"
SECRET = "e2e cluster secret"
KEY = "5a" * 32
DATA_KEY = bytes.fromhex(KEY)
MIB = 1024 * 1024

# Failure detection and repair in seconds rather than the defaults' tens of seconds: the
# flags of `dstore node`, and the same for Python members and clients.
FAST = (
    "--suspect-after-ms", "1000",
    "--dead-after-ms", "3000",
    "--call-timeout-ms", "2000",
    "--repair-interval-ms", "1000",
)  # fmt: skip
FAST_PY: dict[str, Any] = dict(suspect_after=1, dead_after=3, call_timeout=2)
FAST_MEMBER_PY: dict[str, Any] = dict(FAST_PY, repair_interval=1)


def env(**extra: str) -> dict[str, str]:
    """The environment for the `dstore` command: this cluster's secret and data key, and no
    other DSTORE_ setting of the caller's but DSTORE_LOG (to debug a test with node logs)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("DSTORE_") or k == "DSTORE_LOG"}
    e.update(DSTORE_SECRET=SECRET, DSTORE_KEY=KEY)
    e.update(extra)
    return e


def cli(*args: str, environ: dict[str, str] | None = None, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """Runs `dstore ARGS`; with `check`, fails the test on a non-zero exit."""
    r = subprocess.run([str(DSTORE), *args], capture_output=True, env=environ or env(), timeout=timeout)
    if check:
        assert r.returncode == 0, r.stderr.decode()
    return r


def wait_for(cond: Callable[[], object], what: str, seconds: float = 30, every: float = 0.1) -> float:
    """Polls `cond` until it is true; returns the seconds it took. Fails after `seconds`."""
    start = time.monotonic()
    while True:
        if cond():
            return time.monotonic() - start
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(every)


def first_line(p: subprocess.Popen[str], seconds: float) -> str:
    """A node's one line of stdout (its address), or '' if none comes within `seconds`."""
    assert p.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(p.stdout, selectors.EVENT_READ)
        ready = sel.select(seconds)
    line = p.stdout.readline() if ready else ""
    p.stdout.close()
    return line


class Cluster:
    """`dstore node` processes, each with one root and one address, which can be killed
    (SIGKILL), paused (SIGSTOP), stopped (SIGTERM), restarted on the same root and address,
    or removed for good."""

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
        """Starts node i (the next number) and returns i; its address is `addrs[i]`."""
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
        self.adopt(i, args)

    def adopt(self, i: int, args: list[str], environ: dict[str, str] | None = None) -> None:
        """Runs `args` (a `dstore node` command line) as node i, waiting for its address."""
        with open(self.tmp / f"n{i}.log", "a") as log:
            p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, env=environ or env())
        self.every.append(p)
        self.procs[i] = p
        line = first_line(p, 30)
        assert " listening on " in line, f"node {i} did not start: {line!r}, log: {self.log(i)[-3000:]}"
        self.addrs[i] = line.strip().rsplit(" ", 1)[1]

    def start_with(self, args: list[str], environ: dict[str, str] | None = None) -> int:
        """Starts a node from a whole command line of its own (a config file, say)."""
        i = len(self.addrs)
        self.addrs.append("")
        self.args.append(([], []))
        self.adopt(i, args, environ)
        return i

    def live(self) -> list[int]:
        return [i for i, p in sorted(self.procs.items()) if p.poll() is None]

    def kill(self, i: int) -> None:
        """SIGKILL: no chance to flush, close or say goodbye."""
        p = self.procs[i]
        p.kill()
        p.wait(timeout=30)

    def pause(self, i: int) -> None:
        """SIGSTOP: alive to the kernel, silent to its peers."""
        self.procs[i].send_signal(signal.SIGSTOP)

    def resume(self, i: int) -> None:
        self.procs[i].send_signal(signal.SIGCONT)

    def restart(self, i: int) -> None:
        """Node i again, on its root and its address, joining through the others."""
        assert self.procs[i].poll() is not None
        self._launch(i, self.addrs[i], [a for j, a in enumerate(self.addrs) if j != i and j not in self.gone])

    def remove(self, i: int) -> None:
        """Node i is lost for good: killed, and its disk gone."""
        import shutil

        self.kill(i)
        self.gone.add(i)
        shutil.rmtree(self.root(i))

    def terminate(self, i: int) -> int:
        """SIGTERM, and the exit code."""
        p = self.procs[i]
        p.send_signal(signal.SIGTERM)
        return p.wait(timeout=60)

    def stop_all(self) -> list[int]:
        """Stops every process ever started (SIGCONT first, for a paused one); returns the
        exit codes of the nodes' current processes, in node order."""
        for p in self.every:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGTERM)
        for p in self.every:
            try:
                p.wait(timeout=45)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return [p.returncode for _, p in sorted(self.procs.items())]

    def status(self, i: int) -> dict:
        """`dstore status --json` through node i."""
        import json

        r = cli("status", "--json", "--peer", self.addrs[i])
        return json.loads(r.stdout)

    def stats(self, via: int) -> dict[str, Any]:
        """Every member's figures by address, as seen through node `via`."""
        return {n["addr"]: n["stats"] for n in self.status(via)["nodes"]}

    def wait_members(self, seconds: float = 30, also: Iterable[str] = ()) -> float:
        """Until every live node's view has exactly the live nodes (and the members at
        `also`, embedded ones) as members."""
        live = self.live()
        want = sorted([self.addrs[i] for i in live] + list(also))

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

    def copies_of_every_key(self, n: int, members: int) -> Callable[[], bool]:
        """A condition: `members` members answer, and each live key is on exactly n of them."""

        def ok() -> bool:
            s = self.status(self.live()[0])
            held = [m["stats"]["keys"] for m in s["nodes"] if m["stats"]]
            return len(held) == members and sum(held) == n * s["keys"]

        return ok


# ---------------------------------------------------------------------------------------------
# Python nodes: clients, and members embedded in this process (the main way dstore is used)

WRITER_KINDS = ("client", "member")


def client(root: Path, peers: Iterable[str], **kw: Any) -> dstore.Node:
    """A Python cluster client: owns nothing, reaches the members through `peers`."""
    opts: dict[str, Any] = dict(FAST_PY)
    opts.update(kw)
    return dstore.Node(root, key=DATA_KEY, secret=SECRET.encode(), peers=list(peers), client=True, **opts)


def member(root: Path, peers: Iterable[str], listen: str = "127.0.0.1:0", **kw: Any) -> dstore.Node:
    """A Python cluster member embedded in this process: listens, owns its share of the data,
    and when closed hands what it acknowledged to the others."""
    opts: dict[str, Any] = dict(FAST_MEMBER_PY)
    opts.update(kw)
    return dstore.Node(root, key=DATA_KEY, secret=SECRET.encode(), peers=list(peers), listen=listen, **opts)


def writer(kind: str, root: Path, peers: Iterable[str], **kw: Any) -> dstore.Node:
    """A writer of the kind a test is parametrized with (`WRITER_KINDS`), settled. `listen`
    is a member's only (a client never listens)."""
    if kind == "client":
        kw.pop("listen", None)
        node = client(root, peers, **kw)
    else:
        node = member(root, peers, **kw)
    node.settle(20)
    return node


@pytest.fixture(params=WRITER_KINDS)
def writer_kind(request: pytest.FixtureRequest) -> str:
    """Runs a test with its writers as clients, then as embedded members."""
    return request.param


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
            except dstore.NotFoundError as e:
                if want is not None:
                    lost += 1
                    print(f"  lost {k}: {e}")
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


def flip_in_catalog(root: Path, key: str, at: int) -> int:
    """Flips byte `at` of every copy of `key`'s manifest in the root's catalog (the live one and
    any stale copy in a freed page), as rot would; returns how many it found. The node must be
    closed (an open catalog serves pages from its cache). A stored manifest starts with the
    disk format's byte, the key's length (one byte, for a short key) and the key."""
    catalog = root / "catalog.redb"
    data = bytearray(catalog.read_bytes())
    start = bytes([2, len(key)]) + key.encode()
    found = [i for i in range(len(data)) if data.startswith(start, i)]
    for i in found:
        data[i + at] ^= 0x01
    catalog.write_bytes(bytes(data))
    return len(found)


def flip(files: Iterable[Path]) -> None:
    """Bit rot: one byte in the middle of each file changes."""
    for f in files:
        with open(f, "r+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(size // 2)
            byte = fh.read(1)
            fh.seek(size // 2)
            fh.write(bytes([byte[0] ^ 0x5A]))


class ChunkCopy(NamedTuple):
    """One stored copy of a chunk: a file under chunks/, or a record in a segment file under
    segments/ (parsed here from the record format in DESIGN.md, independently of the core:
    `len: u32 LE` of kind, id and payload | kind | id (32) | payload | checksum (32)). Dead
    records, left by deletes until compaction, are listed too."""

    path: Path
    offset: int
    length: int

    def read(self) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            return f.read(self.length)

    def flip(self, at: int) -> None:
        """Bit rot: byte `at` (modulo the length) of this copy changes."""
        with open(self.path, "r+b") as f:
            f.seek(self.offset + at % self.length)
            byte = f.read(1)
            f.seek(self.offset + at % self.length)
            f.write(bytes([byte[0] ^ 0x5A]))


def chunk_copies(root: Path) -> list[ChunkCopy]:
    """Every chunk copy under a root: chunk files, then segment records in order."""
    out = [ChunkCopy(f, 0, f.stat().st_size) for f in sorted((root / "chunks").rglob("*")) if f.is_file()]
    for seg in sorted((root / "segments").glob("*.seg")):
        data = seg.read_bytes()
        at = 0
        while at + 4 + 33 + 32 <= len(data):
            n = int.from_bytes(data[at : at + 4], "little")
            if n < 33 or at + 4 + n + 32 > len(data):
                break
            out.append(ChunkCopy(seg, at + 4 + 33, n - 33))
            at += 4 + n + 32
    return out


def tree_bytes(root: Path, *dirs: str) -> int:
    return sum(f.stat().st_size for d in dirs for f in (root / d).rglob("*") if f.is_file())


# ---------------------------------------------------------------------------------------------
# Hosts in network namespaces, for tests that cut links


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


REFUSED = ("operation not permitted", "permission denied", "must be root")


class Net:
    """A private network of Linux network namespaces (needs root and `ip` from iproute2;
    `.ci/run` installs it when missing).

        hub namespace:   bridge A (the majority side) and bridge B (where a cut-off host goes)
        host i:          a namespace with eth0 = 10.X.Y.(i+1)/24, its veth peer on bridge A
        this namespace:  one veth with 10.X.Y.254/24 on bridge A, for the test's own clients

    The bridges live in their own namespace so that the host's firewall (e.g. Docker's FORWARD
    policy, which bridged traffic meets when br_netfilter is loaded) never sees the traffic.
    Moving a host's veth from bridge A to bridge B cuts it off from everyone on A while the
    hosts on B still reach each other: a clean partition, healed by moving it back. Every name
    carries this process's pid, and the subnet is derived from it, so parallel runs do not
    collide."""

    PORT = 7420

    def __init__(self, hosts: int) -> None:
        pid = os.getpid()
        self.tag = f"ds{pid}"
        self.hub = f"{self.tag}hub"
        self.hosts = [f"{self.tag}h{i}" for i in range(hosts)]
        self.subnet = f"10.{200 + pid % 50}.{(pid // 50) % 256}"
        self.ips = [f"{self.subnet}.{i + 1}" for i in range(hosts)]
        self.client_ip = f"{self.subnet}.254"
        self.made: list[str] = []  # namespaces created, deleted at teardown

    def addr(self, i: int) -> str:
        return f"{self.ips[i]}:{self.PORT}"

    def prefix(self, i: int) -> list[str]:
        """The command prefix that runs a program on host i."""
        return ["ip", "netns", "exec", self.hosts[i]]

    def veth(self, i: int) -> str:
        """Host i's end of its cable, on the hub's bridges."""
        return f"{self.tag}v{i}"

    def up(self) -> None:
        r = ip("netns", "add", self.hub, check=False)
        if r.returncode != 0:
            if any(s in r.stderr.lower() for s in REFUSED):
                pytest.skip(f"this kernel or user may not create network namespaces: {r.stderr.strip()}")
            raise RuntimeError(f"ip netns add: {r.stderr.strip()}")
        self.made.append(self.hub)
        hub = ["-n", self.hub]
        ip(*hub, "link", "set", "lo", "up")
        for bridge in ("brA", "brB"):
            ip(*hub, "link", "add", bridge, "type", "bridge")
            ip(*hub, "link", "set", bridge, "up")
        for i, ns in enumerate(self.hosts):
            ip("netns", "add", ns)
            self.made.append(ns)
            inner = f"{self.tag}p{i}"
            ip("link", "add", self.veth(i), "type", "veth", "peer", "name", inner)
            ip("link", "set", inner, "netns", ns)
            ip("-n", ns, "link", "set", inner, "name", "eth0")
            ip("-n", ns, "addr", "add", f"{self.ips[i]}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("link", "set", self.veth(i), "netns", self.hub)
            ip(*hub, "link", "set", self.veth(i), "master", "brA", "up")
        # This namespace's own port on bridge A.
        ip("link", "add", f"{self.tag}r", "type", "veth", "peer", "name", f"{self.tag}q")
        ip("link", "set", f"{self.tag}q", "netns", self.hub)
        ip(*hub, "link", "set", f"{self.tag}q", "master", "brA", "up")
        ip("addr", "add", f"{self.client_ip}/24", "dev", f"{self.tag}r")
        ip("link", "set", f"{self.tag}r", "up")

    def cut(self, *hosts: int) -> None:
        """Moves these hosts to bridge B: they reach each other, and nobody else."""
        for i in hosts:
            ip("-n", self.hub, "link", "set", self.veth(i), "master", "brB")

    def heal(self, *hosts: int) -> None:
        for i in hosts:
            ip("-n", self.hub, "link", "set", self.veth(i), "master", "brA")

    def down(self) -> None:
        """Deletes everything made; deleting a namespace deletes the veths in it, and a veth
        pair goes with either end. Safe to call after a partial `up`."""
        for ns in reversed(self.made):
            ip("netns", "del", ns, check=False)
        self.made.clear()
        ip("link", "del", f"{self.tag}r", check=False)
