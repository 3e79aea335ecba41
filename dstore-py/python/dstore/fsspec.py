"""fsspec support: ``fsspec.filesystem("dstore", root=..., key=..., peers=..., secret=...,
client=...)``, registered under the protocol ``dstore`` through fsspec's entry point.

A path is a key; "directories" are key prefixes ending at ``/``, so they exist only while a
key lies under them (``mkdir`` makes nothing, and a directory goes when its last key does).
Reads fetch only the chunks they need (``cat_file`` with ``start``/``end``, files opened
``rb``); files opened ``wb`` spool to a temporary file (in memory up to 8 MiB) and are stored
as one value when closed. This module only translates: every rule is the node's.
"""

import datetime
import tempfile

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem  # type: ignore[import-untyped]

from ._dstore import Node, NotFoundError

# Writes up to this size stay in memory before they spool to a temporary file.
SPOOL_MAX = 8 << 20


class DstoreFileSystem(AbstractFileSystem):
    """The keys of one dstore node (standalone, a cluster member, or a client) as files.

    Either pass ``node=`` (an open ``dstore.Node``, which stays the caller's), or the
    arguments of ``dstore.Node``: ``root`` (for a client, a scratch directory is made when
    none is given), ``key``, ``secret``, ``peers``, ``client`` and any keyword ``Node`` takes.
    """

    protocol = "dstore"
    root_marker = ""

    def __init__(self, root=None, key=None, secret=None, peers=None, client=False, node=None,
                 **node_options):
        fsspec_options = {k: node_options.pop(k) for k in list(node_options)
                          if k in ("skip_instance_cache", "use_listings_cache",
                                   "listings_expiry_time", "max_paths")}
        super().__init__(**fsspec_options)
        self._scratch = None
        if node is not None:
            self.node = node
            self._owned = False
            return
        if root is None:
            if not client:
                raise ValueError("a dstore filesystem needs root= (or client=True, or node=)")
            self._scratch = tempfile.TemporaryDirectory(prefix="dstore-fsspec-")
            root = self._scratch.name
        self.node = Node(root, key=key, secret=secret, peers=list(peers or []), client=client,
                         **node_options)
        self._owned = True
        if client or peers:
            self.node.settle(10)

    def close(self):
        """Closes the node this filesystem opened (not one it was given)."""
        if self._owned:
            self.node.close()
        if self._scratch is not None:
            self._scratch.cleanup()

    @classmethod
    def _strip_protocol(cls, path):
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path)
        if path.startswith("dstore://"):
            path = path[len("dstore://"):]
        return path.strip("/")

    # ---- listing ---------------------------------------------------------------------------

    def _file_entry(self, key):
        i = self.node.info(key)
        return {"name": key, "size": i["size"], "type": "file", "modified": i["modified"],
                "version": i["version"], "encrypted": i["encrypted"]}

    def ls(self, path, detail=True, **kwargs):
        path = self._strip_protocol(path)
        prefix = path + "/" if path else ""
        files, dirs = [], {}
        for key in self.node.keys(prefix):
            rest = key[len(prefix):]
            if "/" in rest:
                name = prefix + rest.split("/", 1)[0]
                dirs.setdefault(name, {"name": name, "size": 0, "type": "directory"})
            elif rest:
                files.append(key)
        if not files and not dirs:
            if path and self.node.has(path):
                return [self._file_entry(path)] if detail else [path]
            if path:
                raise FileNotFoundError(path)
        entries = []
        for key in files:
            try:
                entries.append(self._file_entry(key))
            except NotFoundError:  # deleted since it was listed
                pass
        entries.extend(dirs.values())
        entries.sort(key=lambda e: e["name"])
        return entries if detail else [e["name"] for e in entries]

    def info(self, path, **kwargs):
        path = self._strip_protocol(path)
        if not path:
            return {"name": "", "size": 0, "type": "directory"}
        try:
            return self._file_entry(path)
        except NotFoundError:
            pass
        if self.node.list(prefix=path + "/", limit=1):
            return {"name": path, "size": 0, "type": "directory"}
        raise FileNotFoundError(path)

    def modified(self, path):
        info = self.info(path)
        if info["type"] != "file":
            raise IsADirectoryError(path)
        return datetime.datetime.fromtimestamp(info["modified"], tz=datetime.timezone.utc)

    created = modified  # a value is written whole: made and last changed at once

    # ---- whole values ----------------------------------------------------------------------

    def cat_file(self, path, start=None, end=None, **kwargs):
        path = self._strip_protocol(path)
        try:
            if start is None and end is None:
                return self.node.get(path)
            if (start is not None and start < 0) or (end is not None and end < 0):
                size = self.node.size(path)
                start = max(size + start, 0) if start is not None and start < 0 else start
                end = max(size + end, 0) if end is not None and end < 0 else end
            start = start or 0
            if end is None:
                return self.node.get_range(path, start, 2**64 - 1)
            return self.node.get_range(path, start, max(end - start, 0))
        except NotFoundError:
            raise FileNotFoundError(path) from None

    def pipe_file(self, path, value, mode="overwrite", **kwargs):
        path = self._strip_protocol(path)
        if mode == "create" and self.node.has(path):
            raise FileExistsError(path)
        self.node.store(path, value)

    def cp_file(self, path1, path2, **kwargs):
        path1, path2 = self._strip_protocol(path1), self._strip_protocol(path2)
        if self.isdir(path1):
            return  # directories are prefixes: nothing to copy
        try:
            with self.node.open(path1) as src:
                self.node.store_file(path2, src)
        except NotFoundError:
            raise FileNotFoundError(path1) from None

    def rm_file(self, path):
        path = self._strip_protocol(path)
        try:
            self.node.delete(path)
        except NotFoundError:
            if not self.isdir(path):
                raise FileNotFoundError(path) from None

    def _rm(self, path):
        self.rm_file(path)

    def rm(self, path, recursive=False, maxdepth=None):
        paths = self.expand_path(path, recursive=recursive, maxdepth=maxdepth)
        for p in reversed(paths):
            if self.isfile(p):
                self.rm_file(p)
        self.invalidate_cache()

    def mkdir(self, path, create_parents=True, **kwargs):
        pass  # a directory is there as soon as a key lies under it

    def makedirs(self, path, exist_ok=False):
        if not exist_ok and self.isfile(path):
            raise FileExistsError(path)

    def rmdir(self, path):
        pass

    # ---- files -----------------------------------------------------------------------------

    def _open(self, path, mode="rb", block_size=None, autocommit=True, cache_options=None,
              **kwargs):
        path = self._strip_protocol(path)
        if "r" in mode:
            try:
                size = self.node.size(path)
            except NotFoundError:
                raise FileNotFoundError(path) from None
            return DstoreFile(self, path, mode, block_size=block_size or "default",
                              cache_options=cache_options, size=size)
        if mode not in ("wb", "xb"):
            raise ValueError(f"dstore files open as rb, wb or xb, not {mode}")
        if mode == "xb" and self.node.has(path):
            raise FileExistsError(path)
        return DstoreFile(self, path, "wb", block_size=block_size or "default",
                          autocommit=autocommit, cache_options=cache_options)


class DstoreFile(AbstractBufferedFile):
    """A value read by ranges (``rb``), or written to a spool and stored when closed
    (``wb``)."""

    def _fetch_range(self, start, end):
        return self.fs.cat_file(self.path, start=start, end=end)

    def _initiate_upload(self):
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX)

    def _upload_chunk(self, final=False):
        self._spool.write(self.buffer.getbuffer())
        if final and self.autocommit:
            self.commit()
        return True

    def commit(self):
        self._spool.seek(0)
        try:
            self.fs.node.store_file(self.path, self._spool)
        finally:
            self._spool.close()

    def discard(self):
        self._spool.close()
