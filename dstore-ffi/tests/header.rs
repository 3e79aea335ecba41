//! The committed header, include/dstore.h, is what C programs compile against. These tests
//! regenerate it with the pinned cbindgen and fail on any difference, so the header can never
//! drift from the Rust exports; `DSTORE_BLESS=1` rewrites it instead (`make header`).

use std::path::{Path, PathBuf};

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn header_path() -> PathBuf {
    crate_dir().join("../include/dstore.h")
}

/// The header as cbindgen makes it from src/lib.rs and the modules it declares. `with_src`
/// rather than `with_crate`: it reads only this crate's files and runs no `cargo metadata`,
/// which would contend for cargo's lock with the `cargo test` running this.
fn generate() -> String {
    let config = cbindgen::Config::from_file(crate_dir().join("cbindgen.toml"))
        .expect("dstore-ffi/cbindgen.toml is valid");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir().join("src/lib.rs"))
        .generate()
        .expect("cbindgen parses dstore-ffi")
        .write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
}

#[test]
fn committed_header_is_up_to_date() {
    let fresh = generate();
    let path = header_path();
    if std::env::var_os("DSTORE_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &fresh).expect("writing include/dstore.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != fresh {
        let first_difference = committed
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(fresh.lines().count()));
        panic!(
            "include/dstore.h is out of date with the Rust exports (first difference at line \
             {}).\nIf the change to the C API is intended, regenerate the header with \
             `make header` (or `DSTORE_BLESS=1 cargo test --release -p dstore-ffi --test \
             header`) and commit it.",
            first_difference + 1
        );
    }
}

/// The value of `#define NAME value` in `header`.
fn define(header: &str, name: &str) -> String {
    header
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix("#define ")?.strip_prefix(name)?;
            rest.starts_with(' ').then(|| rest.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("include/dstore.h does not #define {name}"))
}

#[test]
fn version_macros_match_cargo_toml() {
    // Checked on a fresh header, which the test above requires the committed one to equal
    // (and which is complete even while DSTORE_BLESS=1 is rewriting the file).
    let header = generate();
    let hint = "update after_includes in dstore-ffi/cbindgen.toml, then run `make header`";
    assert_eq!(
        define(&header, "DSTORE_VERSION"),
        format!("\"{}\"", env!("CARGO_PKG_VERSION")),
        "{hint}"
    );
    for (part, value) in [
        ("MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        assert_eq!(
            define(&header, &format!("DSTORE_VERSION_{part}")),
            value,
            "{hint}"
        );
    }
}

#[test]
fn library_reports_the_crate_version() {
    // SAFETY: dstore_version returns a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(dstore::dstore_version()) };
    assert_eq!(version.to_str(), Ok(env!("CARGO_PKG_VERSION")));
}
