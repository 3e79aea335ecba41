//! `dstore bench`: throughput of one node's local store, next to the speed of the same hashing
//! and encryption measured in the same run on one core, so that the figures read as ratios
//! that survive a noisy, shared machine. Every figure is the median of `--reps` runs.

use std::io::Write;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use dstore_core::crypto::{self, DataKey};
use dstore_core::{Config, Node, Redundancy, StoreOptions};
use tokio::io::{AsyncRead, ReadBuf};

use crate::AnyResult;

mod cluster;

#[derive(clap::Args)]
pub struct Args {
    /// Size of the large value, in MiB.
    #[arg(long, default_value_t = 1024)]
    large_mib: u64,
    /// How many small values.
    #[arg(long, default_value_t = 10_000)]
    small_count: usize,
    /// Size of each small value, in bytes.
    #[arg(long, default_value_t = 4096)]
    small_size: usize,
    /// Concurrent callers for the small values.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Repetitions; the median is reported.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Where to put the stores (default: a temp dir, removed afterwards).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Run only one part: `local` (one node, its own store), `cluster` (3 node processes),
    /// `repair` (4 node processes, one lost for good) or `churn` (a member in this process
    /// that closes and leaves; reads of missing keys) or `erasure` (7 node processes, 4+2
    /// against 3 replicas).
    #[arg(long, value_parser = ["local", "cluster", "repair", "churn", "erasure"])]
    only: Option<String>,
}

const MIB: f64 = (1 << 20) as f64;

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Single-core speed (MB/s) of `f` applied to 1 MiB buffers, median of `reps`.
fn single_core(reps: usize, f: impl Fn(&[u8])) -> f64 {
    let buf: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    let rounds = 256;
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..rounds {
                    f(std::hint::black_box(&buf));
                }
                rounds as f64 / t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// Yields `len` bytes of distinct 1 MiB blocks (each starts with its index, so no two
/// chunks deduplicate) at memcpy speed, so the source is never the bottleneck.
struct Source {
    block: Vec<u8>,
    pos: u64,
    len: u64,
    /// Added to the block index, so that sources with different offsets share no block.
    first_block: u64,
}

impl Source {
    fn new(len: u64) -> Self {
        Self::numbered_from(len, 0)
    }

    fn numbered_from(len: u64, first_block: u64) -> Self {
        Self {
            first_block,
            block: (0..1u32 << 20)
                .map(|i| (i.wrapping_mul(2246822519) >> 9) as u8)
                .collect(),
            pos: 0,
            len,
        }
    }
}

impl AsyncRead for Source {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let block_len = self.block.len() as u64;
        let n = (self.len - self.pos)
            .min(buf.remaining() as u64)
            .min(block_len - self.pos % block_len) as usize;
        let start = (self.pos % block_len) as usize;
        let index = (self.pos / block_len + self.first_block).to_le_bytes();
        let mut piece = self.block[start..start + n].to_vec();
        for (i, b) in piece
            .iter_mut()
            .enumerate()
            .take(8usize.saturating_sub(start))
        {
            *b = index[start + i];
        }
        buf.put_slice(&piece);
        self.pos += n as u64;
        Poll::Ready(Ok(()))
    }
}

/// Whose memory a measurement reports: this process (one node in it), or node processes.
pub(crate) enum Memory {
    Own,
    Processes(Vec<u32>),
}

impl Memory {
    fn files(&self) -> Vec<String> {
        match self {
            Memory::Own => vec!["self".into()],
            Memory::Processes(pids) => pids.iter().map(u32::to_string).collect(),
        }
    }

    /// Restarts the peak counters (Linux: writing 5 to clear_refs resets VmHWM).
    fn reset(&self) {
        for p in self.files() {
            let _ = std::fs::write(format!("/proc/{p}/clear_refs"), "5");
        }
    }

    /// Peak resident memory of each process since the last reset, in MiB.
    fn peaks(&self) -> Vec<f64> {
        self.files()
            .iter()
            .filter_map(|p| {
                let status = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
                let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
                let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib / 1024.0)
            })
            .collect()
    }
}

pub(crate) fn row(what: &str, value: String, note: String) {
    println!("  {what:<44} {value:>14}   {note}");
    let _ = std::io::stdout().flush();
}

pub async fn run(args: Args) -> AnyResult {
    let reps = args.reps.max(1);
    println!("dstore bench: medians of {reps} runs\n");

    println!("Machine limits, one core, 1 MiB buffers (measured now):");
    let key = DataKey::new(&[7; 32]);
    let sealed = key.seal(&[0u8; 1 << 20]);
    let aes_hmac = single_core(reps, |b| drop(std::hint::black_box(key.seal(b))));
    let blake3 = single_core(reps, |b| {
        std::hint::black_box(crypto::chunk_hash(b));
    });
    let hmac = single_core(reps, |b| {
        std::hint::black_box(crypto::hmac(&[1; 32], &[b]));
    });
    let store_pipe = single_core(reps, |b| {
        let s = key.seal(b);
        std::hint::black_box(crypto::chunk_hash(&s));
    });
    let get_pipe = single_core(reps, |_| {
        std::hint::black_box(crypto::chunk_hash(&sealed));
        drop(std::hint::black_box(key.open(&sealed)));
    });
    let plain_pipe = blake3; // a plain get only hashes
    row(
        "BLAKE3 (chunk ids)",
        format!("{blake3:.0} MB/s"),
        String::new(),
    );
    row(
        "HMAC-SHA256 (synthetic IV)",
        format!("{hmac:.0} MB/s"),
        String::new(),
    );
    row(
        "seal = HMAC-SHA256 + AES-256-CTR",
        format!("{aes_hmac:.0} MB/s"),
        String::new(),
    );
    row(
        "store pipeline: seal + BLAKE3",
        format!("{store_pipe:.0} MB/s"),
        "the yardstick for encrypted stores".into(),
    );
    row(
        "get pipeline: BLAKE3 + open",
        format!("{get_pipe:.0} MB/s"),
        "the yardstick for encrypted gets".into(),
    );

    let tmp = tempfile::tempdir()?;
    let base = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let disk = durable_files(reps, &base.join("disk"), 1 << 20, 8, 32)?;
    row(
        "disk: 1 MiB files, write+fsync+rename+dir fsync, 8 writers",
        format!("{disk:.0} MB/s"),
        "the yardstick for plain stores".into(),
    );
    let small_files = durable_files(reps, &base.join("disk"), 4096, 1, 256)? * MIB / 4096.0;
    row(
        "disk: 4 KiB files, write+fsync+rename+dir fsync, 1 writer",
        format!("{small_files:.0} files/s"),
        "the yardstick for small stores".into(),
    );
    let tcp = loopback_tcp(reps).await?;
    row(
        "loopback TCP, one stream, both ends",
        format!("{tcp:.0} MB/s"),
        String::new(),
    );
    let limits = Limits {
        store_pipe,
        get_pipe,
        disk,
        plain_pipe,
        small_files,
    };

    let part = |name: &str| args.only.as_deref().is_none_or(|only| only == name);
    if part("local") {
        println!("\n== One node, its own store (no network) ==");
        let node = Node::open(Config::new(base.join("local"))).await?;
        large(&node, &args, reps, &limits, &Memory::Own, "this process").await?;
        small(&node, &args, reps, &limits).await?;
        let _ = node.close().await;
    }
    if part("cluster") {
        cluster::run(&args, reps, &limits, &base.join("cluster")).await?;
    }
    if part("repair") {
        cluster::repair(&args, &base.join("repair")).await?;
    }
    if part("churn") {
        cluster::churn(&args, &base.join("churn")).await?;
    }
    if part("erasure") {
        cluster::erasure(&args, reps, &base.join("erasure")).await?;
    }
    Ok(())
}

/// The yardsticks measured at the start, for the ratios.
pub(crate) struct Limits {
    store_pipe: f64,
    get_pipe: f64,
    disk: f64,
    plain_pipe: f64,
    /// Durable 4 KiB files per second, one at a time.
    small_files: f64,
}

/// One TCP stream over loopback through tokio, 1 MiB writes, median of `reps` runs of
/// 256 MiB, in MB/s.
async fn loopback_tcp(reps: usize) -> AnyResult<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut runs = Vec::new();
    for _ in 0..reps {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let total = 256usize << 20;
        let sender = tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            let block = vec![7u8; 1 << 20];
            for _ in 0..total >> 20 {
                s.write_all(&block).await?;
            }
            std::io::Result::Ok(())
        });
        let (mut r, _) = listener.accept().await?;
        let t = Instant::now();
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < total {
            match r.read(&mut buf).await? {
                0 => break,
                n => got += n,
            }
        }
        runs.push(got as f64 / MIB / t.elapsed().as_secs_f64());
        sender.await??;
    }
    Ok(median(runs))
}

/// What the disk gives durable writes of `size`-byte files, each its own file as a store
/// without group commit would make them: `writers` threads each writing `per_writer` files
/// (write, fsync, rename, fsync of the directory). Median of `reps`, in MiB/s. 1 MiB files
/// with 8 writers (as many as the store keeps in flight) are the yardstick for large
/// stores; 4 KiB files with one writer, the per-file fsync rate, for small ones.
fn durable_files(
    reps: usize,
    dir: &Path,
    size: usize,
    writers: usize,
    per_writer: usize,
) -> AnyResult<f64> {
    std::fs::create_dir_all(dir)?;
    let block = vec![0x5au8; size];
    let mut runs = Vec::new();
    for rep in 0..reps {
        let t = Instant::now();
        std::thread::scope(|s| -> AnyResult {
            let workers: Vec<_> = (0..writers)
                .map(|w| {
                    let block = &block;
                    s.spawn(move || -> std::io::Result<()> {
                        for i in 0..per_writer {
                            let tmp = dir.join(format!("tmp-{rep}-{w}-{i}"));
                            let mut f = std::fs::File::create(&tmp)?;
                            f.write_all(block)?;
                            f.sync_all()?;
                            std::fs::rename(&tmp, dir.join(format!("f-{rep}-{w}-{i}")))?;
                            std::fs::File::open(dir)?.sync_all()?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for w in workers {
                w.join().expect("writer thread")?;
            }
            Ok(())
        })?;
        let mib = (size * writers * per_writer) as f64 / MIB;
        runs.push(mib / t.elapsed().as_secs_f64());
    }
    std::fs::remove_dir_all(dir)?;
    Ok(median(runs))
}

/// Stores and reads back one large value, encrypted then plain, `reps` times each.
pub(crate) async fn large(
    node: &Node,
    args: &Args,
    reps: usize,
    limits: &Limits,
    memory: &Memory,
    whose: &str,
) -> AnyResult {
    let len = args.large_mib << 20;
    println!(
        "A {} MiB value, 1 MiB chunks, fsync on (ratios to the yardsticks above):",
        args.large_mib
    );
    let modes = [
        (true, limits.store_pipe, limits.get_pipe),
        (false, limits.disk, limits.plain_pipe),
    ];
    for (encrypt, store_limit, get_limit) in modes {
        let mode = if encrypt { "encrypted" } else { "plain" };
        let (mut puts, mut gets, mut peaks) = (Vec::new(), Vec::new(), Vec::new());
        let mut ranges = Vec::new();
        for rep in 0..reps {
            let key = format!("large/{mode}/{rep}");
            memory.reset();
            let t = Instant::now();
            node.store_reader(
                &key,
                Source::new(len),
                StoreOptions {
                    encrypt,
                    redundancy: Redundancy::Default,
                },
            )
            .await?;
            puts.push(len as f64 / MIB / t.elapsed().as_secs_f64());
            let t = Instant::now();
            let n = node.get_writer(&key, tokio::io::sink()).await?;
            let whole = t.elapsed().as_secs_f64();
            gets.push(n as f64 / MIB / whole);
            // 1 MiB from the middle, across a chunk boundary: two chunks fetched, not all.
            let t = Instant::now();
            let part = node.get_range(&key, len / 2 + 12_345, 1 << 20).await?;
            ranges.push((t.elapsed().as_secs_f64(), whole));
            if part.len() != 1 << 20 {
                return Err(format!("a range read gave {} bytes, not 1 MiB", part.len()).into());
            }
            peaks = memory
                .peaks()
                .into_iter()
                .zip(peaks.iter().copied().chain(std::iter::repeat(0.0)))
                .map(|(a, b)| a.max(b))
                .collect();
            node.delete(&key).await?;
        }
        let (put, get) = (median(puts), median(gets));
        row(
            &format!("store, {mode}"),
            format!("{put:.0} MB/s"),
            format!("{:.2}x", put / store_limit),
        );
        row(
            &format!("get, {mode}"),
            format!("{get:.0} MB/s"),
            format!("{:.2}x", get / get_limit),
        );
        let range = median(ranges.iter().map(|r| r.0).collect());
        let whole = median(ranges.iter().map(|r| r.1).collect());
        row(
            &format!("get_range, 1 MiB from the middle, {mode}"),
            format!("{:.1} ms", range * 1e3),
            format!(
                "2 of {} chunks fetched; the whole get took {:.0} ms ({:.0}x)",
                len.div_ceil(1 << 20),
                whole * 1e3,
                whole / range
            ),
        );
        let shown: Vec<String> = peaks.iter().map(|p| format!("{p:.0}")).collect();
        row(
            &format!("peak RSS, {whose}, {mode}"),
            format!("{} MiB", shown.join(" / ")),
            format!("with a {} MiB value", args.large_mib),
        );
    }
    Ok(())
}

/// Stores, then reads, `small_count` small values from `concurrency` callers at once.
pub(crate) async fn small(node: &Node, args: &Args, reps: usize, limits: &Limits) -> AnyResult {
    println!(
        "{} values of {} bytes, {} concurrent callers, fsync on:",
        args.small_count, args.small_size, args.concurrency
    );
    let value = Arc::new((0..args.small_size).map(|i| i as u8).collect::<Vec<u8>>());
    for encrypt in [true, false] {
        let mode = if encrypt { "encrypted" } else { "plain" };
        let (mut puts, mut gets) = (Vec::new(), Vec::new());
        for rep in 0..reps {
            let keys: Vec<String> = (0..args.small_count)
                .map(|i| format!("small/{mode}/{rep}/{i}"))
                .collect();
            let t = Instant::now();
            for_each_concurrently(node, &keys, args.concurrency, |node, key| {
                // Distinct contents, so no value deduplicates against another.
                let mut v = value.as_ref().clone();
                let n = key.len().min(v.len());
                v[..n].copy_from_slice(&key.as_bytes()[..n]);
                async move {
                    node.store(
                        &key,
                        &v,
                        StoreOptions {
                            encrypt,
                            redundancy: Redundancy::Default,
                        },
                    )
                    .await
                }
            })
            .await?;
            puts.push(keys.len() as f64 / t.elapsed().as_secs_f64());
            let t = Instant::now();
            for_each_concurrently(node, &keys, args.concurrency, |node, key| async move {
                node.get(&key).await.map(|_| ())
            })
            .await?;
            gets.push(keys.len() as f64 / t.elapsed().as_secs_f64());
        }
        let stores = median(puts);
        row(
            &format!("store, {mode}"),
            format!("{stores:.0} ops/s"),
            format!(
                "{:.2}x the per-file fsync rate",
                stores / limits.small_files
            ),
        );
        row(
            &format!("get, {mode}"),
            format!("{:.0} ops/s", median(gets)),
            String::new(),
        );
    }
    Ok(())
}

/// Runs `op` for every key with at most `width` calls in flight.
async fn for_each_concurrently<F, Fut>(
    node: &Node,
    keys: &[String],
    width: usize,
    op: F,
) -> AnyResult
where
    F: Fn(Node, String) -> Fut,
    Fut: std::future::Future<Output = dstore_core::Result<()>> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for key in keys {
        if set.len() >= width.max(1) {
            set.join_next().await.expect("non-empty")??;
        }
        set.spawn(op(node.clone(), key.clone()));
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}
