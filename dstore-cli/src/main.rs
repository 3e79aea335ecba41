//! `dstore`: the command for storage nodes and for humans.
//!
//! - `dstore node` runs a storage node until SIGTERM or Ctrl-C.
//! - `put`, `get`, `rm`, `ls`, `status` work on a cluster, joined through `--peer` as a
//!   short-lived client that never owns data, or directly on a local root with `--root`.
//! - `demo` shows a local cluster at work; `bench` measures one.

mod bench;
mod config;
mod demo;
mod procs;
mod progress;
mod serve_metrics;
mod status;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use dstore_core::{Config, Ended, Node, Redundancy, StoreOptions};
use tokio::io::AsyncRead;

use config::{FileConfig, SecretArgs, Tuning};
use progress::Progress;

#[derive(Parser)]
#[command(
    name = "dstore",
    version,
    about = "A content-addressed, encrypted file store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Runs a storage node.
#[derive(clap::Args, Debug)]
struct NodeArgs {
    /// The storage root (created if missing).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Address to listen on for peers, HOST:PORT (port 0 picks a free one).
    #[arg(long)]
    listen: Option<String>,
    /// A cluster member to join through; repeat for more.
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Copies of every chunk and manifest [default: 3].
    #[arg(long)]
    replicas: Option<usize>,
    /// Keep values erasure-coded, K+M (as 4+2): K data and M parity shards per chunk on K+M
    /// members, instead of replicas [default: replicas].
    #[arg(long, value_name = "K+M")]
    erasure: Option<String>,
    /// Failure-domain label; owners are spread over zones.
    #[arg(long)]
    zone: Option<String>,
    /// The address peers should dial, if not the listen address.
    #[arg(long)]
    advertise: Option<String>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics and a health check at /health
    /// (200 while serving, 503 once closing).
    #[arg(long, value_name = "HOST:PORT")]
    metrics_listen: Option<String>,
    /// A TOML file with any of: root, listen, advertise, peers, replicas, erasure, zone,
    /// metrics_listen, key_file, secret_file, and a [tuning] table. Flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    secrets: SecretArgs,
    #[command(flatten)]
    tuning: Tuning,
    /// Shift this node's clock by MS milliseconds (may be negative): for tests of clock skew.
    #[arg(long, hide = true, allow_negative_numbers = true, default_value_t = 0)]
    clock_offset_ms: i64,
}

/// What a client command works on: a cluster (`--peer` or a config file's peers) or a local
/// root (`--root`).
#[derive(clap::Args, Debug)]
struct Target {
    /// Use this storage root directly, without a network.
    #[arg(long, env = "DSTORE_ROOT")]
    root: Option<PathBuf>,
    /// A cluster member to reach the cluster through; repeat for more.
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// A TOML file (as for `dstore node`); its peers, replicas and secret files are used.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The cluster's replicas setting, so that this client places data as its members do
    /// [default: 3].
    #[arg(long)]
    replicas: Option<usize>,
    #[command(flatten)]
    secrets: SecretArgs,
    /// Give up after this many seconds (exit status 5) [default: wait; for `leave`, 3600].
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
    /// Shift this client's clock by MS milliseconds (may be negative): for tests of clock skew.
    #[arg(long, hide = true, allow_negative_numbers = true, default_value_t = 0)]
    clock_offset_ms: i64,
}

#[derive(Subcommand)]
enum Command {
    /// Run a storage node until SIGTERM or Ctrl-C.
    Node(Box<NodeArgs>),
    /// Store FILE under KEY.
    Put {
        #[command(flatten)]
        target: Target,
        /// The key: 1 to 1024 bytes of UTF-8, no NUL.
        key: String,
        /// The file to store; `-` reads standard input.
        file: PathBuf,
        /// Store without encryption (still authenticated and hash-checked).
        #[arg(long)]
        plain: bool,
        /// Keep it erasure-coded, K+M (as 4+2), or `replicas` [default: the config file's
        /// erasure, else replicas].
        #[arg(long, value_name = "K+M")]
        erasure: Option<String>,
    },
    /// Read KEY to FILE (or to standard output).
    Get {
        #[command(flatten)]
        target: Target,
        /// The key to read.
        key: String,
        /// Write the value to this file (atomically: it never holds part of the value)
        /// instead of to stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Start this many bytes into the value.
        #[arg(long, value_name = "BYTES")]
        offset: Option<u64>,
        /// Read at most this many bytes (fewer if the value ends first).
        #[arg(long, value_name = "BYTES")]
        length: Option<u64>,
    },
    /// Delete KEY.
    Rm {
        #[command(flatten)]
        target: Target,
        /// The key to delete.
        key: String,
    },
    /// List the keys.
    Ls {
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Print a JSON array of objects (key, size, version, writer, modified_ms, encrypted,
        /// redundancy) instead of one key per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Show the node or cluster: ids, members, counts, and each member's repair, scrub and
    /// garbage-collection progress.
    Status {
        #[command(flatten)]
        target: Target,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Ask the member at --peer to leave the cluster for good: it hands everything it holds
    /// to the other members, departs, and exits. Afterwards its root can be deleted.
    Leave {
        #[command(flatten)]
        target: Target,
    },
    /// Print the client credential of the cluster (from DSTORE_SECRET or --secret-file):
    /// what client machines use instead of the secret. It lets them read and write, but not
    /// be a member, answer or ask members' questions, or ask a member to leave.
    ClientCredential {
        #[command(flatten)]
        secrets: config::SecretArgs,
    },
    /// Print a completion script for SHELL (bash, zsh, fish, elvish, powershell) to
    /// standard output, e.g. `dstore completions bash > /etc/bash_completion.d/dstore`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to standard output, e.g. `dstore man | man -l -`.
    Man,
    /// Start a local cluster and show, in plain words, what dstore does.
    Demo,
    /// Measure store and get throughput against this machine's limits.
    Bench(bench::Args),
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    init_logging();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("starting the tokio runtime");
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dstore: {e}");
            ExitCode::from(exit_code(e.as_ref()))
        }
    }
}

/// The exit status of a failed command (the README's table): scripts tell apart what they
/// can act on. Usage errors are 2, as clap's own are.
fn exit_code(e: &(dyn std::error::Error + 'static)) -> u8 {
    use dstore_core::Error as E;
    if let Some(e) = e.downcast_ref::<E>() {
        return match e {
            E::InvalidArgument(_) => EXIT_USAGE,
            E::NotFound(_) => 3,
            E::WrongKey(_) => 4,
            E::Unavailable(why) if why.starts_with(dstore_core::REFUSED) => 4,
            E::Unavailable(_) | E::Closed => 5,
            E::Integrity(_) => 6,
            E::Io { .. } | E::Locked(_) => 7,
        };
    }
    if e.downcast_ref::<std::io::Error>().is_some() {
        return 7;
    }
    if e.downcast_ref::<Usage>().is_some() {
        return EXIT_USAGE;
    }
    1
}

const EXIT_USAGE: u8 = 2;

/// A command given what it cannot work with (exit status 2).
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

fn usage(message: impl Into<String>) -> Box<dyn std::error::Error> {
    Box::new(Usage(message.into()))
}

/// glibc gives each thread that allocates under contention an arena of its own, up to 8 per
/// core, and freed chunk buffers stay in them: node RSS in the cluster bench (3 replicas,
/// 256 MiB values) was 72 to 94 MiB with the default, 51 to 62 MiB with two (README).
/// Called before any thread starts; `MALLOC_ARENA_MAX` in the environment still decides.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// Logs go to stderr, filtered by DSTORE_LOG (e.g. `DSTORE_LOG=debug`); warnings by default.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DSTORE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

type AnyResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// How long a client waits for the cluster to answer before giving up.
const CLIENT_SETTLE: Duration = Duration::from_secs(10);
/// Keys `dstore ls` asks for at a time.
const LS_PAGE: usize = 1000;

/// Opens what `target` names: a client of the cluster, or the local root. The temp dir of a
/// client (it keeps nothing) lives as long as the node.
async fn open(target: &Target, needs_key: bool) -> AnyResult<(Node, Option<tempfile::TempDir>)> {
    let file = FileConfig::load(target.config.as_deref())?;
    let peers = if target.peers.is_empty() {
        file.peers.clone()
    } else {
        target.peers.clone()
    };
    let data_key = config::data_key(&target.secrets, &file)?;
    let secret = config::secret(&target.secrets, &file)?;
    if peers.is_empty() {
        let root = target.root.clone().or(file.root).ok_or_else(|| {
            usage(
                "no storage root and no cluster: give --root (or DSTORE_ROOT, or root in \
                 --config) for a local root, or --peer for a cluster",
            )
        })?;
        let mut c = Config::new(root);
        c.data_key = data_key;
        c.secret = secret;
        c.accept_unsealed = target.secrets.accept_unsealed;
        return Ok((Node::open(c).await?, None));
    }
    let secret = secret.ok_or_else(|| {
        usage("joining a cluster needs its secret: set DSTORE_SECRET or --secret-file")
    })?;
    if needs_key && data_key.is_none() {
        return Err(usage(
            "encrypting needs the data key: set DSTORE_KEY or --key-file (or store with --plain)",
        ));
    }
    let scratch = tempfile::tempdir()?;
    let mut c = Config::new(scratch.path());
    c.client = true;
    c.clock_offset_ms = target.clock_offset_ms;
    c.replicas = target.replicas.or(file.replicas).unwrap_or(3);
    c.erasure = config::erasure(None, &file)?;
    c.peers = peers;
    c.secret = Some(secret);
    c.data_key = data_key;
    c.accept_unsealed = target.secrets.accept_unsealed;
    let node = Node::open(c).await?;
    node.settle(CLIENT_SETTLE).await?;
    Ok((node, Some(scratch)))
}

/// Runs `command`, within its `--timeout` if it has one.
async fn run(command: Command) -> AnyResult {
    let limit = match &command {
        Command::Put { target, .. }
        | Command::Get { target, .. }
        | Command::Rm { target, .. }
        | Command::Ls { target, .. }
        | Command::Status { target, .. } => target.timeout,
        Command::Leave { target } => Some(target.timeout.unwrap_or(3600.0)),
        _ => None,
    };
    let Some(seconds) = limit else {
        return run_command(command).await;
    };
    let limit = Duration::try_from_secs_f64(seconds).map_err(|_| {
        usage(format!(
            "--timeout must be a number of seconds, not {seconds}"
        ))
    })?;
    match tokio::time::timeout(limit, run_command(command)).await {
        Ok(done) => done,
        Err(_) => Err(Box::new(dstore_core::Error::Unavailable(format!(
            "gave up after --timeout {seconds} s"
        )))),
    }
}

async fn run_command(command: Command) -> AnyResult {
    match command {
        Command::Node(args) => run_node(*args).await?,
        Command::Put {
            target,
            key,
            file,
            plain,
            erasure,
        } => {
            let redundancy = match erasure.as_deref() {
                Some(policy) => config::redundancy(policy)?,
                None => Redundancy::Default,
            };
            let (node, _scratch) = open(&target, !plain).await?;
            let (input, total): (Box<dyn AsyncRead + Unpin + Send>, _) = if file == Path::new("-") {
                (Box::new(tokio::io::stdin()), None)
            } else {
                let input = tokio::fs::File::open(&file).await.map_err(|e| {
                    std::io::Error::new(e.kind(), format!("opening {}: {e}", file.display()))
                })?;
                let total = input.metadata().await.ok().map(|m| m.len());
                (Box::new(input), total)
            };
            let progress = Progress::start(format!("put {key}"), total);
            let n = node
                .store_reader(
                    &key,
                    progress.reader(input),
                    StoreOptions {
                        encrypt: !plain,
                        redundancy,
                    },
                )
                .await;
            progress.finish();
            eprintln!("stored {key} ({} bytes)", n?);
            node.close().await?;
        }
        Command::Get {
            target,
            key,
            output,
            offset,
            length,
        } => {
            let (node, _scratch) = open(&target, false).await?;
            let range = (offset.is_some() || length.is_some())
                .then(|| (offset.unwrap_or(0), length.unwrap_or(u64::MAX)));
            let size = node.size(&key).await.ok();
            let total = match (size, range) {
                (Some(n), Some((at, len))) => Some(n.saturating_sub(at).min(len)),
                (n, _) => n,
            };
            let mut progress = Progress::start(format!("get {key}"), total);
            let result = match &output {
                Some(path) => {
                    let (at, len) = range.unwrap_or((0, u64::MAX));
                    // The core writes the file; its count of bytes read is the progress.
                    let from = node.stats().map_or(0, |s| s.bytes_read);
                    let counter = node.clone();
                    progress.follow(move || {
                        counter
                            .stats()
                            .map_or(0, |s| s.bytes_read.saturating_sub(from))
                    });
                    node.get_range_file(&key, at, len, path).await
                }
                None if std::io::stdout().is_terminal() => {
                    progress.finish();
                    return Err(usage(
                        "refusing to write a value to a terminal; use -o FILE or a pipe",
                    ));
                }
                None => {
                    let out = progress.writer(tokio::io::stdout());
                    match range {
                        Some((at, len)) => node.get_range_writer(&key, at, len, out).await,
                        None => node.get_writer(&key, out).await,
                    }
                }
            };
            progress.finish();
            let n = result?;
            if let Some(path) = output {
                eprintln!("wrote {n} bytes to {}", path.display());
            }
            node.close().await?;
        }
        Command::Rm { target, key } => {
            let (node, _scratch) = open(&target, false).await?;
            node.delete(&key).await?;
            eprintln!("deleted {key}");
            node.close().await?;
        }
        Command::Ls {
            prefix,
            json,
            target,
        } => {
            let (node, _scratch) = open(&target, false).await?;
            // A page at a time, printed as it comes: any number of keys in bounded memory.
            let mut after = String::new();
            let mut first = true;
            if json {
                println!("[");
            }
            loop {
                let page = node.list(&prefix, &after, LS_PAGE).await?;
                for key in &page {
                    if !json {
                        println!("{}", printable(key));
                        continue;
                    }
                    let info = match node.info(key).await {
                        Ok(info) => info,
                        Err(dstore_core::Error::NotFound(_)) => continue, // deleted meanwhile
                        Err(e) => return Err(e.into()),
                    };
                    let entry = serde_json::json!({
                        "key": key,
                        "size": info.size,
                        "version": info.version,
                        "writer": info.writer.to_string(),
                        "modified_ms": info.modified_ms,
                        "encrypted": info.encrypted,
                        "redundancy": info.erasure.map_or("replicas".to_owned(), |e| e.to_string()),
                    });
                    let comma = if first { "" } else { "," };
                    println!("{comma}{entry}");
                    first = false;
                }
                match page.last() {
                    Some(last) if page.len() == LS_PAGE => after = last.clone(),
                    _ => break,
                }
            }
            if json {
                println!("]");
            }
            node.close().await?;
        }
        Command::Status { target, json } => {
            let (node, scratch) = open(&target, false).await?;
            let status = status::gather(&node, scratch.is_none()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                status.print();
            }
            node.close().await?;
        }
        Command::ClientCredential { secrets } => {
            let secret = config::secret(&secrets, &FileConfig::default())?
                .ok_or_else(|| usage("set DSTORE_SECRET or --secret-file to the cluster secret"))?;
            if secret.starts_with(dstore_core::crypto::CLIENT_CREDENTIAL_PREFIX.as_bytes()) {
                return Err(usage(
                    "that is a client credential already, not the cluster secret",
                ));
            }
            println!(
                "{}",
                dstore_core::crypto::ClusterKey::new(&secret).client_credential()
            );
        }
        Command::Leave { target } => {
            let [addr] = target.peers.as_slice() else {
                return Err(usage(
                    "leave needs exactly one --peer: the member that leaves",
                ));
            };
            let (node, _scratch) = open(&target, false).await?;
            let wait = Duration::from_secs_f64(target.timeout.unwrap_or(3600.0).max(0.0));
            let asked = node.ask_to_leave(addr, wait);
            tokio::pin!(asked);
            // Progress from the member's stats while it hands off.
            let show = std::io::stderr().is_terminal();
            let result = loop {
                tokio::select! {
                    r = &mut asked => break r,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {
                        if !show { continue; }
                        for (peer, stats) in node.member_stats().await {
                            if let (true, Some(s)) = (&peer.addr == addr, stats) {
                                eprint!("\rleaving: {} of {} objects checked, {} sent   ",
                                    s.drain.checked, s.drain.objects, s.drain.pushed);
                            }
                        }
                    }
                }
            };
            if show {
                eprintln!();
            }
            result?;
            eprintln!("{addr} has left the cluster; its root can be deleted");
            node.close().await?;
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "dstore", &mut std::io::stdout());
        }
        Command::Man => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
        }
        Command::Demo => demo::run().await?,
        Command::Bench(args) => bench::run(args).await?,
    }
    Ok(())
}

/// A key as one line of `dstore ls`: a backslash and control characters (a newline would
/// forge a second key) are escaped, Rust style (`\\`, `\n`, `\u{1b}`); anything else is
/// printed as it is.
fn printable(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// `dstore node`: serves until SIGTERM or Ctrl-C, then closes cleanly (calls in flight
/// finish, the root is unlocked).
async fn run_node(args: NodeArgs) -> AnyResult {
    let file = FileConfig::load(args.config.as_deref())?;
    let root = args
        .root
        .or(file.root.clone())
        .ok_or_else(|| usage("a node needs --root (or root in --config)"))?;
    let mut c = Config::new(root);
    c.listen = Some(
        args.listen
            .or(file.listen.clone())
            .unwrap_or_else(|| "127.0.0.1:7420".into()),
    );
    c.advertise = args.advertise.or(file.advertise.clone());
    c.peers = if args.peers.is_empty() {
        file.peers.clone()
    } else {
        args.peers
    };
    c.replicas = args.replicas.or(file.replicas).unwrap_or(3);
    c.erasure = config::erasure(args.erasure.as_deref(), &file)?;
    c.zone = args.zone.or(file.zone.clone());
    args.tuning.apply(&file.tuning, &mut c);
    c.clock_offset_ms = args.clock_offset_ms;
    c.leave_on_request = true; // `dstore leave --peer` is how an operator retires a node
    c.data_key = config::data_key(&args.secrets, &file)?;
    c.accept_unsealed = args.secrets.accept_unsealed;
    c.secret = Some(config::secret(&args.secrets, &file)?.ok_or_else(|| {
        usage("a node needs the cluster secret: set DSTORE_SECRET or --secret-file")
    })?);
    let metrics_listen = args.metrics_listen.or(file.metrics_listen.clone());
    let node = Node::open(c).await?;
    // Bound before the ready line, so that a script that reads it can scrape at once.
    let metrics = match metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("--metrics-listen {addr}: {e}"))
            })?;
            let bound = listener.local_addr()?;
            let server = tokio::spawn(serve_metrics::serve(listener, node.clone()));
            Some((bound, server))
        }
        None => None,
    };
    // One line on stdout, for scripts and tests that start nodes on port 0; a second with the
    // metrics address, when served. Written at once, and a reader that closes the pipe after
    // the first line is not an error: the node serves on.
    let mut ready = format!(
        "dstore node {} listening on {}\n",
        node.id(),
        node.addr().unwrap_or_default()
    );
    if let Some((addr, _)) = &metrics {
        ready.push_str(&format!("dstore node metrics on http://{addr}/metrics\n"));
    }
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        let _ = stdout
            .write_all(ready.as_bytes())
            .and_then(|()| stdout.flush());
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let ended = tokio::select! {
        _ = tokio::signal::ctrl_c() => None,
        _ = term.recv() => None,
        ended = node.closed() => Some(ended), // asked to leave by `dstore leave`
    };
    let ended = match ended {
        Some(ended) => ended,
        None => {
            tracing::info!("stopping");
            let _ = node.close().await; // the outcome is in `closed()`
            node.closed().await
        }
    };
    if let Some((_, server)) = metrics {
        server.abort();
    }
    match ended {
        Ended::Closed => eprintln!("dstore node stopped"),
        Ended::Left => eprintln!("dstore node left the cluster; its root can be deleted"),
        Ended::Incomplete(why) => return Err(format!("dstore node stopped: {why}").into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// `dstore help` and the man page explain every argument and command.
    #[test]
    fn every_argument_and_command_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let builtin = ["help", "version"].contains(&arg.get_id().as_str());
                if !arg.is_hide_set() && !builtin && arg.get_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                let name = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(name.clone());
                }
                walk(sub, &name, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "dstore", &mut missing);
        assert!(missing.is_empty(), "no help for: {missing:?}");
    }
}
