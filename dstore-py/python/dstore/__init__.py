"""dstore: a content-addressed, encrypted file store.

    import dstore

    with dstore.Node("./data") as node:
        node.store("hello.txt", b"hello")
        assert node.get("hello.txt") == b"hello"

Everything here is implemented in Rust (the extension module ``dstore._dstore``); this
package only re-exports it. Every error raised by dstore is a :class:`dstore.Error`:

- :class:`NotFoundError` (also a ``KeyError``): the key has no live value;
- :class:`IntegrityError`: stored bytes failed their hash or MAC (corruption or tampering);
- :class:`WrongKeyError`: the value was encrypted under another data key;
- :class:`ClosedError`: the node was closed;
- :class:`LockedError`: another node has the storage root open;
- :class:`UnavailableError`: too few of the nodes owning the data answered;
- :class:`InvalidArgumentError` (also a ``ValueError``): a bad key, data key, secret or option;
- :class:`StorageIOError` (also an ``OSError``): the operating system refused an operation;
  ``errno`` is set when known (``errno.ENOENT`` for a missing input file).

A wrong argument type raises ``TypeError``. Calls release the GIL, so threads sharing one
node run in parallel.
"""

import logging as _logging

# The core's log records arrive under "dstore_core.*" (see the README). As a library should,
# dstore gives them a NullHandler: an application that configured no logging sees nothing
# (instead of logging's last-resort output to stderr); one that did gets them as usual.
_logging.getLogger("dstore_core").addHandler(_logging.NullHandler())

from ._dstore import (  # noqa: E402
    DEFAULT_CHUNK_SIZE,
    INLINE_MAX,
    MAX_CHUNK_SIZE,
    MAX_KEY_LEN,
    MAX_LIST,
    MIN_CHUNK_SIZE,
    ClosedError,
    DrainWarning,
    Error,
    IntegrityError,
    InvalidArgumentError,
    KeyIterator,
    LockedError,
    UnavailableError,
    Node,
    NotFoundError,
    StorageIOError,
    ValueReader,
    WrongKeyError,
    __version__,
    client_credential,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "INLINE_MAX",
    "MAX_CHUNK_SIZE",
    "MAX_KEY_LEN",
    "MAX_LIST",
    "MIN_CHUNK_SIZE",
    "ClosedError",
    "DrainWarning",
    "Error",
    "IntegrityError",
    "InvalidArgumentError",
    "KeyIterator",
    "LockedError",
    "UnavailableError",
    "Node",
    "NotFoundError",
    "StorageIOError",
    "ValueReader",
    "WrongKeyError",
    "__version__",
    "client_credential",
]
