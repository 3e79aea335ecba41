//! The `dstore` binary, run as a user would.

use std::process::{Command, Output};

fn dstore(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dstore"));
    cmd.args(args)
        .env_remove("DSTORE_KEY")
        .env_remove("DSTORE_ROOT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run dstore")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn put_get_ls_rm_status() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let root = root.to_str().unwrap();
    let input = dir.path().join("in.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 / 3) as u8).collect();
    std::fs::write(&input, &data).unwrap();

    ok(dstore(
        &["put", "--root", root, "a/b.bin", input.to_str().unwrap()],
        &[],
    ));
    ok(dstore(
        &[
            "put",
            "--root",
            root,
            "--plain",
            "plain.bin",
            input.to_str().unwrap(),
        ],
        &[],
    ));
    assert_eq!(
        ok(dstore(&["ls", "--root", root], &[])),
        "a/b.bin\nplain.bin\n"
    );

    let output = dir.path().join("out.bin");
    ok(dstore(
        &[
            "get",
            "--root",
            root,
            "a/b.bin",
            "-o",
            output.to_str().unwrap(),
        ],
        &[],
    ));
    assert_eq!(std::fs::read(&output).unwrap(), data);
    // To a pipe, on standard output.
    let piped = dstore(&["get", "--root", root, "plain.bin"], &[]);
    assert!(piped.status.success());
    assert_eq!(piped.stdout, data);
    // Ranges: to a pipe and to a file; a length past the end is cut off.
    let range = dstore(
        &[
            "get", "--root", root, "a/b.bin", "--offset", "1048570", "--length", "20",
        ],
        &[],
    );
    assert!(range.status.success());
    assert_eq!(range.stdout, data[1_048_570..1_048_590]);
    ok(dstore(
        &[
            "get",
            "--root",
            root,
            "plain.bin",
            "--offset",
            "2999990",
            "--length",
            "1000",
            "-o",
            output.to_str().unwrap(),
        ],
        &[],
    ));
    assert_eq!(std::fs::read(&output).unwrap(), data[2_999_990..]);

    let status = ok(dstore(&["status", "--root", root], &[]));
    assert!(status.contains("keys     2"), "{status}");

    ok(dstore(&["rm", "--root", root, "a/b.bin"], &[]));
    assert_eq!(ok(dstore(&["ls", "--root", root], &[])), "plain.bin\n");
    let missing = dstore(
        &[
            "get",
            "--root",
            root,
            "a/b.bin",
            "-o",
            output.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
}

#[test]
fn data_key_from_environment() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let root = root.to_str().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, b"secret words").unwrap();
    let key_a = "11".repeat(32);
    let key_b = "22".repeat(32);
    ok(dstore(
        &["put", "--root", root, "k", input.to_str().unwrap()],
        &[("DSTORE_KEY", &key_a)],
    ));
    let wrong = dstore(&["get", "--root", root, "k"], &[("DSTORE_KEY", &key_b)]);
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("another data key"));
    let right = dstore(&["get", "--root", root, "k"], &[("DSTORE_KEY", &key_a)]);
    assert_eq!(right.stdout, b"secret words");
    let bad = dstore(&["ls", "--root", root], &[("DSTORE_KEY", "xyz")]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("64 hex digits"));
}

#[test]
fn demo_runs_and_checks_every_step() {
    let out = ok(dstore(&["demo"], &[]));
    assert!(out.contains("Everything above was checked"), "{out}");
}

#[test]
fn a_second_process_on_a_root_in_use_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    // This test process holds the root open (a node from the core library)...
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let node = runtime
        .block_on(dstore_core::Node::open(dstore_core::Config::new(&root)))
        .unwrap();
    // ...so the dstore process is refused, and says why.
    let out = dstore(&["ls", "--root", root.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("locked by another node"), "{stderr}");
    drop(node);
    ok(dstore(&["ls", "--root", root.to_str().unwrap()], &[]));
}

#[test]
fn a_relative_root_works() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), b"relative").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dstore"))
        .current_dir(dir.path())
        .args(["put", "--root", "rel/root", "k", "in.txt"])
        .env_remove("DSTORE_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("rel/root/node.key").is_file());
}

/// Issue 9, item 11: `dstore ls` printed keys raw, so a key holding a newline showed as two
/// keys (one of them forged). Control characters and backslashes are escaped now.
#[test]
fn ls_escapes_keys_that_would_forge_lines() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let root = root.to_str().unwrap();
    let input = dir.path().join("in.bin");
    std::fs::write(&input, b"x").unwrap();
    for key in ["plain", "evil\nforged", "back\\slash"] {
        ok(dstore(
            &["put", "--root", root, key, input.to_str().unwrap()],
            &[],
        ));
    }
    let listed = ok(dstore(&["ls", "--root", root], &[]));
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        ["back\\\\slash", "evil\\nforged", "plain"]
    );
}

/// Issue 9, item 11: the rules of a configuration lived in the C and Python bindings, so
/// `dstore node` took a dead timeout shorter than the suspect one, a zero call timeout, or
/// a peer that is not an address. The core checks them now, for every surface.
#[test]
fn node_refuses_settings_that_break_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let root = root.to_str().unwrap();
    let secret = [("DSTORE_SECRET", "s")];
    for (flags, message) in [
        (
            &["--suspect-after-ms", "5000", "--dead-after-ms", "1000"][..],
            "must not be shorter than suspect_after",
        ),
        (
            &["--call-timeout-ms", "0"][..],
            "call_timeout must be longer than 0",
        ),
        (&["--peer", "nohost"][..], "is not an address"),
    ] {
        let mut args = vec!["node", "--root", root, "--listen", "127.0.0.1:0"];
        args.extend_from_slice(flags);
        let out = dstore(&args, &secret);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(message),
            "{flags:?}: {stderr}"
        );
    }
}

/// What scripts rely on: stdin as input, a listing in JSON, distinct exit statuses, no root
/// made up when none is given, and a timeout.
#[test]
fn scripts_get_stdin_json_exit_codes_and_timeouts() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let root = root.to_str().unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut put = Command::new(env!("CARGO_BIN_EXE_dstore"))
        .args(["put", "--root", root, "from/stdin", "-"])
        .env_remove("DSTORE_KEY")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    put.stdin.take().unwrap().write_all(&data).unwrap();
    assert!(put.wait().unwrap().success());
    let got = dstore(&["get", "--root", root, "from/stdin"], &[]);
    assert_eq!(got.stdout, data);
    ok(dstore(
        &["put", "--root", root, "--plain", "tiny", "-"],
        &[],
    ));

    let listing: serde_json::Value =
        serde_json::from_str(&ok(dstore(&["ls", "--root", root, "--json"], &[]))).unwrap();
    let entries = listing.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["key"], "from/stdin");
    assert_eq!(entries[0]["size"], 200_000);
    assert_eq!(entries[0]["encrypted"], true);
    assert_eq!(entries[0]["redundancy"], "replicas");
    assert_eq!(entries[1]["key"], "tiny");
    assert_eq!(entries[1]["size"], 0);
    assert!(entries[1]["version"].as_u64().unwrap() > entries[0]["version"].as_u64().unwrap());
    let empty = ok(dstore(
        &["ls", "--root", root, "--json", "--prefix", "nothing/"],
        &[],
    ));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&empty).unwrap(),
        serde_json::json!([])
    );

    let code = |out: Output| {
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (status, stderr) = code(dstore(&["get", "--root", root, "missing"], &[]));
    assert_eq!(status, Some(3), "{stderr}");
    let (status, stderr) = code(dstore(&["ls"], &[]));
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("--root"), "{stderr}");
    assert!(!std::path::Path::new("dstore-data").exists());
    let (status, _) = code(dstore(&["get", "--root", root, ""], &[]));
    assert_eq!(status, Some(2));
    let (status, _) = code(dstore(&["put", "--root", root, "k", "/no/such/file"], &[]));
    assert_eq!(status, Some(7));
    let (status, _) = code(dstore(&["nonsense"], &[]));
    assert_eq!(status, Some(2));
    // Another data key: 4.
    let other = "11".repeat(32);
    let (status, stderr) = code(dstore(
        &["get", "--root", root, "from/stdin"],
        &[("DSTORE_KEY", &other)],
    ));
    assert_eq!(status, Some(4), "{stderr}");
    // Nobody answers at that address: unavailable (5) within the timeout, not the default wait.
    let started = std::time::Instant::now();
    let (status, stderr) = code(dstore(
        &["ls", "--peer", "127.0.0.1:9", "--timeout", "1"],
        &[("DSTORE_SECRET", "s")],
    ));
    assert_eq!(status, Some(5), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
}

#[test]
fn completions_and_a_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(dstore(&["completions", shell], &[]));
        assert!(
            script.contains("dstore") && script.contains("offset"),
            "{shell}"
        );
    }
    let man = ok(dstore(&["man"], &[]));
    assert!(man.contains(".TH dstore"), "{man}");
}
