"""The C ABI in a cluster: tests/c/cluster_client.c (and a small C++ program over dstore.hpp)
joins `dstore node` processes as a client and as a member, under AddressSanitizer,
LeakSanitizer and UBSan; then the `dstore` command reads what they stored.

Building and running the programs is shared with tests/test_c_abi.py (the `libdir` fixture,
`compile_program`, `run_sanitized`); the node processes come from the `cluster` fixture in
conftest.py, which stops every one of them at teardown.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import KEY, SECRET, Cluster
from harness import cli as dstore
# `libdir` is a fixture: importing it makes it available to the tests here.
from test_c_abi import REPO, assert_lines, compile_program, libdir, run_sanitized

pytestmark = pytest.mark.usefixtures("dstore_binary")

# What tests/c/cluster_client.c stores: VALUE_KEY holds VALUE_LEN bytes of
# (i * 31 + 7) % 251, which repeats every 251 bytes; PLAIN_KEY is stored, then deleted.
VALUE_KEY = "from-c/encrypted.bin"
PLAIN_KEY = "from-c/plain.txt"
VALUE_LEN = 1500007
PERIOD = bytes((i * 31 + 7) % 251 for i in range(251))
VALUE = (PERIOD * (VALUE_LEN // 251 + 1))[:VALUE_LEN]


def test_c_client_and_member_join_a_cluster_of_dstore_nodes(
    cluster: Cluster, libdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = compile_program(
        [REPO / "tests/c/cluster_client.c"], tmp_path / "cluster_client", libdir, cxx=False
    )
    a, b, c = cluster.cluster(3)
    scratch = tmp_path / "scratch"  # the program's node roots go here, and must go away
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))

    result = run_sanitized(program, b, SECRET, KEY)

    assert result.stdout.splitlines()[-1] == "OK", result.stdout
    assert_lines(
        result.stdout,
        "settled: 3 peers",
        *(f" {addr} zone -" for addr in (a, b, c)),
        f"stored {VALUE_KEY} ({VALUE_LEN} bytes, encrypted) and {PLAIN_KEY} (plain)",
        "read both back",
        f"deleted {PLAIN_KEY}",
        "member listening on 127.0.0.1:",
        f"member read {VALUE_KEY}",
        "closed",
    )
    assert list(scratch.iterdir()) == [], "the program removes its roots"

    # The same bytes through the command, from each member.
    for member in (a, c):
        assert dstore("get", "--peer", member, VALUE_KEY).stdout == VALUE
    listed = dstore("ls", "--peer", a).stdout.decode().split()
    assert VALUE_KEY in listed and PLAIN_KEY not in listed
    missing = dstore("get", "--peer", c, PLAIN_KEY, check=False)
    assert missing.returncode != 0 and b"not found" in missing.stderr


CPP_PROGRAM = r"""
#include <array>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include "dstore.hpp"

static void require(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(std::string("check failed: ") + what);
}

int main(int argc, char** argv) {
    if (argc != 5) {
        std::fprintf(stderr, "usage: %s PEER ROOT SECRET KEY_HEX\n", argv[0]);
        return 2;
    }
    const std::string peer = argv[1], root = argv[2], secret = argv[3], hex = argv[4];
    try {
        std::array<std::uint8_t, 32> key{};
        for (std::size_t i = 0; i < key.size(); ++i) {
            key[i] = static_cast<std::uint8_t>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
        }
        dstore::Node client(dstore::Options().root(root + "/client").secret(secret)
                                .data_key(key).client().add_peer(peer));
        require(!client.addr().has_value(), "a client has no address");
        const std::size_t live = client.settle(std::chrono::seconds(20));
        const std::vector<dstore::Peer> peers = client.peers();
        std::printf("settled: %zu peers, %zu listed\n", live, peers.size());
        for (const dstore::Peer& p : peers) {
            require(p.id.size() == 64 && !p.addr.empty() && !p.zone, "a peer's fields");
        }
        client.store("from-cpp/greeting", std::string("hello from C++"));
        require(client.get_string("from-cpp/greeting") == "hello from C++", "read back");

        dstore::Node member(dstore::Options().root(root + "/member").secret(secret)
                                .data_key(key).listen("127.0.0.1:0").add_peer(peer)
                                .zone("cpp-zone").replicas(3));
        const std::optional<std::string> addr = member.addr();
        require(addr.has_value() && addr->rfind("127.0.0.1:", 0) == 0, "a member's address");
        std::printf("member at %s\n", addr->c_str());
        member.settle(std::chrono::milliseconds(20000));
        require(member.get_string("from-cpp/greeting") == "hello from C++", "member reads");

        try {
            dstore::Options().replicas(256);
            require(false, "replicas 256 refused");
        } catch (const dstore::InvalidArgument&) {
        }
        try {
            client.settle(std::chrono::milliseconds(-1));
            require(false, "a negative timeout refused");
        } catch (const dstore::InvalidArgument&) {
        }
        try {
            dstore::Node bad(dstore::Options().root(root + "/bad").client().listen("127.0.0.1:0"));
            require(false, "a listening client refused");
        } catch (const dstore::InvalidArgument& e) {
            std::printf("listening client: %s\n", e.what());
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    std::printf("OK\n");
    return 0;
}
"""


def test_cpp_wrapper_in_a_cluster(cluster: Cluster, libdir: Path, tmp_path: Path) -> None:
    source = tmp_path / "cluster.cpp"
    source.write_text(CPP_PROGRAM)
    program = compile_program([source], tmp_path / "cluster_cpp", libdir, cxx=True)
    a, _, _ = cluster.cluster(3)
    result = run_sanitized(program, a, str(tmp_path / "roots"), SECRET, KEY)
    assert result.stdout.splitlines()[-1] == "OK", result.stdout
    assert_lines(
        result.stdout,
        "settled: 3 peers, 3 listed",
        "member at 127.0.0.1:",
        "listening client: DSTORE_INVALID_ARGUMENT: dstore_new: ",
    )
    assert dstore("get", "--peer", a, "from-cpp/greeting").stdout == b"hello from C++"
