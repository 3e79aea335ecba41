//! Storage node processes started by `demo` and `bench`: `dstore node` run from this same
//! binary, with the address it printed, killed when the guard is dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::AnyResult;

/// Failure detection and repair in seconds rather than the defaults' tens of seconds, for the
/// demo and the repair bench: as `dstore node` flags, and (`fast`) for a node in this process.
pub const FAST: [&str; 6] = [
    "--suspect-after-ms",
    "1000",
    "--dead-after-ms",
    "3000",
    "--repair-interval-ms",
    "1000",
];

pub fn fast(c: &mut dstore_core::Config) {
    use std::time::Duration;
    c.timeouts.suspect_after = Duration::from_secs(1);
    c.timeouts.dead_after = Duration::from_secs(3);
    c.maintenance.repair_interval = Duration::from_secs(1);
}

/// The storage node processes; killed when dropped, so no error path leaves one running.
pub struct Processes(pub Vec<(Child, String)>);

impl Drop for Processes {
    fn drop(&mut self) {
        for (child, _) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `dstore node` (with `extra` flags) and returns it with the address it printed.
pub fn spawn_node(
    root: &Path,
    peer: Option<&str>,
    secret: &str,
    key: &str,
    extra: &[&str],
) -> AnyResult<(Child, String)> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["node", "--listen", "127.0.0.1:0", "--root"])
        .arg(root)
        .args(extra)
        .env("DSTORE_SECRET", secret)
        .env("DSTORE_KEY", key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(p) = peer {
        cmd.args(["--peer", p]);
    }
    let mut child = cmd.spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    match line.trim().rsplit_once(" listening on ") {
        Some((_, addr)) => Ok((child, addr.to_owned())),
        None => {
            let _ = child.kill();
            Err(format!("a node did not start: {line:?}").into())
        }
    }
}
