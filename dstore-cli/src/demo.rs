//! `dstore demo`: what one node does, shown on a throwaway root, in plain words. Every step
//! checks what it claims and stops the demo with an error if it does not hold.

use std::path::{Path, PathBuf};

use dstore_core::{Config, Error, Node, StoreOptions};

use crate::AnyResult;

const ENC: StoreOptions = StoreOptions { encrypt: true };

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn check(ok: bool, what: &str) -> AnyResult {
    if ok {
        Ok(())
    } else {
        Err(format!("demo check failed: {what}").into())
    }
}

pub async fn run() -> AnyResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("node");
    let chunks_dir = root.join("chunks");
    println!(
        "dstore demo: one node on a throwaway root ({})\n",
        root.display()
    );

    let node = Node::open(Config::new(&root)).await?;
    let id = node.id();
    println!(
        "1. Opened a node. Its id is {}..; it made a data key and keeps it in the root.",
        &id.to_hex()[..16]
    );

    // 3 MiB of noise, like a small photo: three different 1 MiB chunks.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let picture: Vec<u8> = (0..3 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    node.store("photos/moms-best-picture.jpg", &picture, ENC)
        .await?;
    let n = files_under(&chunks_dir).len();
    println!("2. Stored photos/moms-best-picture.jpg (3 MiB, encrypted): {n} chunk files on disk.");
    check(n == 3, "3 chunks")?;

    node.store("backup/same-picture.jpg", &picture, ENC).await?;
    let n = files_under(&chunks_dir).len();
    println!("3. Stored the same picture under a second key: still {n} chunk files (deduplicated, under encryption too).");
    check(n == 3, "deduplicated")?;

    let leaked = files_under(&chunks_dir)
        .iter()
        .any(|f| std::fs::read(f).is_ok_and(|b| b.windows(64).any(|w| w == &picture[..64])));
    println!(
        "4. Searched every chunk file for the picture's first 64 bytes: {}.",
        if leaked {
            "FOUND"
        } else {
            "not found, only ciphertext is on disk"
        }
    );
    check(!leaked, "ciphertext on disk")?;

    let back = node.get("photos/moms-best-picture.jpg").await?;
    println!(
        "5. Read it back: {} bytes, identical: {}.",
        back.len(),
        back == picture
    );
    check(back == picture, "read back")?;

    let victim = &files_under(&chunks_dir)[0];
    let mut bytes = std::fs::read(victim)?;
    bytes[1000] ^= 1;
    std::fs::write(victim, bytes)?;
    match node.get("photos/moms-best-picture.jpg").await {
        Err(e @ Error::Integrity(_)) => println!("6. Flipped one bit of one chunk on disk. The read refuses: \"{e}\". The bad copy is moved to quarantine/."),
        other => return Err(format!("demo check failed: corrupted read gave {:?}", other.map(|v| v.len())).into()),
    }

    node.store("photos/moms-best-picture.jpg", &picture, ENC)
        .await?;
    check(
        node.get("photos/moms-best-picture.jpg").await? == picture,
        "healed",
    )?;
    println!(
        "7. Stored the picture again: the missing chunk was rewritten and the read works again."
    );

    node.delete("photos/moms-best-picture.jpg").await?;
    let still = node.get("backup/same-picture.jpg").await? == picture;
    println!("8. Deleted the first key: the second still reads ({still}), its chunks are kept ({} files).", files_under(&chunks_dir).len());
    check(still, "shared chunks kept")?;
    node.delete("backup/same-picture.jpg").await?;
    let n = files_under(&chunks_dir).len();
    println!("   Deleted the second key: {n} chunk files left, the space is reclaimed.");
    check(n == 0, "chunks collected")?;

    node.store("notes/readme.txt", b"kept across restarts", ENC)
        .await?;
    drop(node);
    let node = Node::open(Config::new(&root)).await?;
    let same_id = node.id() == id;
    let text = node.get("notes/readme.txt").await?;
    println!(
        "9. Closed and reopened the root: same node id ({same_id}), notes/readme.txt reads \"{}\".",
        String::from_utf8_lossy(&text)
    );
    check(same_id && text == b"kept across restarts", "reopen")?;
    drop(node);

    let mut other = Config::new(&root);
    other.data_key = Some([7; 32]);
    match Node::open(other).await?.get("notes/readme.txt").await {
        Err(e @ Error::WrongKey(_)) => {
            println!("10. A node with another data key cannot read it: \"{e}\".")
        }
        other => {
            return Err(format!(
                "demo check failed: wrong key gave {:?}",
                other.map(|v| v.len())
            )
            .into())
        }
    }
    println!("\nDone. Everything above was checked; the root is removed now.");
    Ok(())
}
