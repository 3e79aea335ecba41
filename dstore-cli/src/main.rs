//! `dstore`: the command for humans. Today it works on a local storage root; the network
//! issue turns `put`/`get`/... into cluster clients and adds `dstore node`.

mod bench;
mod demo;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dstore_core::{Config, Node, StoreOptions};

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

/// Where a node keeps its data and which data key it uses.
#[derive(clap::Args)]
struct RootArgs {
    /// The storage root.
    #[arg(long, env = "DSTORE_ROOT", default_value = "./dstore-data")]
    root: PathBuf,
    /// A file holding the 32-byte data key as 64 hex digits (else DSTORE_KEY, else the key
    /// kept in the root). Never passed as a flag, so it does not show in `ps`.
    #[arg(long)]
    key_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Store FILE under KEY.
    Put {
        #[command(flatten)]
        root: RootArgs,
        key: String,
        file: PathBuf,
        /// Store without encryption (still authenticated and hash-checked).
        #[arg(long)]
        plain: bool,
    },
    /// Read KEY to FILE (or to standard output).
    Get {
        #[command(flatten)]
        root: RootArgs,
        key: String,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Delete KEY.
    Rm {
        #[command(flatten)]
        root: RootArgs,
        key: String,
    },
    /// List the keys.
    Ls {
        #[command(flatten)]
        root: RootArgs,
    },
    /// Show the node's id and counts.
    Status {
        #[command(flatten)]
        root: RootArgs,
    },
    /// Walk through what dstore does, on a throwaway root, in plain words.
    Demo,
    /// Measure store and get throughput against this machine's hashing and cipher speed.
    Bench(bench::Args),
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("starting the tokio runtime");
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dstore: {e}");
            ExitCode::FAILURE
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
        .init();
}

type AnyResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

async fn open(args: &RootArgs) -> AnyResult<Node> {
    let mut config = Config::new(&args.root);
    let hex_key = match &args.key_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("reading key file {}: {e}", path.display()))?,
        ),
        None => std::env::var("DSTORE_KEY").ok(),
    };
    if let Some(hex_key) = hex_key {
        let mut key = [0u8; 32];
        hex::decode_to_slice(hex_key.trim(), &mut key)
            .map_err(|_| "the data key must be 64 hex digits")?;
        config.data_key = Some(key);
    }
    Ok(Node::open(config).await?)
}

async fn run(command: Command) -> AnyResult {
    match command {
        Command::Put {
            root,
            key,
            file,
            plain,
        } => {
            let node = open(&root).await?;
            let n = node
                .store_file(&key, &file, StoreOptions { encrypt: !plain })
                .await?;
            eprintln!("stored {key} ({n} bytes)");
        }
        Command::Get { root, key, output } => {
            let node = open(&root).await?;
            match output {
                Some(path) => {
                    let n = node.get_file(&key, &path).await?;
                    eprintln!("wrote {n} bytes to {}", path.display());
                }
                None if std::io::stdout().is_terminal() => {
                    return Err(
                        "refusing to write a value to a terminal; use -o FILE or a pipe".into(),
                    )
                }
                None => {
                    node.get_writer(&key, tokio::io::stdout()).await?;
                }
            }
        }
        Command::Rm { root, key } => {
            open(&root).await?.delete(&key).await?;
            eprintln!("deleted {key}");
        }
        Command::Ls { root } => {
            for key in open(&root).await?.keys().await? {
                println!("{key}");
            }
        }
        Command::Status { root } => {
            let node = open(&root).await?;
            let s = node.stats()?;
            println!("node     {}", node.id());
            println!("root     {}", root.root.display());
            println!("keys     {}", s.keys);
            println!("chunks   {}", s.chunks);
        }
        Command::Demo => demo::run().await?,
        Command::Bench(args) => bench::run(args).await?,
    }
    Ok(())
}
