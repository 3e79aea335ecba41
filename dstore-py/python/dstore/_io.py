"""The file object ``Node.open()`` returns: the value of one key, read-only and seekable,
as an ``io.RawIOBase`` under an ``io.BufferedReader``. It only converts: the reading
(which chunk, verified and decrypted) is done by ``dstore._dstore.ValueReader``."""

import io

# Reads through the buffer go to the core in pieces this large (at most a chunk each).
BUFFER_SIZE = 256 * 1024


class ValueFile(io.RawIOBase):
    """The value of ``name``, read from a ``dstore._dstore.ValueReader``."""

    def __init__(self, reader, name):
        super().__init__()
        self._reader = reader
        self.name = name

    @property
    def size(self):
        """The value's size in bytes."""
        return self._reader.size

    def readable(self):
        return True

    def seekable(self):
        return True

    def readinto(self, b):
        self._check_open()
        view = memoryview(b).cast("B")
        data = self._reader.read(len(view))
        view[: len(data)] = data
        return len(data)

    def seek(self, offset, whence=io.SEEK_SET):
        self._check_open()
        return self._reader.seek(offset, whence)

    def tell(self):
        self._check_open()
        return self._reader.tell()

    def _check_open(self):
        if self.closed:
            raise ValueError("I/O operation on closed file.")


def open_value(reader, name):
    return io.BufferedReader(ValueFile(reader, name), buffer_size=BUFFER_SIZE)
