# Stubs for the Rust extension module dstore._dstore (dstore-py/src), re-exported by dstore.
# Checked against the built module by `python -m mypy.stubtest dstore` (see tests/test_python.py).
import io
import os
import sys
from pathlib import Path
from types import TracebackType
from typing import (
    Any,
    Final,
    Iterator,
    List,
    Literal,
    Optional,
    Protocol,
    Tuple,
    Type,
    TypedDict,
    Union,
    final,
    type_check_only,
)

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
else:
    from typing_extensions import Buffer

if sys.version_info >= (3, 11):
    from typing import Self
else:
    from typing_extensions import Self

#: A file path: str, bytes or os.PathLike.
_Path = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

@type_check_only
class _Readable(Protocol):
    def read(self, n: int, /) -> Buffer: ...

@type_check_only
class _Writable(Protocol):
    def write(self, b: bytes, /) -> Any: ...

__all__ = [
    "ClosedError",
    "DEFAULT_CHUNK_SIZE",
    "DrainWarning",
    "Error",
    "IntegrityError",
    "InvalidArgumentError",
    "KeyIterator",
    "LockedError",
    "UnavailableError",
    "INLINE_MAX",
    "MAX_CHUNK_SIZE",
    "MAX_KEY_LEN",
    "MAX_LIST",
    "MIN_CHUNK_SIZE",
    "Node",
    "NotFoundError",
    "StorageIOError",
    "ValueReader",
    "WrongKeyError",
    "__version__",
    "client_credential",
]

__version__: Final[str]
MAX_KEY_LEN: Final[int]
DEFAULT_CHUNK_SIZE: Final[int]
MIN_CHUNK_SIZE: Final[int]
MAX_CHUNK_SIZE: Final[int]
MAX_LIST: Final[int]
# Values of at most this many bytes that fit in one chunk are kept inside their manifest.
INLINE_MAX: Final[int]

@type_check_only
class RepairStats(TypedDict):
    passes: int
    """Repair passes completed: what this node holds checked against its current owners."""
    running: bool
    """Whether a pass is under way now."""
    last_pass_ms: int
    """How long the last completed pass took, in milliseconds."""
    checked: int
    """Objects the current (or the last) pass has checked so far."""
    chunks_pushed: int
    """Chunks sent to owners that lacked them."""
    manifests_pushed: int
    """Manifests (keys' values or deletes) sent to owners that lacked them or held older ones."""
    bytes_pushed: int
    """Bytes of the chunks and manifests pushed."""
    handed_off: int
    """Objects dropped here because this node no longer owns them and their owners have them."""
    read_repairs: int
    shards_rebuilt: int
    rebuild_bytes_read: int
    """Stale owners brought up to date during reads."""

@type_check_only
class ScrubStats(TypedDict):
    passes: int
    """Full scrubs completed: every stored object read back and checked."""
    bytes: int
    """Bytes checked."""
    objects: int
    """Objects checked."""
    bad: int
    """Objects found corrupt (set aside, never served)."""
    restored: int
    """Corrupt objects replaced by a good copy from another owner."""

@type_check_only
class GcStats(TypedDict):
    chunks_collected: int
    """Chunks that no value named, removed after `gc_grace`."""
    tombstones_collected: int
    """Records of deletes dropped after `tombstone_grace`."""

@type_check_only
class DrainStats(TypedDict):
    running: bool
    """Whether the node is handing objects to the owners it leaves behind (closing, leaving)."""
    objects: int
    """Objects the hand-off covers."""
    checked: int
    """Objects checked so far."""
    pushed: int
    """Copies sent to owners that lacked them."""
    bytes: int
    """Bytes of those copies."""
    unconfirmed: int
    """Objects not confirmed on every owner after the last pass."""

@type_check_only
class Stats(TypedDict):
    keys: int
    """Live keys held by the node."""
    chunks: int
    """Distinct chunks held by the node (after deduplication)."""
    bytes_stored: int
    """Plaintext bytes stored through this handle since it was opened."""
    bytes_read: int
    """Plaintext bytes read through this handle since it was opened."""
    repair: RepairStats
    """Repair and hand-off (cluster members; read_repairs on clients too)."""
    scrub: ScrubStats
    """The scrubber (cluster members only)."""
    gc: GcStats
    """Garbage collection (cluster members only; a standalone node reclaims at once)."""
    drain: DrainStats
    """The hand-off of close() and leave() (cluster members only)."""

@type_check_only
class Peer(TypedDict):
    id: str
    """The member's node id, 64 hex digits."""
    addr: str
    """The address it is reached at."""
    zone: Optional[str]
    """Its zone label, if any."""

@type_check_only
class ValueInfo(TypedDict):
    size: int
    """In bytes."""
    version: int
    """Its hybrid-clock reading: a later write of the key has a greater one."""
    writer: str
    """The id of the node that wrote it."""
    modified: float
    """When it was written, in seconds since the epoch (the writer's clock)."""
    encrypted: bool
    erasure: Optional[Tuple[int, int]]
    """(k, m) for an erasure-coded value, None for replicas."""

@final
class ValueReader:
    """The raw reader under `Node.open()` (wrapped by `dstore._io.ValueFile`)."""

    @property
    def size(self) -> int:
        """The value's size in bytes."""
    def read(self, n: int) -> bytes:
        """Up to `n` bytes from the position on (at most to the end of a chunk); empty at
        the end of the value."""
    def seek(self, offset: int, whence: int = 0) -> int:
        """Moves the position as `io.IOBase.seek` does; returns it."""
    def tell(self) -> int:
        """The position the next read starts at."""

@final
class KeyIterator(Iterator[str]):
    """The keys of `Node.keys()`, fetched a page at a time."""

    def __iter__(self) -> KeyIterator: ...
    def __next__(self) -> str: ...

def client_credential(secret: Buffer) -> str:
    """The client credential of the cluster whose secret is `secret`: pass it as `secret=`
    on client machines instead of the secret. It cannot be turned back into the secret and
    does not let its holder be a member (own data, answer repair questions, ask a member to
    leave)."""

@final
class Node:
    """A dstore node: one storage root, open until `close()` (or the end of a `with`).

    `key` is the 32-byte data key (default: one generated and kept in the root), `secret`
    the cluster secret (default: one kept in the root), `chunk_size` the plaintext bytes per
    chunk (MIN_CHUNK_SIZE to MAX_CHUNK_SIZE, default DEFAULT_CHUNK_SIZE). A key is a str of
    1 to MAX_KEY_LEN UTF-8 bytes without NUL. Every call releases the GIL; a Node may be
    shared by many threads.

    Cluster: with `listen` ("host:port", port 0 for any) the node is a member that peers
    reach at `addr`; `peers` are bootstrap addresses, `replicas` the copies kept of everything
    (default 3), `zone` a failure-domain label. With `client=True` it reaches the cluster
    through `peers` without listening or owning data. All nodes of a cluster share `secret`;
    those that should read each other's encrypted values share `key`.

    Durability and background work, all durations in seconds (int or float), None for the
    default: `write_quorum` and `read_quorum` are the owners a write must reach and a read
    waits for (1 to `replicas`; default a majority); a member silent for `suspect_after`
    (default 3) is suspect and for `dead_after` (default 10) dead, and one request to a peer
    may take `call_timeout` (default 10). A member checks every `repair_interval` (default 30;
    0 turns repair and garbage collection off) that its owners have what it holds, scrubs
    everything every `scrub_interval` (default 3600) at `scrub_rate` bytes per second
    (default 16 MiB; 0: no scrubbing), removes a chunk nothing names after `gc_grace`
    (default 3600) and forgets a delete after `tombstone_grace` (default 86400).
    `close()` of a member may take `drain_timeout` (default 30) to hand what it holds to
    the other owners (and `leave()` may go that long without progress).

    Every manifest a holder of a data key writes is sealed with it (plain values and deletes
    too), and such a reader refuses one that is not (IntegrityError), or that another key
    sealed (WrongKeyError): otherwise a holder of only the cluster secret could replace or
    delete its values. `accept_unsealed=True` reads plain values and deletes anyway. A
    client given no `key` holds none: it writes plain values only, unsealed.

    Raises LockedError if another node has `root` open, InvalidArgumentError (a ValueError)
    for a bad key length, chunk size, replica count, quorum, duration or empty secret,
    StorageIOError if the listen address cannot be bound.
    """

    def __new__(
        cls,
        root: _Path,
        key: Optional[Buffer] = None,
        chunk_size: Optional[int] = None,
        secret: Optional[Buffer] = None,
        *,
        listen: Optional[str] = None,
        peers: Optional[List[str]] = None,
        replicas: Optional[int] = None,
        zone: Optional[str] = None,
        client: bool = False,
        advertise: Optional[str] = None,
        write_quorum: Optional[int] = None,
        read_quorum: Optional[int] = None,
        suspect_after: Optional[float] = None,
        dead_after: Optional[float] = None,
        call_timeout: Optional[float] = None,
        repair_interval: Optional[float] = None,
        scrub_interval: Optional[float] = None,
        scrub_rate: Optional[int] = None,
        gc_grace: Optional[float] = None,
        tombstone_grace: Optional[float] = None,
        drain_timeout: Optional[float] = None,
        accept_unsealed: bool = False,
        erasure: Optional[Tuple[int, int]] = None,
        erasure_write_quorum: Optional[int] = None,
    ) -> Self: ...
    @property
    def addr(self) -> Optional[str]:
        """The address peers reach this node at, or None (standalone node or client)."""
    def peers(self) -> List[Peer]:
        """The live members of the cluster other than this node."""
    def settle(self, timeout: float = 10.0) -> int:
        """Waits until this node knows the cluster's members; returns how many it sees.
        Raises UnavailableError if none answers, or at once if they refuse the secret."""
    def store(
        self,
        key: str,
        data: Buffer,
        encrypt: bool = True,
        *,
        erasure: Union[Tuple[int, int], Literal[False], None] = None,
    ) -> None:
        """Stores `data` (any bytes-like object) under `key`, replacing any older value.
        `erasure=(k, m)` keeps it as k data + m parity shards on k + m members, `False` as
        replicas; `None`: as the node was opened (`Node(..., erasure=(4, 2))`)."""
    def get(self, key: str) -> bytes:
        """The value of `key`. Raises NotFoundError, IntegrityError or WrongKeyError."""
    def metrics(self) -> str:
        """This node's metrics in the OpenMetrics text format (as /metrics serves them)."""
    def info(self, key: str) -> ValueInfo:
        """What is known of the value of `key` without reading it. Raises NotFoundError."""
    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """Bytes `offset` to `offset + length` of the value of `key`: fewer if the value
        ends first, empty if it ends at or before `offset`. Only the chunks covering the
        range are fetched. Raises as `get` does."""
    def open(self, key: str) -> io.BufferedReader:
        """The value of `key` as a read-only, seekable binary file (a context manager);
        reads fetch only the chunks they need, from the version current when opened."""
    def delete(self, key: str) -> None:
        """Deletes `key`. Raises NotFoundError if it has no live value."""
    def has(self, key: str) -> bool:
        """Whether `key` has a live value."""
    def list(self, prefix: str = "", start_after: str = "", limit: int = 1000) -> List[str]:
        """One page of the live keys (of the whole cluster, for a cluster node): those
        starting with `prefix` and after `start_after`, in byte order, at most `limit` (1 to
        MAX_LIST). The next page starts after this one's last key; a shorter page is the
        last. Raises UnavailableError if a member cannot answer (never a page that silently
        lacks its keys)."""
    def keys(self, prefix: str = "") -> KeyIterator:
        """Every live key starting with `prefix`, in byte order: an iterator that reads
        them a page at a time (see `list`)."""
    def size(self, key: str) -> int:
        """The size in bytes of the value of `key`. Raises NotFoundError."""
    def store_file(
        self,
        key: str,
        src: Union[_Path, _Readable],
        encrypt: bool = True,
        *,
        erasure: Union[Tuple[int, int], Literal[False], None] = None,
    ) -> int:
        """Stores under `key` the file at path `src`, or what binary file object `src`
        gives with `read(n)` until b"", streaming; returns the bytes stored. Nothing is
        stored if reading fails. A missing file raises StorageIOError (an OSError) with
        errno ENOENT."""
    def get_file(self, key: str, dst: Union[_Path, _Writable]) -> int:
        """Writes the value of `key` to path `dst` atomically (on failure nothing is left
        there), or to binary file object `dst` with `write(b)`, a verified piece at a time;
        returns the bytes written."""
    def stats(self) -> Stats:
        """Counters: keys, chunks, bytes_stored, bytes_read, and the dicts repair, scrub
        and gc of a member's background work."""
    def close(self) -> None:
        """Closes the node and unlocks its root. A cluster member first hands what it holds
        to the owners the cluster has without it; if that does not finish within
        `drain_timeout`, it closes anyway and warns (DrainWarning). Idempotent; later calls
        raise ClosedError."""
    def leave(self) -> None:
        """Leaves the cluster for good: hands everything held to the other members, tells
        them it has left, then closes; afterwards the root can be deleted. Raises
        UnavailableError (closing all the same) if the hand-off stalls for `drain_timeout`,
        InvalidArgumentError on a standalone node or a client."""
    @property
    def id(self) -> str:
        """The node id: 64 hex digits, kept in the root (stable across reopening)."""
    @property
    def root(self) -> Path:
        """The storage root as given."""
    @property
    def closed(self) -> bool:
        """Whether close() was called."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        _exc_type: Optional[Type[BaseException]],
        _exc: Optional[BaseException],
        _tb: Optional[TracebackType],
        /,
    ) -> bool: ...

class Error(Exception):
    """Base class of every error raised by dstore."""

class NotFoundError(Error, KeyError):
    """The key has no live value. Also a KeyError; args[0] is the key."""

class IntegrityError(Error):
    """Stored bytes failed their hash or MAC: corruption or tampering."""

class WrongKeyError(Error):
    """The value was encrypted under another data key than this node's."""

class ClosedError(Error):
    """The node was closed; open a new one."""

class LockedError(Error):
    """Another node (in this process or another) has the storage root open."""

class UnavailableError(Error):
    """Too few of the nodes that own the data answered; the call may succeed later."""

class InvalidArgumentError(Error, ValueError):
    """A bad key, data key, secret or chunk size. Also a ValueError."""

class StorageIOError(Error, OSError):
    """The operating system refused an operation. Also an OSError; errno is set when known."""

class DrainWarning(RuntimeWarning):
    """close() of a member did not hand everything it holds to the other owners in time;
    what was left stays in its root and reaches its owners when the node opens again."""
