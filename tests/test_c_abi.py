"""The C ABI from C and C++: builds libdstore, compiles the examples and tests/c programs
against the committed headers with -Werror, and runs them under AddressSanitizer,
LeakSanitizer and UBSan.

Runs on its own (`python3 -m pytest tests/test_c_abi.py`): the session fixture builds the
library with `cargo build --release -p dstore-ffi` into $CARGO_TARGET_DIR (default
<repo>/target), the release build that tests, the C library and the Python module share.
Compiled programs go under pytest's tmp_path, never into the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
INCLUDE = REPO / "include"

WARNINGS = ["-Wall", "-Wextra", "-Werror"]
SANITIZERS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
SANITIZER_ENV = {
    # LeakSanitizer is on by default with ASan on Linux; say so, so that it stays on.
    "ASAN_OPTIONS": "detect_leaks=1",
    # UBSan only prints by default; make undefined behaviour fail the run.
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
}
# What a sanitizer writes when it finds something.
SANITIZER_REPORTS = ["ERROR: AddressSanitizer", "LeakSanitizer", "runtime error:"]
RUN_TIMEOUT = 300  # seconds; the programs take well under a second


@pytest.fixture(scope="session")
def libdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lib directory of a fresh `make install` (libdstore.so with its SONAME links,
    libdstore.a, pkg-config and CMake files; headers in ../include): what a C user links."""
    for tool in ("cargo", "gcc", "g++", "make"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is needed to build and run the C tests, and is not installed")
    prefix = tmp_path_factory.mktemp("prefix")
    subprocess.run(
        ["make", "-s", "install", f"PREFIX={prefix}"],
        cwd=REPO,
        check=True,
        timeout=1800,
    )
    lib = prefix / "lib"
    assert (lib / "libdstore.so").is_file(), f"no libdstore.so in {lib}"
    return lib


def compile_program(
    sources: list[Path], out: Path, libdir: Path, *, cxx: bool, sanitize: bool = True
) -> Path:
    """Compiles and links `sources` against libdstore.so; fails the test on any warning."""
    compiler, std = ("g++", "-std=c++17") if cxx else ("gcc", "-std=c11")
    cmd = [
        compiler,
        std,
        *WARNINGS,
        "-g",
        *(SANITIZERS if sanitize else []),
        "-I",
        str(INCLUDE),
        *map(str, sources),
        "-o",
        str(out),
        f"-L{libdir}",
        "-ldstore",
        f"-Wl,-rpath,{libdir}",
        "-lpthread",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stderr}"
    return out


def run_sanitized(program: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs `program` and fails the test on a non-zero exit or any sanitizer report."""
    result = subprocess.run(
        [str(program), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **SANITIZER_ENV},
        timeout=RUN_TIMEOUT,
    )
    context = (
        f"{program.name} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    for report in SANITIZER_REPORTS:
        assert report not in result.stderr, context
    assert result.returncode == 0, context
    return result


def assert_lines(stdout: str, *expected: str) -> None:
    for line in expected:
        assert line in stdout, f"{line!r} missing from:\n{stdout}"


# ---- the headers ------------------------------------------------------------------------


def test_c_header_compiles_as_c99_and_as_cpp(tmp_path: Path) -> None:
    # Included twice: the include guard must hold.
    body = '#include "dstore.h"\n#include "dstore.h"\nint main(void) { return DSTORE_OK; }\n'
    for name, cmd in [
        ("check.c", ["gcc", "-std=c99", "-pedantic"]),
        ("check.cpp", ["g++", "-std=c++11", "-pedantic"]),
    ]:
        source = tmp_path / name
        source.write_text(body)
        full = [*cmd, *WARNINGS, "-fsyntax-only", "-I", str(INCLUDE), str(source)]
        result = subprocess.run(full, capture_output=True, text=True)
        assert result.returncode == 0, f"{' '.join(full)}\n{result.stderr}"


def test_cpp_wrapper_compiles_as_cpp17(tmp_path: Path) -> None:
    source = tmp_path / "check.cpp"
    source.write_text('#include "dstore.hpp"\n#include "dstore.hpp"\nint main() { return 0; }\n')
    cmd = ["g++", "-std=c++17", "-pedantic", *WARNINGS, "-fsyntax-only", "-I", str(INCLUDE)]
    cmd.append(str(source))
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stderr}"


# ---- the programs -----------------------------------------------------------------------


def test_c_quickstart(libdir: Path, tmp_path: Path) -> None:
    source = REPO / "examples/c/quickstart.c"
    program = compile_program([source], tmp_path / "quickstart", libdir, cxx=False)
    root = tmp_path / "root"
    result = run_sanitized(program, str(root))
    assert_lines(
        result.stdout,
        f"storage root {root}",
        "stored notes/secret (encrypted)",
        "stored public/notice (plain)",
        'get notes/secret   -> "meet at noon" (12 bytes)',
        'get public/notice  -> "hello, world" (12 bytes)',
        "keys (2):",
        "has public/notice: yes",
        "deleted public/notice; has public/notice: no",
        "get public/notice -> DSTORE_NOT_FOUND",
        "read it back",
        "all done",
    )
    assert (root / "LOCK").is_file() and (root / "chunks").is_dir()


def test_cpp_quickstart(libdir: Path, tmp_path: Path) -> None:
    source = REPO / "examples/cpp/quickstart.cpp"
    program = compile_program([source], tmp_path / "quickstart", libdir, cxx=True)
    result = run_sanitized(program, str(tmp_path / "root"))
    assert_lines(
        result.stdout,
        'get notes/secret -> "meet at noon"',
        'get public/notice -> "hello, world"',
        "keys (2):",
        "get public/notice threw dstore::NotFound (DSTORE_NOT_FOUND: dstore_get: not found",
        "stored and fetched files/example.txt: identical",
        "all done",
    )


def test_ffi_edge_cases(libdir: Path, tmp_path: Path) -> None:
    source = REPO / "tests/c/ffi_edge_cases.c"
    program = compile_program([source], tmp_path / "ffi_edge_cases", libdir, cxx=False)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = run_sanitized(program, str(scratch))
    assert_lines(result.stdout, "checks passed")


CPP_TUNING_PROGRAM = r"""
#include <cstdio>
#include "dstore.hpp"
using namespace std::chrono_literals;
int main(int argc, char **argv) {
    if (argc != 2) return 2;
    const std::string root = argv[1];
    try {
        dstore::Node node(dstore::Options().root(root).write_quorum(4));
        return 1;
    } catch (const dstore::InvalidArgument &e) {
        std::printf("quorum refused: %s\n", e.what());
    }
    try {
        dstore::Options().timeouts(5s, 1s);
        return 1;
    } catch (const dstore::InvalidArgument &e) {
        std::printf("timeouts refused: %s\n", e.what());
    }
    try {
        dstore::Options().repair_interval(-1ms);
        return 1;
    } catch (const dstore::InvalidArgument &e) {
        std::printf("negative refused: %s\n", e.what());
    }
    dstore::Node node(dstore::Options()
                          .root(root)
                          .replicas(3)
                          .write_quorum(2)
                          .read_quorum(2)
                          .timeouts(1s, 5s, 2s)
                          .timeouts(0ms, 0ms)
                          .repair_interval(500ms)
                          .scrub(1h, 1 << 20)
                          .gc_grace(1min, 24h));
    node.store("k", std::string("value"));
    const dstore_stats s = node.stats();
    std::printf("keys=%llu chunks=%llu bytes_stored=%llu\n", (unsigned long long)s.keys,
                (unsigned long long)s.chunks, (unsigned long long)s.bytes_stored);
    std::printf("repair=%llu/%d scrub=%llu gc=%llu/%llu\n",
                (unsigned long long)s.repair_passes, (int)s.repair_running,
                (unsigned long long)s.scrub_passes, (unsigned long long)s.gc_chunks_collected,
                (unsigned long long)s.gc_tombstones_collected);
    return 0;
}
"""


def test_cpp_wrapper_sets_quorums_timeouts_and_maintenance_and_reads_stats(
    libdir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "tuning.cpp"
    source.write_text(CPP_TUNING_PROGRAM)
    program = compile_program([source], tmp_path / "tuning", libdir, cxx=True)
    result = run_sanitized(program, str(tmp_path / "root"))
    assert_lines(
        result.stdout,
        "quorum refused: DSTORE_INVALID_ARGUMENT: dstore_new: ",
        "timeouts refused: DSTORE_INVALID_ARGUMENT: dstore_options_set_timeouts_ms: "
        "invalid argument: dead_after (1 s) must not be shorter than suspect_after (5 s)",
        "negative refused: DSTORE_INVALID_ARGUMENT: repair interval is negative",
        "keys=1 chunks=0 bytes_stored=5",  # five bytes live in their manifest
        "repair=0/0 scrub=0 gc=0/0",  # a standalone node does no background work
    )


def test_static_library_links_with_the_documented_flags(libdir: Path, tmp_path: Path) -> None:
    """The header's opening comment and the README promise `libdstore.a -lpthread -ldl -lm`."""
    program = tmp_path / "quickstart-static"
    cmd = [
        "gcc",
        "-std=c11",
        *WARNINGS,
        "-I",
        str(INCLUDE),
        str(REPO / "examples/c/quickstart.c"),
        "-o",
        str(program),
        str(libdir / "libdstore.a"),
        "-lpthread",
        "-ldl",
        "-lm",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stderr}"
    run = subprocess.run(
        [str(program), str(tmp_path / "root")], capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    assert run.returncode == 0, run.stderr
    assert_lines(run.stdout, "all done")


# ---- an install, as a C or C++ user finds it ----------------------------------------------


def workspace_version() -> str:
    for line in (REPO / "Cargo.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise AssertionError("no version in Cargo.toml")


def test_the_install_is_a_versioned_library_with_its_links(libdir: Path) -> None:
    version = workspace_version()
    major = version.split(".")[0]
    real = libdir / f"libdstore.so.{version}"
    assert real.is_file() and not real.is_symlink()
    assert os.readlink(libdir / f"libdstore.so.{major}") == real.name
    assert os.readlink(libdir / "libdstore.so") == f"libdstore.so.{major}"
    dynamic = subprocess.run(
        ["readelf", "-d", str(real)], capture_output=True, text=True, check=True
    ).stdout
    assert f"Library soname: [libdstore.so.{major}]" in dynamic
    sections = subprocess.run(
        ["readelf", "-S", "-W", str(real)], capture_output=True, text=True, check=True
    ).stdout
    assert ".debug_" not in sections, "the installed library keeps its debug info"
    include = libdir.parent / "include"
    assert (include / "dstore.h").read_bytes() == (INCLUDE / "dstore.h").read_bytes()
    assert (include / "dstore.hpp").read_bytes() == (INCLUDE / "dstore.hpp").read_bytes()
    assert subprocess.run(
        [str(libdir.parent / "bin/dstore"), "--version"], capture_output=True, text=True
    ).stdout.split() == ["dstore", version]


def test_a_program_builds_against_the_install_with_pkg_config_alone(
    libdir: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "PKG_CONFIG_PATH": str(libdir / "pkgconfig")}
    pkg = ["pkg-config", "--cflags", "--libs", "dstore"]
    flags = subprocess.run(pkg, env=env, capture_output=True, text=True, check=True).stdout
    modversion = subprocess.run(
        ["pkg-config", "--modversion", "dstore"], env=env, capture_output=True, text=True
    ).stdout.strip()
    assert modversion == workspace_version()
    program = tmp_path / "quickstart"
    cmd = ["gcc", "-std=c11", *WARNINGS, str(REPO / "examples/c/quickstart.c"), "-o",
           str(program), *flags.split()]
    built = subprocess.run(cmd, capture_output=True, text=True)
    assert built.returncode == 0, f"{' '.join(cmd)}\n{built.stderr}"
    run = subprocess.run(
        [str(program), str(tmp_path / "root")],
        capture_output=True,
        text=True,
        env={**os.environ, "LD_LIBRARY_PATH": str(libdir)},
        timeout=RUN_TIMEOUT,
    )
    assert run.returncode == 0, run.stderr
    assert_lines(run.stdout, "all done")


def test_a_cmake_project_finds_the_install(libdir: Path, tmp_path: Path) -> None:
    if shutil.which("cmake") is None:
        pytest.fail("cmake is needed for this test (.ci/run installs it)")
    project = tmp_path / "project"
    project.mkdir()
    (project / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\n"
        "project(uses_dstore CXX)\n"
        "set(CMAKE_CXX_STANDARD 17)\n"
        f"find_package(dstore {workspace_version()} REQUIRED)\n"
        f"add_executable(quickstart {REPO / 'examples/cpp/quickstart.cpp'})\n"
        "target_link_libraries(quickstart dstore::dstore)\n"
    )
    build = tmp_path / "build"
    for cmd in (
        ["cmake", "-S", str(project), "-B", str(build), f"-DCMAKE_PREFIX_PATH={libdir.parent}"],
        ["cmake", "--build", str(build)],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout}\n{done.stderr}"
    run = subprocess.run(
        [str(build / "quickstart"), str(tmp_path / "root")],
        capture_output=True,
        text=True,
        env={**os.environ, "LD_LIBRARY_PATH": str(libdir)},
        timeout=RUN_TIMEOUT,
    )
    assert run.returncode == 0, run.stderr
    assert_lines(run.stdout, "all done")


# ---- the checks above are only as good as the sanitizers --------------------------------

LEAKY_PROGRAM = r"""
#include <stdio.h>
#include "dstore.h"
int main(int argc, char **argv) {
    (void)argc;
    dstore_options *opts = dstore_options_new();
    dstore_node *node = NULL;
    uint8_t *value = NULL;
    size_t len = 0;
    if (dstore_options_set_root(opts, argv[1]) != DSTORE_OK ||
        dstore_new(opts, &node) != DSTORE_OK ||
        dstore_store(node, "k", (const uint8_t *)"leaked value", 12, true) != DSTORE_OK ||
        dstore_get(node, "k", &value, &len) != DSTORE_OK) {
        fprintf(stderr, "%s\n", dstore_last_error());
        return 2;
    }
    /* Forgets dstore_bytes_free(value, len). */
    dstore_options_free(opts);
    dstore_free(node);
    return 0;
}
"""


def test_leak_sanitizer_sees_a_buffer_that_c_forgets_to_free(
    libdir: Path, tmp_path: Path
) -> None:
    """Rust allocates with the system malloc, so LeakSanitizer watches dstore's buffers too:
    a clean run of the programs above means they free everything dstore hands them."""
    source = tmp_path / "leaky.c"
    source.write_text(LEAKY_PROGRAM)
    program = compile_program([source], tmp_path / "leaky", libdir, cxx=False)
    result = subprocess.run(
        [str(program), str(tmp_path / "root")],
        capture_output=True,
        text=True,
        env={**os.environ, **SANITIZER_ENV},
        timeout=RUN_TIMEOUT,
    )
    assert result.returncode != 0, result.stderr
    assert "ERROR: LeakSanitizer: detected memory leaks" in result.stderr, result.stderr
    assert "12 byte(s) leaked in 1 allocation(s)" in result.stderr, result.stderr
