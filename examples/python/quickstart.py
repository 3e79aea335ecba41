"""A first tour of dstore from Python.

    pip install ./dstore-py
    python examples/python/quickstart.py [ROOT]

ROOT is the storage root to use; by default a temporary directory, removed at the end.
"""

import os
import sys
import tempfile

import dstore


def tour(root: str) -> None:
    # A node owns one storage root. `with` closes it (and unlocks the root) at the end.
    with dstore.Node(root) as node:
        print(f"opened {node!r}")

        # Values are bytes under string keys; they are encrypted unless encrypt=False.
        node.store("greeting.txt", b"hello, dstore")
        node.store("public.txt", b"stored in plaintext, still checked by hash", encrypt=False)
        print(f"stored 2 values; keys: {list(node.keys())}")
        print(f"get('greeting.txt') -> {node.get('greeting.txt')!r}")

        # Files are streamed in chunks, so their size does not matter.
        with tempfile.TemporaryDirectory() as scratch:
            source = os.path.join(scratch, "input.bin")
            with open(source, "wb") as f:
                f.write(os.urandom(3 * 1024 * 1024 + 123))
            stored = node.store_file("big.bin", source)
            copy = os.path.join(scratch, "copy.bin")
            node.get_file("big.bin", copy)
            with open(source, "rb") as a, open(copy, "rb") as b:
                same = a.read() == b.read()
        print(f"store_file/get_file of {stored} bytes: copy identical: {same}")

        # Errors are dstore.Error subclasses; a missing key is also a KeyError.
        node.delete("public.txt")
        try:
            node.get("public.txt")
        except KeyError as e:
            print(f"after delete, get raises {type(e).__name__}: {e}")

        print(f"stats: {node.stats()}")
        node_id = node.id

    # Reopening the root finds the same node, with its data.
    with dstore.Node(root) as node:
        assert node.id == node_id
        print(f"reopened: same id, keys {list(node.keys())}")


def main() -> None:
    if len(sys.argv) > 1:
        tour(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            tour(os.path.join(tmp, "root"))
    print("done")


if __name__ == "__main__":
    main()
