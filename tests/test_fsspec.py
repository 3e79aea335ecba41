"""fsspec's own abstract test suite (fsspec.tests.abstract) run against the `dstore` protocol,
and what it does not cover: ranges, listings with detail, info, and the registration."""

from __future__ import annotations

import posixpath
from pathlib import Path

import fsspec
import pytest
from fsspec.tests.abstract import (
    AbstractCopyTests,
    AbstractFixtures,
    AbstractGetTests,
    AbstractOpenTests,
    AbstractPipeTests,
    AbstractPutTests,
)

import dstore
from dstore.fsspec import DstoreFileSystem


class DstoreFixtures(AbstractFixtures):
    @pytest.fixture(scope="class")
    @classmethod
    def fs(cls, tmp_path_factory: pytest.TempPathFactory):
        fs = fsspec.filesystem(
            "dstore", root=str(tmp_path_factory.mktemp("fsspec-root")), skip_instance_cache=True
        )
        yield fs
        fs.close()

    @pytest.fixture
    def fs_path(self) -> str:
        return "fsspec"

    @pytest.fixture
    def fs_join(self):
        return posixpath.join

    @pytest.fixture
    def supports_empty_directories(self) -> bool:
        return False  # a directory is a key prefix: it exists while a key lies under it


class TestDstoreCopy(AbstractCopyTests, DstoreFixtures):
    pass


class TestDstoreGet(AbstractGetTests, DstoreFixtures):
    pass


class TestDstorePut(AbstractPutTests, DstoreFixtures):
    pass


class TestDstorePipe(AbstractPipeTests, DstoreFixtures):
    pass


class TestDstoreOpen(AbstractOpenTests, DstoreFixtures):
    pass


def test_the_protocol_is_registered_and_serves_a_node(tmp_path: Path) -> None:
    assert fsspec.get_filesystem_class("dstore") is DstoreFileSystem
    with dstore.Node(tmp_path / "root", chunk_size=4096) as node:
        fs = fsspec.filesystem("dstore", node=node, skip_instance_cache=True)
        data = bytes(range(256)) * 100
        fs.pipe_file("dstore://docs/a.bin", data)
        node.store("docs/sub/b.txt", b"bee")
        assert node.get("docs/a.bin") == data  # a path is a key
        assert fs.cat_file("docs/a.bin", start=5000, end=9000) == data[5000:9000]
        assert fs.cat_file("docs/a.bin", start=-10) == data[-10:]
        assert fs.cat_file("docs/a.bin", start=100, end=-100) == data[100:-100]
        listing = fs.ls("docs", detail=True)
        assert [(e["name"], e["type"], e["size"]) for e in listing] == [
            ("docs/a.bin", "file", len(data)),
            ("docs/sub", "directory", 0),
        ]
        assert fs.ls("/docs/", detail=False) == ["docs/a.bin", "docs/sub"]
        assert fs.info("docs/sub/b.txt")["size"] == 3 and fs.isdir("docs/sub")
        assert fs.exists("docs") and not fs.exists("nothing") and not fs.exists("docs/a")
        with fs.open("docs/a.bin", "rb") as f:
            f.seek(20000)
            assert f.read(300) == data[20000:20300]
        with fs.open("docs/new.bin", "wb") as f:
            for _ in range(3):
                f.write(data)
        assert node.get("docs/new.bin") == data * 3
        with pytest.raises(FileNotFoundError):
            fs.cat_file("docs/missing")
        with pytest.raises(FileNotFoundError):
            fs.open("docs/missing", "rb")
        with pytest.raises(FileNotFoundError):
            fs.ls("nothing/here")
        fs.rm("docs", recursive=True)
        assert list(node.keys("")) == [] and not fs.exists("docs")
