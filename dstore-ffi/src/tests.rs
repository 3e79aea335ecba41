//! Tests of the exports, called as C calls them: raw pointers, NUL-terminated strings, status
//! codes. tests/c/ffi_edge_cases.c covers the same ground from C under AddressSanitizer; these
//! cover what C cannot reach (a panic, a call from inside tokio) and run with `cargo test`.

use std::ffi::{c_char, CStr, CString};
use std::ptr::{null, null_mut};

use crate::boundary::boundary;
use crate::status::{dstore_status::*, Failure, Result, ALL_STATUSES};
use crate::*;

fn last_error() -> String {
    // SAFETY: dstore_last_error never returns NULL and the string lives until our next call.
    unsafe { CStr::from_ptr(dstore_last_error()) }
        .to_str()
        .expect("messages are UTF-8")
        .to_owned()
}

/// Asserts `status` is `expected` and, for a failure, that the message mentions `mentions`.
#[track_caller]
fn assert_status(status: dstore_status, expected: dstore_status, mentions: &str) {
    let message = last_error();
    assert_eq!(status, expected, "last error: {message}");
    if expected == DSTORE_OK {
        assert_eq!(message, "", "a success clears the last error");
    } else {
        assert!(
            message.contains(mentions),
            "{message:?} should mention {mentions:?}"
        );
    }
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// A node on a fresh root, closed and deleted on drop.
struct TestNode {
    node: *mut dstore_node,
    dir: tempfile::TempDir,
}

impl TestNode {
    fn open() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let node = open_at(&dir.path().join("root"), None).expect("opens");
        Self { node, dir }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        // SAFETY: from dstore_new, freed once.
        unsafe { dstore_free(self.node) }
    }
}

fn open_at(root: &std::path::Path, data_key: Option<[u8; 32]>) -> Result<*mut dstore_node> {
    // SAFETY: every pointer passed is valid or deliberately NULL, as each call documents.
    unsafe {
        let opts = dstore_options_new();
        assert!(!opts.is_null());
        let root = c(root.to_str().unwrap());
        assert_status(dstore_options_set_root(opts, root.as_ptr()), DSTORE_OK, "");
        if let Some(key) = data_key {
            let status = dstore_options_set_data_key(opts, key.as_ptr(), key.len());
            assert_status(status, DSTORE_OK, "");
        }
        let mut node = null_mut();
        let status = dstore_new(opts, &mut node);
        dstore_options_free(opts);
        match status {
            DSTORE_OK => Ok(node),
            s => Err(Failure::new(s, last_error())),
        }
    }
}

#[test]
fn status_numbers_and_names_are_stable() {
    for (n, status) in ALL_STATUSES.into_iter().enumerate() {
        assert_eq!(
            status as usize, n,
            "statuses are numbered 0, 1, 2, ... in order"
        );
        // SAFETY: static strings.
        let name = unsafe { CStr::from_ptr(dstore_status_name(status as u32)) };
        assert_eq!(name, status.name());
        assert!(name.to_str().unwrap().starts_with("DSTORE_"));
    }
    assert_eq!(DSTORE_NOT_FOUND as u32, 2);
    assert_eq!(DSTORE_RUNTIME as u32, 9);
    // SAFETY: static strings.
    let unknown = unsafe { CStr::from_ptr(dstore_status_name(1234)) };
    assert_eq!(unknown, c"DSTORE_UNKNOWN_STATUS");
}

#[test]
fn a_panic_becomes_dstore_panic_with_a_message() {
    let status = boundary("dstore_test", || -> Result {
        panic!("boom at the boundary")
    });
    assert_status(status, DSTORE_PANIC, "dstore_test: internal error");
    assert!(last_error().contains("boom at the boundary"));

    let ptr = boundary("dstore_test", || -> *mut u8 {
        panic!("{}", String::from("formatted"))
    });
    assert!(ptr.is_null());
    assert!(last_error().contains("formatted"));

    let payload = boundary("dstore_test", || -> *const u8 {
        std::panic::panic_any(42_u32)
    });
    assert!(payload.is_null());
    assert!(last_error().contains("non-string payload"));
}

#[test]
fn null_handles_and_outputs_are_refused() {
    let t = TestNode::open();
    let key = c("k");
    let path = c(t.dir.path().join("f").to_str().unwrap());
    let (mut out, mut len, mut has) = (null_mut::<u8>(), 0usize, false);
    let (mut keys, mut count) = (null_mut::<*mut c_char>(), 0usize);
    let mut buf = [0 as c_char; 65];
    // SAFETY: every pointer is valid or deliberately NULL.
    unsafe {
        let n = null_mut();
        let k = key.as_ptr();
        assert_status(
            dstore_options_set_root(null_mut(), k),
            DSTORE_INVALID_ARGUMENT,
            "`opts` is NULL",
        );
        assert_status(
            dstore_new(null(), &mut null_mut()),
            DSTORE_INVALID_ARGUMENT,
            "`opts` is NULL",
        );
        assert_status(
            dstore_store(n, k, null(), 0, true),
            DSTORE_INVALID_ARGUMENT,
            "`node` is NULL",
        );
        assert_status(
            dstore_get(n, k, &mut out, &mut len),
            DSTORE_INVALID_ARGUMENT,
            "`node`",
        );
        assert_status(
            dstore_has(n, k, &mut has),
            DSTORE_INVALID_ARGUMENT,
            "`node`",
        );
        assert_status(dstore_delete(n, k), DSTORE_INVALID_ARGUMENT, "`node`");
        assert_status(
            dstore_keys(n, &mut keys, &mut count),
            DSTORE_INVALID_ARGUMENT,
            "`node`",
        );
        assert_status(
            dstore_store_file(n, k, path.as_ptr(), true),
            DSTORE_INVALID_ARGUMENT,
            "`node`",
        );
        assert_status(
            dstore_get_file(n, k, path.as_ptr()),
            DSTORE_INVALID_ARGUMENT,
            "`node`",
        );
        assert_status(
            dstore_node_id(n, buf.as_mut_ptr(), 65),
            DSTORE_INVALID_ARGUMENT,
            "`node`",
        );

        let n = t.node;
        assert_status(
            dstore_store(n, null(), null(), 0, true),
            DSTORE_INVALID_ARGUMENT,
            "`key` is NULL",
        );
        assert_status(
            dstore_get(n, k, null_mut(), &mut len),
            DSTORE_INVALID_ARGUMENT,
            "`out` is NULL",
        );
        assert_status(
            dstore_get(n, k, &mut out, null_mut()),
            DSTORE_INVALID_ARGUMENT,
            "`out_len`",
        );
        assert_status(
            dstore_has(n, k, null_mut()),
            DSTORE_INVALID_ARGUMENT,
            "`out` is NULL",
        );
        assert_status(
            dstore_keys(n, null_mut(), &mut count),
            DSTORE_INVALID_ARGUMENT,
            "`out_keys`",
        );
        assert_status(
            dstore_keys(n, &mut keys, null_mut()),
            DSTORE_INVALID_ARGUMENT,
            "`out_count`",
        );
        assert_status(
            dstore_store_file(n, k, null(), true),
            DSTORE_INVALID_ARGUMENT,
            "`path` is NULL",
        );
        assert_status(
            dstore_get_file(n, k, null()),
            DSTORE_INVALID_ARGUMENT,
            "`path` is NULL",
        );
        assert_status(
            dstore_node_id(n, null_mut(), 65),
            DSTORE_INVALID_ARGUMENT,
            "`buf` is NULL",
        );
        assert_status(
            dstore_node_id(n, buf.as_mut_ptr(), 64),
            DSTORE_INVALID_ARGUMENT,
            "`buf_len` is 64",
        );
        assert_eq!(buf, [0; 65], "outputs are written only on success");
        assert_status(dstore_node_id(n, buf.as_mut_ptr(), 65), DSTORE_OK, "");
        assert_eq!(CStr::from_ptr(buf.as_ptr()).to_bytes().len(), 64);

        // The `_free` functions accept NULL.
        dstore_free(null_mut());
        dstore_options_free(null_mut());
        dstore_bytes_free(null_mut(), 0);
        dstore_bytes_free(null_mut(), 10);
        dstore_keys_free(null_mut(), 3);
    }
    assert!((out, len, has, keys, count) == (null_mut(), 0, false, null_mut(), 0));
}

#[test]
fn strings_must_be_utf8_and_lengths_possible() {
    let t = TestNode::open();
    let bad = CString::new(vec![b'k', 0xff, b'x']).unwrap();
    let data = [1u8, 2, 3];
    // SAFETY: every pointer is valid or deliberately NULL; the huge lengths are refused before
    // anything reads through `data`.
    unsafe {
        let n = t.node;
        assert_status(
            dstore_store(n, bad.as_ptr(), data.as_ptr(), 3, true),
            DSTORE_INVALID_ARGUMENT,
            "`key` is not valid UTF-8 (bad byte at offset 1)",
        );
        let mut has = true;
        assert_status(
            dstore_has(n, bad.as_ptr(), &mut has),
            DSTORE_INVALID_ARGUMENT,
            "`key`",
        );
        assert!(has, "untouched");
        let k = c("k");
        assert_status(
            dstore_store_file(n, k.as_ptr(), bad.as_ptr(), true),
            DSTORE_INVALID_ARGUMENT,
            "`path` is not valid UTF-8",
        );
        for len in [usize::MAX, isize::MAX as usize + 1] {
            assert_status(
                dstore_store(n, k.as_ptr(), data.as_ptr(), len, true),
                DSTORE_INVALID_ARGUMENT,
                "larger than any buffer",
            );
        }
        assert_status(
            dstore_store(n, k.as_ptr(), null(), 3, true),
            DSTORE_INVALID_ARGUMENT,
            "`data` is NULL",
        );
        assert_status(
            dstore_store(n, c("").as_ptr(), data.as_ptr(), 3, true),
            DSTORE_INVALID_ARGUMENT,
            "1 to 1024",
        );
        let long = c(&"x".repeat(1025));
        assert_status(
            dstore_store(n, long.as_ptr(), data.as_ptr(), 3, true),
            DSTORE_INVALID_ARGUMENT,
            "1025",
        );

        let opts = dstore_options_new();
        assert_status(
            dstore_options_set_root(opts, bad.as_ptr()),
            DSTORE_INVALID_ARGUMENT,
            "`path` is not valid UTF-8",
        );
        assert_status(
            dstore_options_set_root(opts, c("").as_ptr()),
            DSTORE_INVALID_ARGUMENT,
            "`path` is empty",
        );
        assert_status(
            dstore_options_set_data_key(opts, data.as_ptr(), 3),
            DSTORE_INVALID_ARGUMENT,
            "`key_len` must be 32",
        );
        assert_status(
            dstore_options_set_data_key(opts, data.as_ptr(), usize::MAX),
            DSTORE_INVALID_ARGUMENT,
            "larger",
        );
        assert_status(
            dstore_options_set_secret(opts, data.as_ptr(), 0),
            DSTORE_INVALID_ARGUMENT,
            "empty",
        );
        assert_status(
            dstore_options_set_secret(opts, null(), 0),
            DSTORE_INVALID_ARGUMENT,
            "empty",
        );
        assert_status(
            dstore_options_set_chunk_size(opts, 63),
            DSTORE_INVALID_ARGUMENT,
            "`chunk_size`",
        );
        assert_status(
            dstore_options_set_chunk_size(opts, (8 << 20) + 1),
            DSTORE_INVALID_ARGUMENT,
            "`chunk_size`",
        );
        assert_status(dstore_options_set_chunk_size(opts, 64), DSTORE_OK, "");
        let mut node = null_mut();
        assert_status(
            dstore_new(opts, &mut node),
            DSTORE_INVALID_ARGUMENT,
            "no storage root",
        );
        assert!(node.is_null());
        dstore_options_free(opts);
    }
}

#[test]
fn values_round_trip_and_outputs_are_owned_by_the_caller() {
    let t = TestNode::open();
    // SAFETY: every pointer is valid; outputs are freed with the matching functions.
    unsafe {
        let n = t.node;
        let (a, b, empty) = (c("a"), c("b/é"), c("empty"));
        assert_status(
            dstore_store(n, a.as_ptr(), b"alpha".as_ptr(), 5, true),
            DSTORE_OK,
            "",
        );
        assert_status(
            dstore_store(n, b.as_ptr(), b"beta".as_ptr(), 4, false),
            DSTORE_OK,
            "",
        );
        assert_status(
            dstore_store(n, empty.as_ptr(), null(), 0, true),
            DSTORE_OK,
            "",
        );

        let (mut out, mut len) = (null_mut(), 0);
        assert_status(dstore_get(n, a.as_ptr(), &mut out, &mut len), DSTORE_OK, "");
        assert_eq!(std::slice::from_raw_parts(out, len), b"alpha");
        dstore_bytes_free(out, len);
        assert_status(
            dstore_get(n, empty.as_ptr(), &mut out, &mut len),
            DSTORE_OK,
            "",
        );
        assert!(
            !out.is_null() && len == 0,
            "an empty value still gets a pointer"
        );
        dstore_bytes_free(out, len);

        let (mut keys, mut count) = (null_mut(), 0);
        assert_status(dstore_keys(n, &mut keys, &mut count), DSTORE_OK, "");
        let listed: Vec<&str> = (0..count)
            .map(|i| CStr::from_ptr(*keys.add(i)).to_str().unwrap())
            .collect();
        assert_eq!(listed, ["a", "b/é", "empty"]);
        dstore_keys_free(keys, count);

        let mut has = false;
        assert_status(dstore_has(n, b.as_ptr(), &mut has), DSTORE_OK, "");
        assert!(has);
        assert_status(dstore_delete(n, b.as_ptr()), DSTORE_OK, "");
        assert_status(dstore_has(n, b.as_ptr(), &mut has), DSTORE_OK, "");
        assert!(!has);
        assert_status(
            dstore_delete(n, b.as_ptr()),
            DSTORE_NOT_FOUND,
            "dstore_delete: not found",
        );

        let (mut out, mut len) = (0xdead as *mut u8, 7);
        assert_status(
            dstore_get(n, b.as_ptr(), &mut out, &mut len),
            DSTORE_NOT_FOUND,
            "not found",
        );
        assert_eq!(
            (out as usize, len),
            (0xdead, 7),
            "outputs are written only on success"
        );

        let (src, dst) = (t.dir.path().join("in"), t.dir.path().join("out"));
        std::fs::write(&src, b"file contents").unwrap();
        let (src, dst) = (c(src.to_str().unwrap()), c(dst.to_str().unwrap()));
        assert_status(
            dstore_store_file(n, a.as_ptr(), src.as_ptr(), true),
            DSTORE_OK,
            "",
        );
        assert_status(dstore_get_file(n, a.as_ptr(), dst.as_ptr()), DSTORE_OK, "");
        assert_eq!(
            std::fs::read(t.dir.path().join("out")).unwrap(),
            b"file contents"
        );
        let missing = c(t.dir.path().join("missing").to_str().unwrap());
        assert_status(
            dstore_store_file(n, a.as_ptr(), missing.as_ptr(), true),
            DSTORE_IO,
            "missing",
        );
    }
}

#[test]
fn a_root_is_locked_and_a_data_key_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let first = open_at(&root, Some([1; 32])).unwrap();
    let locked = open_at(&root, Some([1; 32])).unwrap_err();
    assert_eq!(locked.status, DSTORE_LOCKED);
    let key = c("secret");
    // SAFETY: valid pointers; each node freed once.
    unsafe {
        assert_status(
            dstore_store(first, key.as_ptr(), b"x".as_ptr(), 1, true),
            DSTORE_OK,
            "",
        );
        dstore_free(first);
        let other = open_at(&root, Some([2; 32])).expect("the lock is released by dstore_free");
        let (mut out, mut len) = (null_mut(), 0);
        assert_status(
            dstore_get(other, key.as_ptr(), &mut out, &mut len),
            DSTORE_WRONG_KEY,
            "another data key",
        );
        dstore_free(other);
    }
}

#[test]
fn calls_from_inside_tokio_are_refused_not_panicking() {
    let t = TestNode::open();
    let key = c("k");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        let mut has = true;
        // SAFETY: valid pointers.
        let status = unsafe { dstore_has(t.node, key.as_ptr(), &mut has) };
        assert!(has, "untouched");
        status
    });
    assert_status(status, DSTORE_RUNTIME, "inside a tokio runtime");
}

#[test]
fn the_last_error_belongs_to_its_thread() {
    // SAFETY: NULL is refused.
    let status = unsafe { dstore_delete(null_mut(), c("k").as_ptr()) };
    assert_status(status, DSTORE_INVALID_ARGUMENT, "`node` is NULL");
    let elsewhere = std::thread::spawn(last_error).join().unwrap();
    assert_eq!(elsewhere, "");
    assert!(last_error().contains("`node` is NULL"), "still set here");
}

#[test]
fn one_node_serves_many_threads() {
    let t = TestNode::open();
    let node = t.node as usize; // raw pointers are not Send; the node is Sync
    std::thread::scope(|s| {
        for thread in 0..8 {
            s.spawn(move || {
                for i in 0..20 {
                    let key = c(&format!("t{thread}/{i}"));
                    let value = format!("value {thread} {i}");
                    let n = node as *mut dstore_node;
                    // SAFETY: valid pointers; the node outlives the scope.
                    unsafe {
                        let status =
                            dstore_store(n, key.as_ptr(), value.as_ptr(), value.len(), i % 2 == 0);
                        assert_status(status, DSTORE_OK, "");
                        let (mut out, mut len) = (null_mut(), 0);
                        assert_status(
                            dstore_get(n, key.as_ptr(), &mut out, &mut len),
                            DSTORE_OK,
                            "",
                        );
                        assert_eq!(std::slice::from_raw_parts(out, len), value.as_bytes());
                        dstore_bytes_free(out, len);
                    }
                }
            });
        }
    });
    let (mut keys, mut count) = (null_mut(), 0);
    // SAFETY: valid pointers; freed with the matching function.
    unsafe {
        assert_status(dstore_keys(t.node, &mut keys, &mut count), DSTORE_OK, "");
        dstore_keys_free(keys, count);
    }
    assert_eq!(count, 160);
}

// ---- clusters ------------------------------------------------------------------------------

/// Held by the tests that open cluster nodes, so that counting this process's node runtime
/// threads sees only one test's nodes.
static CLUSTER_NODES: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn cluster_lock() -> std::sync::MutexGuard<'static, ()> {
    CLUSTER_NODES.lock().unwrap_or_else(|e| e.into_inner())
}

/// `node_runtime_threads` once it reaches 0, or after 5 s: a runtime's threads have been
/// told to stop when its drop returns, and the kernel may list one for a moment longer.
fn runtime_threads_settled() -> usize {
    for _ in 0..50 {
        if node_runtime_threads() == 0 {
            return 0;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    node_runtime_threads()
}

/// Threads of this process whose name starts with "dstore-node": the cluster nodes' runtimes.
fn node_runtime_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter(|t| {
            let comm = std::fs::read_to_string(t.as_ref().unwrap().path().join("comm"));
            comm.is_ok_and(|c| c.starts_with("dstore-node"))
        })
        .count()
}

/// Opens a node on `root` with the cluster secret `secret` (and a fixed data key), after
/// `configure` has set its cluster options.
fn open_cluster_node(
    root: &std::path::Path,
    secret: &[u8],
    configure: impl FnOnce(*mut dstore_options),
) -> Result<*mut dstore_node> {
    // SAFETY: every pointer passed is valid.
    unsafe {
        let opts = dstore_options_new();
        let root = c(root.to_str().unwrap());
        assert_status(dstore_options_set_root(opts, root.as_ptr()), DSTORE_OK, "");
        let key = [7u8; 32];
        let status = dstore_options_set_data_key(opts, key.as_ptr(), key.len());
        assert_status(status, DSTORE_OK, "");
        let status = dstore_options_set_secret(opts, secret.as_ptr(), secret.len());
        assert_status(status, DSTORE_OK, "");
        configure(opts);
        let mut node = null_mut();
        let status = dstore_new(opts, &mut node);
        dstore_options_free(opts);
        match status {
            DSTORE_OK => Ok(node),
            s => Err(Failure::new(s, last_error())),
        }
    }
}

/// Calls a string setter and asserts its outcome.
#[track_caller]
fn set(
    setter: unsafe extern "C" fn(*mut dstore_options, *const c_char) -> dstore_status,
    opts: *mut dstore_options,
    value: &str,
    expected: dstore_status,
    mentions: &str,
) {
    let value = c(value);
    // SAFETY: `opts` is valid and `value` NUL-terminated.
    assert_status(unsafe { setter(opts, value.as_ptr()) }, expected, mentions);
}

#[test]
fn cluster_options_refuse_bad_input() {
    let bad_utf8 = CString::new(vec![b'h', 0xff, b':', b'1']).unwrap();
    type Setter = unsafe extern "C" fn(*mut dstore_options, *const c_char) -> dstore_status;
    let setters: [(Setter, &str); 4] = [
        (dstore_options_set_listen, "`addr`"),
        (dstore_options_set_advertise, "`addr`"),
        (dstore_options_add_peer, "`addr`"),
        (dstore_options_set_zone, "`zone`"),
    ];
    // SAFETY: every pointer is valid or deliberately NULL.
    unsafe {
        let opts = dstore_options_new();
        for (setter, name) in setters {
            let good = c("127.0.0.1:7000");
            assert_status(
                setter(null_mut(), good.as_ptr()),
                DSTORE_INVALID_ARGUMENT,
                "`opts` is NULL",
            );
            assert_status(
                setter(opts, null()),
                DSTORE_INVALID_ARGUMENT,
                &format!("{name} is NULL"),
            );
            assert_status(
                setter(opts, bad_utf8.as_ptr()),
                DSTORE_INVALID_ARGUMENT,
                &format!("{name} is not valid UTF-8 (bad byte at offset 1)"),
            );
            assert_status(setter(opts, c("").as_ptr()), DSTORE_INVALID_ARGUMENT, name);
            assert_status(setter(opts, good.as_ptr()), DSTORE_OK, "");
        }

        for addr in [dstore_options_set_listen, dstore_options_add_peer] {
            for (value, why) in [
                ("localhost", "no port"),
                (":7000", "no host"),
                ("host:", "not a number"),
                ("host:65536", "not a number"),
                ("host:-1", "not a number"),
                ("::1:7000", "IPv6 host goes in brackets"),
            ] {
                set(addr, opts, value, DSTORE_INVALID_ARGUMENT, why);
            }
            for value in ["localhost:7000", "[::1]:7000", "10.0.0.5:65535"] {
                set(addr, opts, value, DSTORE_OK, "");
            }
        }
        set(dstore_options_set_listen, opts, "0.0.0.0:0", DSTORE_OK, "");
        for addr in [dstore_options_add_peer, dstore_options_set_advertise] {
            set(addr, opts, "10.0.0.5:0", DSTORE_INVALID_ARGUMENT, "port 0");
        }

        for n in [0, 256, usize::MAX] {
            assert_status(
                dstore_options_set_replicas(opts, n),
                DSTORE_INVALID_ARGUMENT,
                &format!("`n` must be 1 to 255, not {n}"),
            );
        }
        assert_status(
            dstore_options_set_replicas(null_mut(), 3),
            DSTORE_INVALID_ARGUMENT,
            "`opts` is NULL",
        );
        for n in [1, 255] {
            assert_status(dstore_options_set_replicas(opts, n), DSTORE_OK, "");
        }
        assert_status(
            dstore_options_set_client(null_mut(), true),
            DSTORE_INVALID_ARGUMENT,
            "`opts` is NULL",
        );
        assert_status(dstore_options_set_client(opts, true), DSTORE_OK, "");
        dstore_options_free(opts);
    }
}

#[test]
fn options_that_do_not_go_together_are_refused_at_open() {
    let _serial = cluster_lock();
    let dir = tempfile::tempdir().unwrap();
    // SAFETY (closures): `opts` is valid.
    let client_listening = open_cluster_node(&dir.path().join("a"), b"s", |opts| unsafe {
        set(
            dstore_options_set_listen,
            opts,
            "127.0.0.1:0",
            DSTORE_OK,
            "",
        );
        set(dstore_options_add_peer, opts, "127.0.0.1:9", DSTORE_OK, "");
        assert_status(dstore_options_set_client(opts, true), DSTORE_OK, "");
    });
    let failure = client_listening.unwrap_err();
    assert_eq!(
        failure.status, DSTORE_INVALID_ARGUMENT,
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("dstore_new: "),
        "{}",
        failure.message
    );
    assert!(failure.message.contains("a client does not listen"));

    let member_without_listen = open_cluster_node(&dir.path().join("b"), b"s", |opts| {
        set(dstore_options_add_peer, opts, "127.0.0.1:9", DSTORE_OK, "");
    });
    let failure = member_without_listen.unwrap_err();
    assert_eq!(
        failure.status, DSTORE_INVALID_ARGUMENT,
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("listen address"),
        "{}",
        failure.message
    );
    assert_eq!(
        runtime_threads_settled(),
        0,
        "a failed open stops its runtime"
    );
}

#[test]
fn cluster_calls_check_their_arguments_and_a_standalone_node_has_no_cluster() {
    let t = TestNode::open();
    let mut buf = [0x55 as c_char; 64];
    let (mut peers, mut count, mut live) = (null_mut::<dstore_peer>(), 0usize, 9usize);
    // SAFETY: every pointer is valid or deliberately NULL.
    unsafe {
        let n = t.node;
        assert_status(
            dstore_node_addr(null(), buf.as_mut_ptr(), buf.len()),
            DSTORE_INVALID_ARGUMENT,
            "`node` is NULL",
        );
        assert_status(
            dstore_node_addr(n, null_mut(), 64),
            DSTORE_INVALID_ARGUMENT,
            "`buf` is NULL",
        );
        assert_status(
            dstore_node_addr(n, buf.as_mut_ptr(), buf.len()),
            DSTORE_NOT_FOUND,
            "not a cluster member",
        );
        assert!(buf.iter().all(|&b| b == 0x55), "outputs only on success");

        assert_status(
            dstore_peers(null_mut(), &mut peers, &mut count),
            DSTORE_INVALID_ARGUMENT,
            "`node` is NULL",
        );
        assert_status(
            dstore_peers(n, null_mut(), &mut count),
            DSTORE_INVALID_ARGUMENT,
            "`out` is NULL",
        );
        assert_status(
            dstore_peers(n, &mut peers, null_mut()),
            DSTORE_INVALID_ARGUMENT,
            "`out_count` is NULL",
        );
        assert!(peers.is_null() && count == 0, "outputs only on success");
        assert_status(dstore_peers(n, &mut peers, &mut count), DSTORE_OK, "");
        assert!(
            !peers.is_null() && count == 0,
            "an empty list still gets a pointer"
        );
        dstore_peers_free(peers, count);
        dstore_peers_free(null_mut(), 3);
        dstore_peers_free(null_mut(), usize::MAX);

        assert_status(
            dstore_settle(null_mut(), 10, &mut live),
            DSTORE_INVALID_ARGUMENT,
            "`node` is NULL",
        );
        assert_status(
            dstore_settle(n, 10, null_mut()),
            DSTORE_INVALID_ARGUMENT,
            "`out_peers` is NULL",
        );
        assert_eq!(live, 9, "outputs only on success");
        assert_status(dstore_settle(n, 10, &mut live), DSTORE_OK, "");
        assert_eq!(live, 0);
    }
}

/// The address of `node`, through a buffer of exactly the size it needs.
fn addr_of(node: *mut dstore_node) -> String {
    let mut buf = vec![0x55 as c_char; 256];
    // SAFETY: valid pointers; `buf` has room for 256 bytes.
    unsafe {
        assert_status(
            dstore_node_addr(node, buf.as_mut_ptr(), buf.len()),
            DSTORE_OK,
            "",
        );
        let addr = CStr::from_ptr(buf.as_ptr()).to_str().unwrap().to_owned();
        let needed = addr.len() + 1;
        buf.fill(0x55);
        assert_status(
            dstore_node_addr(node, buf.as_mut_ptr(), needed - 1),
            DSTORE_INVALID_ARGUMENT,
            &format!(
                "`buf_len` is {}; the address needs {needed} bytes",
                needed - 1
            ),
        );
        assert!(buf.iter().all(|&b| b == 0x55), "outputs only on success");
        assert_status(
            dstore_node_addr(node, buf.as_mut_ptr(), needed),
            DSTORE_OK,
            "",
        );
        assert_eq!(CStr::from_ptr(buf.as_ptr()).to_str().unwrap(), addr);
        addr
    }
}

fn peers_of(node: *mut dstore_node) -> Vec<(String, String, Option<String>)> {
    let (mut peers, mut count) = (null_mut(), 0);
    // SAFETY: valid pointers; the list is freed with its function.
    unsafe {
        assert_status(dstore_peers(node, &mut peers, &mut count), DSTORE_OK, "");
        let list = std::slice::from_raw_parts(peers, count)
            .iter()
            .map(|p: &dstore_peer| {
                let string = |s: *const c_char| CStr::from_ptr(s).to_str().unwrap().to_owned();
                let id = string(p.id.as_ptr());
                assert_eq!(id.len(), 64);
                let zone = (!p.zone.is_null()).then(|| string(p.zone));
                (id, string(p.addr), zone)
            })
            .collect();
        dstore_peers_free(peers, count);
        list
    }
}

fn node_id(node: *mut dstore_node) -> String {
    let mut buf = [0 as c_char; 65];
    // SAFETY: valid pointers.
    unsafe {
        assert_status(dstore_node_id(node, buf.as_mut_ptr(), 65), DSTORE_OK, "");
        CStr::from_ptr(buf.as_ptr()).to_str().unwrap().to_owned()
    }
}

#[test]
fn members_and_a_client_share_values_and_free_stops_everything() {
    let _serial = cluster_lock();
    let dir = tempfile::tempdir().unwrap();
    let secret = b"ffi test secret";
    // SAFETY (closures): `opts` is valid.
    let a = open_cluster_node(&dir.path().join("a"), secret, |opts| {
        set(
            dstore_options_set_listen,
            opts,
            "127.0.0.1:0",
            DSTORE_OK,
            "",
        );
    })
    .unwrap();
    let a_addr = addr_of(a);
    assert!(
        a_addr.starts_with("127.0.0.1:") && !a_addr.ends_with(":0"),
        "{a_addr}"
    );
    let b = open_cluster_node(&dir.path().join("b"), secret, |opts| {
        set(
            dstore_options_set_listen,
            opts,
            "127.0.0.1:0",
            DSTORE_OK,
            "",
        );
        set(dstore_options_add_peer, opts, &a_addr, DSTORE_OK, "");
        set(dstore_options_set_zone, opts, "rack-2", DSTORE_OK, "");
        // SAFETY: `opts` is valid.
        assert_status(
            unsafe { dstore_options_set_replicas(opts, 2) },
            DSTORE_OK,
            "",
        );
    })
    .unwrap();
    let b_addr = addr_of(b);
    let client = open_cluster_node(&dir.path().join("client"), secret, |opts| unsafe {
        set(dstore_options_add_peer, opts, &a_addr, DSTORE_OK, "");
        assert_status(dstore_options_set_client(opts, true), DSTORE_OK, "");
    })
    .unwrap();

    let mut live = 0;
    // SAFETY: valid pointers; nodes freed once each.
    unsafe {
        assert_status(dstore_settle(client, 20_000, &mut live), DSTORE_OK, "");
        assert_eq!(live, 2);
        let mut buf = [0x55 as c_char; 64];
        assert_status(
            dstore_node_addr(client, buf.as_mut_ptr(), buf.len()),
            DSTORE_NOT_FOUND,
            "(standalone, or a client)",
        );
        let seen_a = (node_id(a), a_addr.clone(), None);
        let seen_b = (node_id(b), b_addr.clone(), Some("rack-2".to_owned()));
        let mut expected = vec![seen_a, seen_b.clone()];
        expected.sort();
        assert_eq!(peers_of(client), expected, "in order of id, zones as set");
        assert_status(dstore_settle(a, 20_000, &mut live), DSTORE_OK, "");
        assert_eq!(peers_of(a), [seen_b], "a member does not list clients");

        let key = c("from/client");
        let status = dstore_store(client, key.as_ptr(), b"hello".as_ptr(), 5, true);
        assert_status(status, DSTORE_OK, "");
        let (mut out, mut len) = (null_mut(), 0);
        assert_status(
            dstore_get(b, key.as_ptr(), &mut out, &mut len),
            DSTORE_OK,
            "",
        );
        assert_eq!(std::slice::from_raw_parts(out, len), b"hello");
        dstore_bytes_free(out, len);

        assert!(node_runtime_threads() > 0);
        dstore_free(client);
        dstore_free(b);
        // The port is closed when dstore_free returns: nothing listens on it any more.
        std::net::TcpListener::bind(&b_addr).expect("b's port is free");
        dstore_free(a);
        std::net::TcpListener::bind(&a_addr).expect("a's port is free");
    }
    assert_eq!(runtime_threads_settled(), 0, "every node's runtime stopped");
}

#[test]
fn a_client_that_nobody_answers_is_unavailable() {
    let _serial = cluster_lock();
    let dir = tempfile::tempdir().unwrap();
    let member = open_cluster_node(&dir.path().join("m"), b"the secret", |opts| {
        set(
            dstore_options_set_listen,
            opts,
            "127.0.0.1:0",
            DSTORE_OK,
            "",
        );
    })
    .unwrap();
    let addr = addr_of(member);
    // SAFETY: valid pointers; nodes freed once each.
    unsafe {
        let wrong = open_cluster_node(&dir.path().join("w"), b"another secret", |opts| {
            set(dstore_options_add_peer, opts, &addr, DSTORE_OK, "");
            assert_status(dstore_options_set_client(opts, true), DSTORE_OK, "");
        })
        .unwrap();
        let mut live = 7;
        let started = std::time::Instant::now();
        assert_status(
            dstore_settle(wrong, 20_000, &mut live),
            DSTORE_UNAVAILABLE,
            "refused by the cluster",
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "at once"
        );
        assert_eq!(live, 7, "outputs only on success");
        dstore_free(wrong);
        dstore_free(member);

        // Nobody listens there any more.
        let lonely = open_cluster_node(&dir.path().join("l"), b"the secret", |opts| {
            set(dstore_options_add_peer, opts, &addr, DSTORE_OK, "");
            assert_status(dstore_options_set_client(opts, true), DSTORE_OK, "");
        })
        .unwrap();
        assert_status(
            dstore_settle(lonely, 300, &mut live),
            DSTORE_UNAVAILABLE,
            "no cluster member answered",
        );
        dstore_free(lonely);
    }
}

// ---- quorums, timeouts, maintenance and stats ----------------------------------------------

#[test]
fn maintenance_options_check_their_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let root = c(dir.path().join("root").to_str().unwrap());
    // SAFETY: every pointer is valid or deliberately NULL.
    unsafe {
        let n = null_mut();
        let null_opts = [
            dstore_options_set_write_quorum(n, 2),
            dstore_options_set_read_quorum(n, 2),
            dstore_options_set_timeouts_ms(n, 1000, 2000, 3000),
            dstore_options_set_repair_interval_ms(n, 1000),
            dstore_options_set_scrub(n, 1000, 1 << 20),
            dstore_options_set_gc_grace_ms(n, 1000, 2000),
        ];
        for status in null_opts {
            assert_eq!(status, DSTORE_INVALID_ARGUMENT);
        }
        assert!(last_error().contains("dstore_options_set_gc_grace_ms: `opts` is NULL"));

        let opts = dstore_options_new();
        assert_status(dstore_options_set_root(opts, root.as_ptr()), DSTORE_OK, "");
        let config = |opts: *mut dstore_options| (*opts).config().expect("a root is set");
        let defaults = config(opts);
        assert_eq!((defaults.write_quorum, defaults.read_quorum), (None, None));

        for setter in [
            dstore_options_set_write_quorum,
            dstore_options_set_read_quorum,
        ] {
            assert_status(
                setter(opts, 256),
                DSTORE_INVALID_ARGUMENT,
                "`n` must be 0 (a majority) or 1 to the replica count",
            );
            assert_status(setter(opts, 2), DSTORE_OK, "");
        }
        assert_eq!(config(opts).write_quorum, Some(2));
        assert_eq!(config(opts).read_quorum, Some(2));
        assert_status(dstore_options_set_read_quorum(opts, 0), DSTORE_OK, "");
        assert_eq!(config(opts).read_quorum, None, "0 is back to a majority");

        // 0 keeps a timeout as it is; the dead timeout may not be the shorter one.
        let ms = std::time::Duration::from_millis;
        let timeouts = |opts| {
            let t = config(opts).timeouts;
            (t.suspect_after, t.dead_after, t.call)
        };
        assert_status(dstore_options_set_timeouts_ms(opts, 0, 0, 0), DSTORE_OK, "");
        assert_eq!(
            timeouts(opts),
            (
                defaults.timeouts.suspect_after,
                defaults.timeouts.dead_after,
                defaults.timeouts.call
            )
        );
        assert_status(
            dstore_options_set_timeouts_ms(opts, 500, 1500, 700),
            DSTORE_OK,
            "",
        );
        assert_eq!(timeouts(opts), (ms(500), ms(1500), ms(700)));
        assert_status(
            dstore_options_set_timeouts_ms(opts, 0, 400, 0),
            DSTORE_INVALID_ARGUMENT,
            "dead_after (0.4 s) must not be shorter than suspect_after (0.5 s)",
        );
        assert_status(
            dstore_options_set_timeouts_ms(opts, 2000, 0, 0),
            DSTORE_INVALID_ARGUMENT,
            "dead_after (1.5 s) must not be shorter than suspect_after (2 s)",
        );
        assert_eq!(
            timeouts(opts),
            (ms(500), ms(1500), ms(700)),
            "a refused call changes nothing"
        );
        assert_status(
            dstore_options_set_timeouts_ms(opts, 1500, 0, 0),
            DSTORE_OK,
            "",
        );
        assert_eq!(timeouts(opts), (ms(1500), ms(1500), ms(700)));

        assert_status(
            dstore_options_set_repair_interval_ms(opts, 250),
            DSTORE_OK,
            "",
        );
        assert_status(dstore_options_set_scrub(opts, 60_000, 0), DSTORE_OK, "");
        assert_status(
            dstore_options_set_gc_grace_ms(opts, 10, u64::MAX),
            DSTORE_OK,
            "",
        );
        let m = config(opts).maintenance;
        assert_eq!(m.repair_interval, ms(250));
        assert_eq!(m.repair_rate, defaults.maintenance.repair_rate, "untouched");
        assert_eq!((m.scrub_interval, m.scrub_rate), (ms(60_000), 0));
        assert_eq!((m.gc_grace, m.tombstone_grace), (ms(10), ms(u64::MAX)));
        dstore_options_free(opts);
    }
}

#[test]
fn a_quorum_larger_than_the_replica_count_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = c(dir.path().join("root").to_str().unwrap());
    // SAFETY: every pointer is valid.
    unsafe {
        let open = |configure: &dyn Fn(*mut dstore_options)| {
            let opts = dstore_options_new();
            assert_status(dstore_options_set_root(opts, root.as_ptr()), DSTORE_OK, "");
            configure(opts);
            let mut node = null_mut();
            let status = dstore_new(opts, &mut node);
            let message = last_error();
            dstore_options_free(opts);
            (status, node, message)
        };
        let (status, node, message) = open(&|opts| {
            assert_status(dstore_options_set_write_quorum(opts, 4), DSTORE_OK, "");
        });
        assert_eq!(status, DSTORE_INVALID_ARGUMENT, "{message}");
        assert!(node.is_null(), "outputs only on success");
        assert!(message.contains("dstore_new: "), "{message}");
        assert!(message.contains("write quorum must be 1 to replicas (3)"));

        let (status, node, message) = open(&|opts| {
            assert_status(dstore_options_set_replicas(opts, 1), DSTORE_OK, "");
            assert_status(dstore_options_set_read_quorum(opts, 2), DSTORE_OK, "");
        });
        assert_eq!(status, DSTORE_INVALID_ARGUMENT, "{message}");
        assert!(node.is_null());
        assert!(message.contains("read quorum must be 1 to replicas (1)"));

        let (status, node, message) = open(&|opts| {
            assert_status(dstore_options_set_write_quorum(opts, 3), DSTORE_OK, "");
            assert_status(dstore_options_set_read_quorum(opts, 1), DSTORE_OK, "");
        });
        assert_eq!(status, DSTORE_OK, "{message}");
        dstore_free(node);
    }
}

/// The stats of `node`, through the C call.
fn stats_of(node: *const dstore_node) -> dstore_stats {
    let mut stats = dstore_stats::default();
    // SAFETY: valid pointers; `stats` has the size passed.
    let status = unsafe { dstore_node_stats(node, &mut stats, size_of::<dstore_stats>()) };
    assert_status(status, DSTORE_OK, "");
    stats
}

#[test]
fn stats_check_their_arguments_and_count_what_a_standalone_node_does() {
    let t = TestNode::open();
    let size = size_of::<dstore_stats>();
    let mut untouched = dstore_stats {
        keys: 77,
        repair_running: true,
        gc_tombstones_collected: 78,
        ..dstore_stats::default()
    };
    let before = untouched;
    // SAFETY: every pointer is valid or deliberately NULL; the sizes are refused before
    // anything is written.
    unsafe {
        assert_status(
            dstore_node_stats(null(), &mut untouched, size),
            DSTORE_INVALID_ARGUMENT,
            "`node` is NULL",
        );
        assert_status(
            dstore_node_stats(t.node, null_mut(), size),
            DSTORE_INVALID_ARGUMENT,
            "`out` is NULL",
        );
        for wrong in [0, 8, size - 1, size + 8, usize::MAX] {
            assert_status(
                dstore_node_stats(t.node, &mut untouched, wrong),
                DSTORE_INVALID_ARGUMENT,
                &format!("`stats_size` is {wrong}; pass sizeof(dstore_stats), which is {size}"),
            );
        }
    }
    assert_eq!(untouched, before, "outputs are written only on success");

    assert_eq!(
        stats_of(t.node),
        dstore_stats::default(),
        "a new node: all zero"
    );
    let (a, b) = (c("a"), c("b"));
    // SAFETY: valid pointers.
    unsafe {
        let value = [7u8; 100];
        assert_status(
            dstore_store(t.node, a.as_ptr(), value.as_ptr(), 100, true),
            DSTORE_OK,
            "",
        );
        assert_status(
            dstore_store(t.node, b.as_ptr(), value.as_ptr(), 10, false),
            DSTORE_OK,
            "",
        );
        let (mut out, mut len) = (null_mut(), 0);
        assert_status(
            dstore_get(t.node, a.as_ptr(), &mut out, &mut len),
            DSTORE_OK,
            "",
        );
        dstore_bytes_free(out, len);
    }
    assert_eq!(
        stats_of(t.node),
        dstore_stats {
            keys: 2,
            chunks: 0, // values this small are kept in their manifests
            bytes_stored: 110,
            bytes_read: 100,
            ..dstore_stats::default()
        },
        "a standalone node does no background work"
    );
}

/// Polls `cond` on the stats of `node` for up to 20 seconds.
#[track_caller]
fn wait_for_stats(node: *mut dstore_node, what: &str, cond: impl Fn(&dstore_stats) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let stats = stats_of(node);
        if cond(&stats) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}; stats: {stats:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn maintenance_settings_reach_a_member_and_its_stats_report_the_work() {
    let _serial = cluster_lock();
    let dir = tempfile::tempdir().unwrap();
    // SAFETY (closure): `opts` is valid.
    let member = open_cluster_node(&dir.path().join("m"), b"secret", |opts| unsafe {
        set(
            dstore_options_set_listen,
            opts,
            "127.0.0.1:0",
            DSTORE_OK,
            "",
        );
        assert_status(
            dstore_options_set_repair_interval_ms(opts, 100),
            DSTORE_OK,
            "",
        );
        assert_status(dstore_options_set_scrub(opts, 100, 0), DSTORE_OK, "");
        assert_status(dstore_options_set_scrub(opts, 100, 1 << 30), DSTORE_OK, "");
        assert_status(dstore_options_set_gc_grace_ms(opts, 0, 0), DSTORE_OK, "");
    })
    .unwrap();
    let key = c("doomed");
    // SAFETY: valid pointers.
    unsafe {
        let value = [3u8; 20_000]; // past the inline limit: a chunk
        let status = dstore_store(member, key.as_ptr(), value.as_ptr(), value.len(), true);
        assert_status(status, DSTORE_OK, "");
    }
    // With the defaults (30 s, 1 h) there would be one pass of each in this time.
    wait_for_stats(member, "several repair passes and scrubs", |s| {
        s.repair_passes >= 3 && s.scrub_passes >= 3 && s.scrub_objects > 0 && s.scrub_bytes > 0
    });
    let stats = stats_of(member);
    assert_eq!((stats.scrub_bad, stats.scrub_restored), (0, 0));
    // SAFETY: valid pointers.
    unsafe { assert_status(dstore_delete(member, key.as_ptr()), DSTORE_OK, "") };
    // With no grace, the chunk that nothing names and the tombstone go on the next passes.
    wait_for_stats(member, "the chunk and the tombstone collected", |s| {
        s.gc_chunks_collected >= 1 && s.gc_tombstones_collected >= 1 && s.chunks == 0
    });
    // SAFETY: from dstore_new, freed once.
    unsafe { dstore_free(member) };
    assert_eq!(runtime_threads_settled(), 0);
}

/// dstore_close and dstore_leave say how the hand-off went; the handle stays valid for
/// dstore_free, and every other call on it is DSTORE_CLOSED.
#[test]
fn close_and_leave_report_the_hand_off() {
    let _serial = cluster_lock();
    let dir = tempfile::tempdir().unwrap();
    let secret = b"ffi drain secret";
    let member = |name: &str, peer: Option<&str>| {
        open_cluster_node(&dir.path().join(name), secret, |opts| {
            set(
                dstore_options_set_listen,
                opts,
                "127.0.0.1:0",
                DSTORE_OK,
                "",
            );
            if let Some(p) = peer {
                set(dstore_options_add_peer, opts, p, DSTORE_OK, "");
            }
            // SAFETY: `opts` is valid.
            unsafe {
                assert_status(
                    dstore_options_set_drain_timeout_ms(opts, 0),
                    DSTORE_INVALID_ARGUMENT,
                    "at least 1 ms",
                );
                assert_status(
                    dstore_options_set_drain_timeout_ms(opts, 5_000),
                    DSTORE_OK,
                    "",
                );
            }
        })
        .unwrap()
    };
    let a = member("a", None);
    let a_addr = addr_of(a);
    let b = member("b", Some(&a_addr));
    let w = member("w", Some(&a_addr));
    // SAFETY: valid pointers; each node freed once.
    unsafe {
        assert_status(dstore_close(null_mut()), DSTORE_INVALID_ARGUMENT, "`node`");
        assert_status(dstore_leave(null_mut()), DSTORE_INVALID_ARGUMENT, "`node`");
        for n in [a, b, w] {
            wait_for_peers(n, 2);
        }
        let key = c("k");
        assert_status(
            dstore_store(w, key.as_ptr(), b"v".as_ptr(), 1, true),
            DSTORE_OK,
            "",
        );
        // `b` leaves for good; `a` and `w` stop counting it at once.
        assert_status(dstore_leave(b), DSTORE_OK, "");
        let (mut out, mut len) = (null_mut(), 0);
        assert_status(
            dstore_get(b, key.as_ptr(), &mut out, &mut len),
            DSTORE_CLOSED,
            "closed",
        );
        assert_eq!(peers_of(a).len(), 1);
        dstore_free(b);
        // `a` closes, then `w`: the whole cluster stops, which keeps what it holds in the
        // roots (a hand-off that fails is tested in dstore-core/tests/churn.rs).
        assert_status(dstore_close(a), DSTORE_OK, "");
        assert_status(dstore_close(a), DSTORE_OK, "");
        assert_status(dstore_close(w), DSTORE_OK, "");
        let (mut out, mut len) = (null_mut(), 0);
        assert_status(
            dstore_get(w, key.as_ptr(), &mut out, &mut len),
            DSTORE_CLOSED,
            "closed",
        );
        dstore_free(a);
        dstore_free(w);
    }
    // A standalone node has no cluster to leave.
    let lone = open_at(&dir.path().join("lone"), None).unwrap();
    // SAFETY: valid pointer, freed once.
    unsafe {
        assert_status(dstore_leave(lone), DSTORE_INVALID_ARGUMENT, "member");
        assert_status(dstore_close(lone), DSTORE_OK, "");
        dstore_free(lone);
    }
}

fn wait_for_peers(node: *mut dstore_node, n: usize) {
    for _ in 0..200 {
        if peers_of(node).len() == n {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("never saw {n} peers");
}
