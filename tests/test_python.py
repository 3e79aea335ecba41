"""Tests of the Python module dstore (dstore-py): every call and every error path.

Run against the installed package:

    pip install ./dstore-py        # or: cd dstore-py && maturin develop --release
    python -m pytest tests/test_python.py -q

No test depends on timing. The GIL tests use named pipes, so that a call can only finish if
another Python thread runs while it is in progress; a watchdog turns a hang into a failure.
"""

import array
import errno
import faulthandler
import io
import os
import pickle
import random
import re
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

import dstore
from harness import chunk_copies, flip_in_catalog

pytestmark = pytest.mark.filterwarnings("error")

REPO = Path(__file__).resolve().parent.parent
CHUNK = 4096
# The interesting sizes around the chunk boundaries, and several chunks with a partial tail.
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 5 * CHUNK + 17]
KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic, incompressible bytes."""
    return random.Random(f"{size}-{seed}").getrandbits(8 * size).to_bytes(size, "little")



@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def node(root: Path):
    n = dstore.Node(root, chunk_size=CHUNK)
    yield n
    n.close()


@contextmanager
def watchdog(seconds: int = 300):
    """Ends the process with every thread's traceback if the body hangs (a lost wake-up in
    the GIL tests would otherwise hang forever). Not a timing check: nothing here is slow."""
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


class Worker(threading.Thread):
    """A thread that keeps its target's result or exception for the main thread."""

    def __init__(self, target):
        super().__init__(daemon=True)
        self._target_fn = target
        self.result = None
        self.error = None

    def run(self):
        try:
            self.result = self._target_fn()
        except BaseException as e:  # handed to the main thread
            self.error = e

    def outcome(self):
        self.join()
        if self.error is not None:
            raise self.error
        return self.result


# ---------------------------------------------------------------------------------------------
# The package


def test_exception_tree():
    assert issubclass(dstore.Error, Exception)
    for name in [
        "NotFoundError",
        "IntegrityError",
        "WrongKeyError",
        "ClosedError",
        "LockedError",
        "InvalidArgumentError",
        "StorageIOError",
    ]:
        cls = getattr(dstore, name)
        assert issubclass(cls, dstore.Error), name
        assert cls.__module__ == "dstore", name
        assert cls.__name__ == name
        assert cls.__doc__, name
    assert issubclass(dstore.NotFoundError, KeyError)
    assert issubclass(dstore.InvalidArgumentError, ValueError)
    assert issubclass(dstore.StorageIOError, OSError)
    assert dstore.Error.__module__ == "dstore"


def test_exceptions_pickle(node):
    # So they cross process boundaries (multiprocessing, concurrent.futures).
    with pytest.raises(dstore.NotFoundError) as info:
        node.get("missing")
    for e in [info.value, dstore.IntegrityError("bad"), dstore.StorageIOError(2, "gone")]:
        copy = pickle.loads(pickle.dumps(e))
        assert type(copy) is type(e) and copy.args == e.args


def test_package_exports():
    for name in dstore.__all__:
        assert hasattr(dstore, name), name
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", dstore.__version__)
    assert dstore.MAX_KEY_LEN == 1024
    assert dstore.MIN_CHUNK_SIZE <= CHUNK <= dstore.DEFAULT_CHUNK_SIZE <= dstore.MAX_CHUNK_SIZE
    assert dstore.Node.__module__ == "dstore"


def test_typing_files_ship_with_the_package():
    package = Path(dstore.__file__).parent
    assert (package / "py.typed").is_file()
    assert (package / "_dstore.pyi").is_file()


def test_stubs_match_the_module(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "dstore",
         "--allowlist", str(REPO / "tests/stubtest-allowlist.txt")],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # mypy's cache goes there, not into the work tree
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("encrypt", [True, False], ids=["encrypted", "plaintext"])
@pytest.mark.parametrize("size", SIZES)
def test_round_trip(node, size, encrypt):
    data = payload(size)
    assert node.store("value", data, encrypt=encrypt) is None
    got = node.get("value")
    assert type(got) is bytes
    assert got == data
    assert node.size("value") == size
    assert node.has("value")


def test_encrypt_is_positional_too(node):
    node.store("k", b"abc", False)
    assert node.get("k") == b"abc"


def test_encrypted_values_leave_no_plaintext_on_disk(node, root):
    """Nowhere in the root (chunks packed in segments, manifests holding small values): a
    small value (inside its manifest) and a value of several chunks."""
    secret = b"a recognisable plaintext " * 20
    node.store("secret", secret, encrypt=True)
    node.store("secret-large", secret * 40, encrypt=True)
    node.store("public", secret.upper(), encrypt=False)
    node.store("public-large", secret.upper() * 40, encrypt=False)
    assert len(chunk_copies(root)) > 2
    stored = [p.read_bytes() for p in root.rglob("*") if p.is_file()]
    assert not any(secret in b for b in stored)
    # The plain ones are there, in their manifests in the catalog and in chunks.
    assert secret.upper() in (root / "catalog.redb").read_bytes()
    assert any(secret.upper() in c.read() for c in chunk_copies(root))


@pytest.mark.parametrize(
    "make",
    [bytes, bytearray, memoryview, lambda b: memoryview(bytearray(b)), lambda b: array.array("B", b)],
    ids=["bytes", "bytearray", "memoryview", "memoryview-of-bytearray", "array"],
)
def test_bytes_like_inputs(node, make):
    data = payload(3 * CHUNK + 5)
    node.store("k", make(data))
    assert node.get("k") == data


def test_multibyte_buffers_are_stored_as_their_bytes(node):
    numbers = array.array("i", [1, -2, 3])
    node.store("k", numbers)
    assert node.get("k") == numbers.tobytes()


def test_non_contiguous_memoryview_is_stored_as_its_bytes(node):
    data = payload(2 * CHUNK)
    view = memoryview(data)[::3]
    assert not view.contiguous
    node.store("k", view)
    assert node.get("k") == bytes(view) == data[::3]


def test_input_is_copied_before_the_call(node):
    data = bytearray(payload(CHUNK))
    node.store("k", data)
    data[:] = b"\0" * len(data)  # changing the caller's buffer later changes nothing stored
    assert node.get("k") == payload(CHUNK)


def test_overwrite_replaces_the_value(node):
    node.store("k", payload(3 * CHUNK, 1))
    node.store("k", b"short")
    assert node.get("k") == b"short"
    assert list(node.keys()) == ["k"]
    assert node.stats()["chunks"] == 0  # the old chunks are gone; "short" lives in the manifest


def test_unicode_keys(node):
    keys = ["é" * 512, "日本語/ファイル.txt", "../not/a/path", "x" * 1024, " ", "\U0001f600"]
    for i, key in enumerate(keys):
        node.store(key, payload(i + 1, i))
    for i, key in enumerate(keys):
        assert node.get(key) == payload(i + 1, i)
    assert list(node.keys()) == sorted(keys, key=lambda k: k.encode())


# ---------------------------------------------------------------------------------------------
# Argument errors


@pytest.mark.parametrize("bad_key", [1, None, b"bytes-key", 1.5, ["k"]])
def test_wrong_key_type_is_type_error(node, tmp_path, bad_key):
    node.store("k", b"v")
    calls = [
        lambda: node.store(bad_key, b"v"),
        lambda: node.get(bad_key),
        lambda: node.has(bad_key),
        lambda: node.delete(bad_key),
        lambda: node.size(bad_key),
        lambda: node.store_file(bad_key, tmp_path / "in"),
        lambda: node.get_file(bad_key, tmp_path / "out"),
    ]
    for call in calls:
        with pytest.raises(TypeError):
            call()


@pytest.mark.parametrize("bad_data", ["a str", 42, None, [1, 2, 3], object()])
def test_wrong_data_type_is_type_error(node, bad_data):
    with pytest.raises(TypeError, match="bytes-like"):
        node.store("k", bad_data)
    assert not node.has("k")


def test_other_wrong_types(node, root, tmp_path):
    with pytest.raises(TypeError):
        node.store("k", b"v", encrypt="yes")
    with pytest.raises(TypeError):
        node.store_file("k", 42)
    with pytest.raises(TypeError):
        node.get_file("k", None)
    with pytest.raises(TypeError):
        dstore.Node(42)
    with pytest.raises(TypeError):
        dstore.Node(tmp_path / "x", key="0" * 32)
    with pytest.raises(TypeError):
        dstore.Node(tmp_path / "x", chunk_size="4096")
    with pytest.raises(TypeError):
        dstore.Node(tmp_path / "x", secret="a str")
    with pytest.raises(TypeError):
        dstore.Node(tmp_path / "x", no_such_option=1)


@pytest.mark.parametrize(
    "bad_key",
    ["", "x" * 1025, "é" * 512 + "x", "a\0b", "\0"],
    ids=["empty", "1025-bytes", "1025-utf8-bytes", "nul", "only-nul"],
)
def test_invalid_key_is_value_error(node, tmp_path, bad_key):
    source = tmp_path / "in"
    source.write_bytes(b"v")
    calls = [
        lambda: node.store(bad_key, b"v"),
        lambda: node.get(bad_key),
        lambda: node.has(bad_key),
        lambda: node.delete(bad_key),
        lambda: node.size(bad_key),
        lambda: node.store_file(bad_key, source),
        lambda: node.get_file(bad_key, tmp_path / "out"),
    ]
    for call in calls:
        with pytest.raises(dstore.InvalidArgumentError):
            call()
        with pytest.raises(ValueError):
            call()
    assert list(node.keys()) == []
    assert not (tmp_path / "out").exists()


def test_key_that_is_not_utf8_is_value_error(node):
    with pytest.raises(ValueError):  # UnicodeEncodeError, from the conversion to UTF-8
        node.store("lone \udc80 surrogate", b"v")


@pytest.mark.parametrize("length", [0, 1, 16, 31, 33, 64])
def test_data_key_of_wrong_length_is_value_error(tmp_path, length):
    with pytest.raises(dstore.InvalidArgumentError, match="32 bytes"):
        dstore.Node(tmp_path / "root", key=b"k" * length)
    with pytest.raises(ValueError):
        dstore.Node(tmp_path / "root", key=bytearray(length))


def test_data_key_as_any_bytes_like(tmp_path):
    for i, key in enumerate([KEY_A, bytearray(KEY_A), memoryview(KEY_A)]):
        with dstore.Node(tmp_path / "root", key=key) as n:
            n.store(f"k{i}", b"v")
            for j in range(i + 1):
                assert n.get(f"k{j}") == b"v"  # the same key every time


@pytest.mark.parametrize(
    "chunk_size", [-1, 0, 1, 63, 8 * 1024 * 1024 + 1, 2**40], ids=lambda c: f"chunk_size={c}"
)
def test_bad_chunk_size_is_value_error(tmp_path, chunk_size):
    with pytest.raises(dstore.InvalidArgumentError):
        dstore.Node(tmp_path / "root", chunk_size=chunk_size)


def test_chunk_size_bounds_are_accepted(tmp_path):
    for size in [dstore.MIN_CHUNK_SIZE, dstore.MAX_CHUNK_SIZE]:
        with dstore.Node(tmp_path / f"root{size}", chunk_size=size) as n:
            data = payload(3 * dstore.MIN_CHUNK_SIZE + 1)
            n.store("k", data)
            assert n.get("k") == data


def test_empty_secret_is_value_error(tmp_path):
    with pytest.raises(dstore.InvalidArgumentError):
        dstore.Node(tmp_path / "root", secret=b"")


def test_secret(tmp_path):
    root = tmp_path / "root"
    with dstore.Node(root, secret=b"cluster secret", key=KEY_A) as n:
        n.store("k", b"v")
    with dstore.Node(root, secret=bytearray(b"cluster secret"), key=KEY_A) as n:
        assert n.get("k") == b"v"


# ---------------------------------------------------------------------------------------------
# Quorums, timeouts and background work

DURATIONS = [
    "suspect_after",
    "dead_after",
    "call_timeout",
    "repair_interval",
    "scrub_interval",
    "gc_grace",
    "tombstone_grace",
]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"write_quorum": 0},
        {"write_quorum": 4},  # more than the 3 replicas
        {"read_quorum": 4},
        {"write_quorum": -1},
        {"read_quorum": -1},
        {"replicas": 1, "read_quorum": 2},
        {"replicas": 2, "write_quorum": 3},
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()),
)
def test_a_quorum_outside_1_to_replicas_is_value_error(tmp_path, kwargs):
    with pytest.raises(dstore.InvalidArgumentError, match="quorum"):
        dstore.Node(tmp_path / "root", **kwargs)
    dstore.Node(tmp_path / "root").close()  # refused before the root was touched or locked


def test_quorums_within_replicas_are_accepted(tmp_path):
    for i, kwargs in enumerate(
        [
            {"write_quorum": 3, "read_quorum": 1},
            {"write_quorum": 1, "read_quorum": 3},
            {"replicas": 1, "write_quorum": 1, "read_quorum": 1},
            {"replicas": 5, "write_quorum": 5},
        ]
    ):
        with dstore.Node(tmp_path / f"root{i}", **kwargs) as n:
            n.store("k", b"v")
            assert n.get("k") == b"v"


@pytest.mark.parametrize("name", DURATIONS)
@pytest.mark.parametrize("value", [-1, -0.001, float("nan"), float("inf"), 1e300])
def test_a_bad_duration_is_value_error(tmp_path, name, value):
    with pytest.raises(dstore.InvalidArgumentError, match=name):
        dstore.Node(tmp_path / "root", **{name: value})
    with pytest.raises(ValueError):
        dstore.Node(tmp_path / "root", **{name: value})


@pytest.mark.parametrize("name", ["suspect_after", "dead_after", "call_timeout"])
def test_a_zero_timeout_is_value_error(tmp_path, name):
    with pytest.raises(dstore.InvalidArgumentError, match=f"{name} must be longer than 0"):
        dstore.Node(tmp_path / "root", **{name: 0})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"suspect_after": 5, "dead_after": 1}, r"dead_after \(1 s\) must not be shorter than suspect_after \(5 s\)"),
        ({"suspect_after": 60}, r"dead_after \(10 s\)"),  # the default dead_after
        ({"dead_after": 0.5}, r"suspect_after \(3 s\)"),  # the default suspect_after
    ],
)
def test_dead_after_shorter_than_suspect_after_is_value_error(tmp_path, kwargs, message):
    with pytest.raises(dstore.InvalidArgumentError, match=message):
        dstore.Node(tmp_path / "root", **kwargs)


def test_a_bad_scrub_rate_is_value_error(tmp_path):
    with pytest.raises(dstore.InvalidArgumentError, match="scrub_rate"):
        dstore.Node(tmp_path / "root", scrub_rate=-1)


@pytest.mark.parametrize(
    "kwargs",
    [{"suspect_after": "1"}, {"gc_grace": b"1"}, {"scrub_rate": 1.5}, {"write_quorum": "2"}],
    ids=lambda kw: next(iter(kw)),
)
def test_tuning_of_the_wrong_type_is_type_error(tmp_path, kwargs):
    with pytest.raises(TypeError):
        dstore.Node(tmp_path / "root", **kwargs)


def test_tuning_arguments_are_keyword_only(tmp_path):
    with pytest.raises(TypeError):
        dstore.Node(tmp_path / "root", None, None, None, 2)  # type: ignore[misc]


def test_every_tuning_argument_is_accepted(tmp_path):
    kwargs = dict(
        write_quorum=2,
        read_quorum=2,
        suspect_after=0.5,
        dead_after=2,
        call_timeout=1.5,
        repair_interval=0,
        scrub_interval=0.25,
        scrub_rate=0,
        gc_grace=0,
        tombstone_grace=86400 * 365,
    )
    with dstore.Node(tmp_path / "root", **kwargs) as n:
        n.store("k", b"v")
        assert n.get("k") == b"v"
        assert n.stats()["repair"] == IDLE["repair"]  # standalone: settings are for members
    # None is the default, for each.
    with dstore.Node(tmp_path / "root", **{k: None for k in kwargs}) as n:
        assert n.get("k") == b"v"


# ---------------------------------------------------------------------------------------------
# Keys: has, keys, delete, size, NotFoundError


def test_missing_key_is_not_found_and_key_error(node, tmp_path):
    for call in [
        lambda: node.get("nope"),
        lambda: node.delete("nope"),
        lambda: node.size("nope"),
        lambda: node.get_file("nope", tmp_path / "out"),
    ]:
        with pytest.raises(dstore.NotFoundError) as info:
            call()
        assert info.value.args == ("nope",)  # like dict's KeyError: args[0] is the key
        with pytest.raises(KeyError):
            call()
        with pytest.raises(dstore.Error):
            call()


def test_not_found_can_be_caught_as_key_error(node):
    try:
        node.get("missing.txt")
    except KeyError as e:
        assert isinstance(e, dstore.NotFoundError)
        assert e.args[0] == "missing.txt"
    else:
        pytest.fail("no exception")


def test_has_keys_delete(node):
    assert list(node.keys()) == []
    assert not node.has("a")
    for key in ["b", "a", "c/d", "B"]:
        node.store(key, key.encode())
    assert list(node.keys()) == ["B", "a", "b", "c/d"]  # byte order
    assert all(node.has(k) for k in ["a", "b", "B", "c/d"])
    assert node.delete("a") is None
    assert not node.has("a")
    assert list(node.keys()) == ["B", "b", "c/d"]
    with pytest.raises(dstore.NotFoundError):
        node.get("a")
    with pytest.raises(dstore.NotFoundError):
        node.delete("a")  # deleting twice
    node.store("a", b"again")  # a deleted key can be stored again
    assert node.get("a") == b"again"
    assert list(node.keys()) == ["B", "a", "b", "c/d"]
    for key in node.keys():
        node.delete(key)
    assert list(node.keys()) == []


def test_list_pages_and_keys_by_prefix(node):
    keys = [f"p/{i:05}" for i in range(2500)]
    for k in keys + ["a", "q"]:
        node.store(k, b"", encrypt=False)
    node.delete("p/00007")
    live = [k for k in keys if k != "p/00007"]
    assert node.list("p/", limit=3) == live[:3]
    assert node.list("p/", start_after="p/00005", limit=3) == ["p/00006", "p/00008", "p/00009"]
    assert node.list(start_after="p/02499") == ["q"]
    assert node.list("zz") == []
    # Pages joined by their last key give every key once, in order.
    got, after = [], ""
    while page := node.list("p/", start_after=after, limit=1000):
        got += page
        after = page[-1]
    assert got == live
    it = node.keys("p/")
    assert isinstance(it, dstore.KeyIterator) and next(it) == "p/00000"
    assert list(node.keys("p/")) == live
    assert list(node.keys()) == ["a"] + live + ["q"]
    for bad in [0, -1, dstore.MAX_LIST + 1]:
        with pytest.raises(dstore.InvalidArgumentError):
            node.list(limit=bad)


def test_size(node):
    for i, size in enumerate(SIZES):
        node.store(f"k{i}", payload(size))
    for i, size in enumerate(SIZES):
        assert node.size(f"k{i}") == size


# ---------------------------------------------------------------------------------------------
# Reopening, locking, keys, integrity


def test_reopen_keeps_data_and_id(root):
    with dstore.Node(root, chunk_size=CHUNK) as n:
        node_id = n.id
        for i, size in enumerate(SIZES):
            n.store(f"k{i}", payload(size, i), encrypt=bool(i % 2))
        n.delete("k0")
    assert re.fullmatch(r"[0-9a-f]{64}", node_id)
    with dstore.Node(root) as n:  # another chunk size: old values keep theirs
        assert n.id == node_id
        assert list(n.keys()) == [f"k{i}" for i in range(1, len(SIZES))]
        for i, size in enumerate(SIZES[1:], start=1):
            assert n.get(f"k{i}") == payload(size, i)


def test_distinct_roots_have_distinct_ids(tmp_path):
    with dstore.Node(tmp_path / "a") as a, dstore.Node(tmp_path / "b") as b:
        assert a.id != b.id


def test_root_accepts_str_and_pathlike(tmp_path):
    with dstore.Node(str(tmp_path / "s")) as n:
        assert n.root == tmp_path / "s"
    with dstore.Node(tmp_path / "p") as n:
        assert n.root == tmp_path / "p"
    assert (tmp_path / "s" / "node.key").is_file()


def test_second_node_on_same_root_is_locked_until_close(root):
    first = dstore.Node(root)
    with pytest.raises(dstore.LockedError) as info:
        dstore.Node(root)
    assert isinstance(info.value, dstore.Error)
    assert str(root) in str(info.value)
    first.close()
    second = dstore.Node(root)
    second.close()
    with dstore.Node(root):
        with pytest.raises(dstore.LockedError):
            dstore.Node(root)
    dstore.Node(root).close()  # the with block closed it


def test_root_is_locked_across_processes(root):
    with dstore.Node(root):
        script = "import sys, dstore\ntry:\n    dstore.Node(sys.argv[1])\nexcept dstore.LockedError:\n    sys.exit(7)\n"
        result = subprocess.run([sys.executable, "-c", script, str(root)])
        assert result.returncode == 7


def test_value_from_another_data_key_is_wrong_key(root):
    with dstore.Node(root, key=KEY_A, chunk_size=CHUNK) as n:
        n.store("secret", payload(2 * CHUNK), encrypt=True)
        n.store("public", b"plaintext", encrypt=False)
    with dstore.Node(root, key=KEY_B) as n:
        with pytest.raises(dstore.WrongKeyError):
            n.get("secret")
        with pytest.raises(dstore.Error):
            n.get("secret")
        # Plain values are sealed by their writer's data key too: a holder of another key
        # cannot tell one from a forgery by a holder of only the cluster secret.
        with pytest.raises(dstore.WrongKeyError):
            n.get("public")
        with pytest.raises(dstore.WrongKeyError):
            n.has("secret")
    with dstore.Node(root, key=KEY_B, accept_unsealed=True) as n:
        assert n.get("public") == b"plaintext"
        with pytest.raises(dstore.WrongKeyError):
            n.get("secret")
    with dstore.Node(root) as n:  # the generated key kept in the root is another key again
        with pytest.raises(dstore.WrongKeyError):
            n.get("secret")
    with dstore.Node(root, key=KEY_A) as n:
        assert n.get("secret") == payload(2 * CHUNK)


def test_flipped_byte_in_a_chunk_is_integrity_error(root):
    with dstore.Node(root, chunk_size=CHUNK) as n:
        n.store("plain", b"p" * CHUNK, encrypt=False)  # one chunk each
        n.store("sealed", b"s" * CHUNK, encrypt=True)
        copies = chunk_copies(root)
        assert len(copies) == 2
        for c in copies:
            c.flip(c.length // 2)
        for key in ["plain", "sealed"]:
            with pytest.raises(dstore.IntegrityError) as info:
                n.get(key)
            assert isinstance(info.value, dstore.Error)


def test_flipped_byte_in_a_small_value_is_integrity_error(root):
    """A value small enough to live inside its manifest is checked with it (the cluster MAC,
    and the seal of the data key): a flipped byte of the value inside the manifest, or of the
    manifest's body, is refused, and the key reads as corrupt until it is written again."""
    with dstore.Node(root, chunk_size=CHUNK) as n:
        n.store("plain", b"p" * 100, encrypt=False)
        n.store("sealed", b"s" * 100, encrypt=True)
        assert chunk_copies(root) == []
    catalog = (root / "catalog.redb").read_bytes()
    value_at = catalog.find(b"p" * 100) - catalog.find(bytes([2, 5]) + b"plain")
    assert flip_in_catalog(root, "plain", value_at + 50) >= 1  # in the plain value's bytes
    assert flip_in_catalog(root, "sealed", 40) >= 1  # in the body
    with dstore.Node(root, chunk_size=CHUNK) as n:
        for key in ["plain", "sealed"]:
            with pytest.raises(dstore.IntegrityError):
                n.get(key)
            with pytest.raises(dstore.IntegrityError):
                n.get(key)
        n.store("sealed", b"written again")
        assert n.get("sealed") == b"written again"


def test_corrupt_chunk_leaves_no_file_from_get_file(root, tmp_path):
    out = tmp_path / "out"
    with dstore.Node(root, chunk_size=CHUNK) as n:
        n.store("k", payload(3 * CHUNK))
        chunk_copies(root)[0].flip(100)
        with pytest.raises(dstore.IntegrityError):
            n.get_file("k", out)
    assert list(tmp_path.glob("*out*")) == []
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# Files


@pytest.fixture
def big_node(tmp_path):
    """A node with larger chunks, for a few MiB of file at a reasonable number of chunks."""
    n = dstore.Node(tmp_path / "big-root", chunk_size=256 * 1024)
    yield n
    n.close()


@pytest.mark.parametrize("as_str", [False, True], ids=["pathlib", "str"])
def test_store_file_get_file_round_trip(big_node, tmp_path, as_str):
    size = 3 * 1024 * 1024 + 12345
    data = payload(size, 7)
    source, dest = tmp_path / "in.bin", tmp_path / "out.bin"
    source.write_bytes(data)
    path = str if as_str else (lambda p: p)
    assert big_node.store_file("big.iso", path(source)) == size
    assert big_node.size("big.iso") == size
    assert big_node.stats()["chunks"] == 13
    assert big_node.get_file("big.iso", path(dest)) == size
    assert dest.read_bytes() == data
    assert big_node.get("big.iso") == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big-root", "in.bin", "out.bin"]


def test_store_file_plaintext_and_empty(node, tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert node.store_file("empty", empty, encrypt=False) == 0
    assert node.get("empty") == b""
    out = tmp_path / "out"
    assert node.get_file("empty", out) == 0
    assert out.read_bytes() == b""


def test_get_file_replaces_an_existing_file(node, tmp_path):
    dest = tmp_path / "dest"
    dest.write_bytes(b"old contents, longer than the new ones")
    node.store("k", b"new")
    node.get_file("k", dest)
    assert dest.read_bytes() == b"new"


def test_get_file_of_missing_key_leaves_nothing(node, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(dstore.NotFoundError):
        node.get_file("missing", out_dir / "file")
    assert list(out_dir.iterdir()) == []


def test_get_file_into_missing_directory_is_os_error(node, tmp_path):
    node.store("k", b"v")
    with pytest.raises(dstore.StorageIOError) as info:
        node.get_file("k", tmp_path / "no" / "such" / "dir" / "file")
    assert isinstance(info.value, OSError)
    assert info.value.errno == errno.ENOENT
    assert not (tmp_path / "no").exists()


def test_store_file_of_missing_file_is_os_error(node, tmp_path):
    missing = tmp_path / "missing.bin"
    with pytest.raises(OSError) as info:
        node.store_file("k", missing)
    e = info.value
    assert isinstance(e, dstore.StorageIOError) and isinstance(e, dstore.Error)
    # An OSError with errno set (not a FileNotFoundError instance: see the README).
    assert e.errno == errno.ENOENT
    assert str(missing) in e.strerror
    assert str(e).startswith(f"[Errno {errno.ENOENT}]")
    assert not node.has("k")


def test_store_file_of_a_directory_is_os_error(node, tmp_path):
    with pytest.raises(dstore.StorageIOError):
        node.store_file("k", tmp_path)
    assert not node.has("k")


# ---------------------------------------------------------------------------------------------
# Closing


def test_closed_node_raises_closed_error(root, tmp_path):
    n = dstore.Node(root)
    n.store("k", b"v")
    node_id = n.id
    assert not n.closed
    assert n.close() is None
    assert n.closed
    n.close()  # idempotent
    source = tmp_path / "in"
    source.write_bytes(b"v")
    calls = [
        lambda: n.store("k", b"v"),
        lambda: n.get("k"),
        lambda: n.has("k"),
        lambda: n.delete("k"),
        lambda: list(n.keys()),
        lambda: n.size("k"),
        lambda: n.store_file("k", source),
        lambda: n.get_file("k", tmp_path / "out"),
        lambda: n.stats(),
    ]
    for call in calls:
        with pytest.raises(dstore.ClosedError):
            call()
        with pytest.raises(dstore.Error):
            call()
    assert not (tmp_path / "out").exists()
    assert n.id == node_id  # still known after close
    assert "closed" in repr(n)


def test_context_manager(root):
    with dstore.Node(root) as n:
        assert isinstance(n, dstore.Node)
        n.store("k", b"v")
    assert n.closed
    with pytest.raises(dstore.ClosedError):
        n.get("k")
    with pytest.raises(RuntimeError, match="boom"):  # the exception goes through, and closes
        with dstore.Node(root) as n:
            raise RuntimeError("boom")
    assert n.closed
    with dstore.Node(root) as n:
        assert n.get("k") == b"v"
        n.close()  # closing inside the block is fine too


def test_dropping_a_node_unlocks_the_root(root):
    n = dstore.Node(root)
    del n
    dstore.Node(root).close()


def test_repr_shows_root_and_id_not_key(root):
    with dstore.Node(root, key=KEY_A, secret=b"s3cret-secret") as n:
        text = repr(n)
        assert repr(str(root)) in text
        assert n.id in text
        for secret in [KEY_A.hex(), repr(KEY_A), "s3cret"]:
            assert secret not in text
        assert text == str(n)
        for name in ["data.key", "cluster.secret"]:
            assert not (root / name).exists() or (root / name).read_text().strip() not in text


# ---------------------------------------------------------------------------------------------
# Stats and deduplication


# What a node that does no background work (standalone, as here) reports beside its counts.
IDLE = {
    "repair": {
        "passes": 0,
        "running": False,
        "last_pass_ms": 0,
        "checked": 0,
        "chunks_pushed": 0,
        "manifests_pushed": 0,
        "bytes_pushed": 0,
        "handed_off": 0,
        "read_repairs": 0,
        "shards_rebuilt": 0,
        "rebuild_bytes_read": 0,
    },
    "scrub": {"passes": 0, "bytes": 0, "objects": 0, "bad": 0, "restored": 0},
    "gc": {"chunks_collected": 0, "tombstones_collected": 0},
    "drain": {"running": False, "objects": 0, "checked": 0, "pushed": 0, "bytes": 0, "unconfirmed": 0},
}


def test_stats_counts(node, tmp_path):
    counts = {"keys": 0, "chunks": 0, "bytes_stored": 0, "bytes_read": 0}
    assert node.stats() == {**counts, **IDLE}
    node.store("a", payload(3 * CHUNK + 1, 1))
    node.store("b", payload(10, 2), encrypt=False)  # inside its manifest: no chunk
    stats = node.stats()
    assert stats == {"keys": 2, "chunks": 4, "bytes_stored": 3 * CHUNK + 11, "bytes_read": 0, **IDLE}
    assert all(type(stats[k]) is int for k in counts)
    node.get("a")
    node.get_file("b", tmp_path / "b")
    source = tmp_path / "src"
    source.write_bytes(payload(CHUNK, 3))
    node.store_file("c", source)
    assert node.stats() == {
        "keys": 3,
        "chunks": 5,
        "bytes_stored": 4 * CHUNK + 11,
        "bytes_read": 3 * CHUNK + 11,
        **IDLE,
    }
    node.delete("a")
    assert node.stats()["keys"] == 2
    assert node.stats()["chunks"] == 1


def test_stats_nest_repair_scrub_gc_and_drain(node):
    stats = node.stats()
    assert list(stats) == ["keys", "chunks", "bytes_stored", "bytes_read", "repair", "scrub", "gc", "drain"]
    for group, fields in IDLE.items():
        assert type(stats[group]) is dict
        assert list(stats[group]) == list(fields), group
        for name, value in stats[group].items():
            assert type(value) is type(fields[name]), f"{group}.{name}"
    assert type(stats["repair"]["running"]) is bool
    stats["repair"]["passes"] = 99  # a fresh dict each call
    assert node.stats()["repair"]["passes"] == 0


@pytest.mark.parametrize("encrypt", [True, False], ids=["encrypted", "plaintext"])
def test_dedup(node, root, encrypt):
    data = payload(3 * CHUNK)
    node.store("one", data, encrypt=encrypt)
    node.store("two", data, encrypt=encrypt)
    assert node.stats()["chunks"] == 3  # shared, not 6
    assert len(chunk_copies(root)) == 3
    node.delete("one")
    assert node.get("two") == data
    assert node.stats()["chunks"] == 3
    node.delete("two")
    assert node.stats()["chunks"] == 0


def test_identical_chunks_inside_one_value_are_stored_once(node):
    node.store("k", b"\x5a" * (4 * CHUNK))
    assert node.stats()["chunks"] == 1
    assert node.get("k") == b"\x5a" * (4 * CHUNK)


# ---------------------------------------------------------------------------------------------
# Threads and the GIL


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_gil_is_released_during_store_file(node, tmp_path):
    # store_file reads a named pipe that only a Python thread writes: the call can finish only
    # if that thread runs while the main thread is inside it.
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    data = payload(5 * CHUNK + 3)
    progress = []

    def feed():
        with open(fifo, "wb") as f:  # opens once store_file has opened the other end
            for i in range(0, len(data), 1000):
                f.write(data[i : i + 1000])
                f.flush()
                progress.append(i)

    writer = Worker(feed)
    with watchdog():
        writer.start()
        assert node.store_file("piped", fifo) == len(data)
        writer.outcome()
    assert len(progress) == len(range(0, len(data), 1000))  # the counter advanced in the call
    assert node.get("piped") == data


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_gil_is_released_during_get(tmp_path):
    # The value's only chunk file is swapped for a named pipe that a Python thread feeds with
    # the chunk's real bytes, so get can only succeed if that thread runs during the call.
    # One chunk of 300 kB: past the size packed into segments, so it is a file of its own.
    root = tmp_path / "root"
    data = payload(300_000)
    with dstore.Node(root, chunk_size=1 << 20) as node:
        node.store("k", data)
        [chunk] = chunk_copies(root)
        assert chunk.path.parent.parent.parent.name == "chunks"
        stored = chunk.read()
        chunk.path.unlink()
        os.mkfifo(chunk.path)
        fed = []

        def feed():
            with open(chunk.path, "wb") as f:
                f.write(stored)
            fed.append(True)

        writer = Worker(feed)
        try:
            with watchdog():
                writer.start()
                assert node.get("k") == data
                writer.outcome()
        finally:
            chunk.path.unlink()
            chunk.path.write_bytes(stored)
        assert fed == [True]
        assert node.get("k") == data


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_other_threads_use_the_node_while_a_call_waits(node, tmp_path):
    # One thread is parked inside store_file (its input pipe has no writer yet); meanwhile the
    # main thread runs every other call on the same node.
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    parked = Worker(lambda: node.store_file("parked", fifo))
    with watchdog():
        parked.start()
        node.store("other", b"v")
        assert node.get("other") == b"v"
        assert node.has("other") and not node.has("parked")
        assert list(node.keys()) == ["other"]
        assert node.stats()["keys"] == 1
        node.delete("other")
        with open(fifo, "wb") as f:  # now let it finish
            f.write(b"released")
        assert parked.outcome() == len(b"released")
    assert node.get("parked") == b"released"


def test_many_threads_share_one_node(node):
    threads, per_thread = 8, 12
    barrier = threading.Barrier(threads)

    def work(t):
        barrier.wait()
        for i in range(per_thread):
            key = f"t{t}/k{i}"
            data = payload((t * 977 + i * 1531) % (3 * CHUNK), t * 100 + i)
            node.store(key, data, encrypt=bool((t + i) % 2))
            assert node.get(key) == data
            assert node.has(key)
        for i in range(0, per_thread, 3):
            node.delete(f"t{t}/k{i}")
        return t

    workers = [Worker(lambda t=t: work(t)) for t in range(threads)]
    with watchdog():
        for w in workers:
            w.start()
        assert sorted(w.outcome() for w in workers) == list(range(threads))
    expected = sorted(
        f"t{t}/k{i}" for t in range(threads) for i in range(per_thread) if i % 3 != 0
    )
    assert list(node.keys()) == sorted(expected, key=str.encode)
    for key in expected:
        t, i = (int(x[1:]) for x in key.split("/"))
        assert node.get(key) == payload((t * 977 + i * 1531) % (3 * CHUNK), t * 100 + i)


def test_threads_racing_on_one_key_leave_one_whole_value(node):
    values = [payload(2 * CHUNK + 1 + t, t) for t in range(6)]  # three chunks each
    barrier = threading.Barrier(len(values))

    def write(v):
        barrier.wait()
        node.store("contested", v)

    workers = [Worker(lambda v=v: write(v)) for v in values]
    with watchdog():
        for w in workers:
            w.start()
        for w in workers:
            w.outcome()
    assert node.get("contested") in values
    assert node.stats()["chunks"] == 3  # the losers' chunks are gone


def test_close_while_other_threads_call(root):
    # Closing from one thread while others work: each call either succeeds or raises
    # ClosedError, nothing else; every thread sees ClosedError once close has returned; and
    # the root is free again afterwards.
    n = dstore.Node(root, chunk_size=CHUNK)
    barrier = threading.Barrier(5)

    def work(t):
        barrier.wait()
        stored = 0
        while True:  # ends at the first ClosedError, which must come
            try:
                n.store(f"{t}-{stored}", payload(CHUNK + stored))
            except dstore.ClosedError:
                return stored
            stored += 1

    workers = [Worker(lambda t=t: work(t)) for t in range(4)]
    with watchdog():
        for w in workers:
            w.start()
        barrier.wait()
        n.close()
        stored = [w.outcome() for w in workers]
    with dstore.Node(root, chunk_size=CHUNK) as reopened:
        # Every store that returned is durable (one more may have landed as close raced it).
        for t, count in enumerate(stored):
            for i in range(count):
                assert reopened.get(f"{t}-{i}") == payload(CHUNK + i)


# ---------------------------------------------------------------------------------------------
# Processes


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_is_refused_not_hung(tmp_path):
    # In a subprocess, so this test process is never forked itself.
    script = r"""
import os, sys, warnings
warnings.simplefilter("ignore")  # Python 3.12+ warns about fork in a threaded process
import dstore
node = dstore.Node(sys.argv[1])
node.store("k", b"v")
pid = os.fork()
if pid == 0:
    code = 3
    try:
        node.get("k")
        code = 1
    except dstore.Error as e:
        code = 0 if "fork" in str(e) else 2
    try:
        dstore.Node(sys.argv[1] + "-child")
        code = max(code, 4)
    except dstore.Error as e:
        pass
    os._exit(code)
_, status = os.waitpid(pid, 0)
assert node.get("k") == b"v"  # the parent is unaffected
sys.exit(os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8)
"""
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "root")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("with_root", [False, True], ids=["temp-root", "given-root"])
def test_quickstart_runs(tmp_path, with_root):
    args = [sys.executable, str(REPO / "examples" / "python" / "quickstart.py")]
    if with_root:
        args.append(str(tmp_path / "root"))
    result = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "done" in result.stdout
    if with_root:
        assert (tmp_path / "root" / "node.key").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["root"] if with_root else [])


# ---------------------------------------------------------------------------------------------
# Ranges and file objects


def test_get_range_reads_any_span_cut_at_the_end(node):
    data = payload(5 * CHUNK + 17)
    node.store("r", data)
    n = len(data)
    for offset, length in [(0, 0), (0, 1), (CHUNK - 1, 2), (CHUNK + 7, 3 * CHUNK), (n - 1, 10),
                           (n, 5), (n + 100, 5), (0, 2**64 - 1)]:
        assert node.get_range("r", offset, length) == data[offset:offset + length]
    with pytest.raises(dstore.NotFoundError):
        node.get_range("missing", 0, 1)
    with pytest.raises(OverflowError):
        node.get_range("r", -1, 1)


def test_open_gives_a_seekable_binary_file(node):
    data = payload(5 * CHUNK + 17, seed=1)
    node.store("f", data)
    with node.open("f") as f:
        assert isinstance(f, io.BufferedReader) and isinstance(f.raw, io.RawIOBase)
        assert f.readable() and f.seekable() and not f.writable()
        assert f.raw.size == len(data) and f.name == "f"
        assert f.read(10) == data[:10]
        assert f.seek(CHUNK - 3) == CHUNK - 3 and f.tell() == CHUNK - 3
        assert f.read(6) == data[CHUNK - 3:CHUNK + 3]
        assert f.seek(-5, io.SEEK_END) == len(data) - 5
        assert f.read() == data[-5:]
        assert f.read() == b""
        f.seek(0)
        assert f.read() == data
        f.seek(2 * CHUNK)
        buf = bytearray(100)
        assert f.readinto(buf) == 100 and bytes(buf) == data[2 * CHUNK:2 * CHUNK + 100]
        with pytest.raises((ValueError, OSError)):
            f.seek(-1)
    assert f.closed
    with pytest.raises(ValueError):
        f.read()
    with pytest.raises(dstore.NotFoundError):
        node.open("missing")
    # A small (inline) value, and an empty one.
    node.store("tiny", b"hello, world")
    with node.open("tiny") as f:
        f.seek(7)
        assert f.read() == b"world"
    node.store("empty", b"")
    with node.open("empty") as f:
        assert f.read() == b""


def test_files_stream_through_file_objects(node, tmp_path):
    data = payload(3 * 1024 * 1024 + 5, seed=2)  # more than one piece of 1 MiB
    assert node.store_file("s", io.BytesIO(data)) == len(data)
    assert node.get("s") == data
    out = io.BytesIO()
    assert node.get_file("s", out) == len(data)
    assert out.getvalue() == data
    # Real files opened in binary mode, and a raw (unbuffered) one.
    src = tmp_path / "in.bin"
    src.write_bytes(data[:100_000])
    with open(src, "rb") as f:
        node.store_file("t", f, encrypt=False)
    with open(tmp_path / "out.bin", "wb", buffering=0) as f:
        assert node.get_file("t", f) == 100_000
    assert (tmp_path / "out.bin").read_bytes() == data[:100_000]
    # Paths still work, as str, bytes and PathLike.
    node.store_file("u", str(src))
    node.get_file("u", os.fsencode(tmp_path / "u.bin"))
    assert (tmp_path / "u.bin").read_bytes() == data[:100_000]

    # A source that fails part way stores nothing, and the old value stays.
    class Failing(io.RawIOBase):
        def __init__(self):
            self.calls = 0

        def readable(self):
            return True

        def read(self, n=-1):
            self.calls += 1
            if self.calls > 2:
                raise OSError("disk went away")
            return data[:n]

    with pytest.raises(OSError, match="disk went away"):
        node.store_file("s", Failing())
    assert node.get("s") == data
    # Text objects and other types are refused with TypeError.
    with pytest.raises(TypeError):
        node.store_file("v", io.StringIO("text"))
    with pytest.raises(TypeError):
        node.store_file("v", 42)
    with pytest.raises(TypeError):
        node.get_file("s", 42)
    assert not node.has("v")


def test_asyncio_calls_do_not_block_the_loop(root):
    import asyncio

    import dstore.aio

    async def main():
        async with await dstore.aio.Node.open(root, chunk_size=CHUNK) as node:
            data = payload(3 * CHUNK, seed=3)
            # Many stores at once, while a ticker shows the loop keeps running.
            ticks = 0

            async def ticker():
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.001)

            tick = asyncio.create_task(ticker())
            await asyncio.gather(*(node.store(f"a/{i}", data) for i in range(20)))
            tick.cancel()
            assert ticks > 0
            assert await node.get("a/7") == data
            assert await node.get_range("a/7", CHUNK - 1, 2) == data[CHUNK - 1:CHUNK + 1]
            assert (await node.info("a/7"))["size"] == len(data)
            assert [k async for k in node.keys("a/")] == sorted(f"a/{i}" for i in range(20))
            assert await node.has("a/0") and not await node.has("b")
            await node.delete("a/0")
            with pytest.raises(dstore.NotFoundError):
                await node.get("a/0")
            assert (await node.stats())["keys"] == 19
        assert node.sync.closed

    asyncio.run(main())


def test_core_logs_go_to_python_logging(root, caplog):
    with dstore.Node(root, chunk_size=CHUNK) as n:
        n.store("k", payload(3 * CHUNK), encrypt=False)
        chunk_copies(root)[1].flip(100)
        with caplog.at_level("WARNING", logger="dstore_core"):
            with pytest.raises(dstore.IntegrityError):
                n.get("k")
    records = [r for r in caplog.records if r.name.startswith("dstore_core.")]
    assert any("corrupt chunk" in r.getMessage() and r.levelname == "WARNING" for r in records), [
        (r.name, r.getMessage()) for r in caplog.records
    ]
