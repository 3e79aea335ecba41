"""asyncio support: ``dstore.aio.Node``, the calls of ``dstore.Node`` as coroutines.

    import dstore.aio

    async with await dstore.aio.Node.open("./data") as node:
        await node.store("k", b"v")
        assert await node.get("k") == b"v"
        async for key in node.keys("k"):
            ...

Each call runs on a worker thread of its own (a ``dstore.Node`` call releases the GIL while
it works), so the event loop is never blocked and calls from many tasks run at once. A task
cancelled while a call is under way stops waiting for it; the call itself runs to its end,
as a store or delete must (nothing is left half done).
"""

import asyncio
import concurrent.futures
import functools

from . import _dstore

# Threads that wait on dstore calls, shared by every asyncio node: they hold no GIL while
# the call works, so many can wait at once without slowing the loop.
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="dstore-aio")


async def _call(fn, *args, **kwargs):
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_POOL, functools.partial(fn, *args, **kwargs))


class Node:
    """A ``dstore.Node`` for asyncio. Open with ``await dstore.aio.Node.open(...)`` (the same
    arguments as ``dstore.Node``), or wrap an open node: ``dstore.aio.Node(node)``."""

    def __init__(self, node):
        self.sync = node
        """The ``dstore.Node`` underneath."""

    @classmethod
    async def open(cls, *args, **kwargs):
        return cls(await _call(_dstore.Node, *args, **kwargs))

    @property
    def id(self):
        return self.sync.id

    @property
    def addr(self):
        return self.sync.addr

    async def store(self, key, data, encrypt=True, *, erasure=None):
        return await _call(self.sync.store, key, bytes(data), encrypt, erasure=erasure)

    async def get(self, key):
        return await _call(self.sync.get, key)

    async def get_range(self, key, offset, length):
        return await _call(self.sync.get_range, key, offset, length)

    async def delete(self, key):
        return await _call(self.sync.delete, key)

    async def has(self, key):
        return await _call(self.sync.has, key)

    async def size(self, key):
        return await _call(self.sync.size, key)

    async def info(self, key):
        return await _call(self.sync.info, key)

    async def list(self, prefix="", start_after="", limit=1000):
        return await _call(self.sync.list, prefix, start_after, limit)

    async def keys(self, prefix=""):
        """The keys starting with `prefix`, in byte order, fetched a page at a time."""
        after = ""
        while True:
            page = await self.list(prefix, after, _dstore.MAX_LIST)
            for key in page:
                yield key
            if len(page) < _dstore.MAX_LIST:
                return
            after = page[-1]

    async def store_file(self, key, src, encrypt=True, *, erasure=None):
        return await _call(self.sync.store_file, key, src, encrypt, erasure=erasure)

    async def get_file(self, key, dst):
        return await _call(self.sync.get_file, key, dst)

    async def stats(self):
        return await _call(self.sync.stats)

    async def peers(self):
        return await _call(self.sync.peers)

    async def settle(self, timeout=10.0):
        return await _call(self.sync.settle, timeout)

    async def close(self):
        return await _call(self.sync.close)

    async def leave(self):
        return await _call(self.sync.leave)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()
