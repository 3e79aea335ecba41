//! Durable, atomic file writes: a temp file in the root's `tmp/`, fsync, rename into place,
//! fsync of the directory. A crash leaves the old file or the new one, never a torn one, and
//! once `write_atomic` returns the new file survives power loss.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::crypto;

/// A file written and fsynced in the staging directory, not yet in place. Dropping it
/// without `install` deletes it.
pub struct Staged(Option<PathBuf>);

impl Staged {
    /// Writes and fsyncs `bytes` to a fresh temp file in `tmp_dir`.
    pub fn new(tmp_dir: &Path, bytes: &[u8]) -> std::io::Result<Self> {
        Self::write(tmp_dir, bytes, true)
    }

    /// Writes `bytes` to a fresh temp file in `tmp_dir`, with an fsync if `sync` (without,
    /// for objects whose durability the journal provides).
    pub fn write(tmp_dir: &Path, bytes: &[u8], sync: bool) -> std::io::Result<Self> {
        let path = tmp_dir.join(hex::encode(crypto::random_bytes::<12>()));
        let staged = Self(Some(path.clone()));
        let mut file = File::create(&path)?;
        file.write_all(bytes)?;
        if sync {
            file.sync_all()?;
        }
        Ok(staged)
    }

    /// Renames the file to `dest` (atomic). Durable once `dest`'s directory is synced.
    pub fn install(mut self, dest: &Path) -> std::io::Result<()> {
        let path = self.0.take().expect("a staged file is installed once");
        fs::rename(&path, dest).inspect_err(|_| {
            let _ = fs::remove_file(&path);
        })
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// Writes `bytes` to `dest` atomically and durably, staging in `tmp_dir` (same file system).
pub fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = dest.parent().expect("object paths have a parent");
    create_dir_durable(parent)?;
    Staged::new(tmp_dir, bytes)?.install(dest)?;
    sync_dir(parent)
}

/// Creates `dir` and any missing parents, fsyncing each parent that gained an entry, so a new
/// directory is as durable as a file written into it.
pub fn create_dir_durable(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(()); // "" is the parent of a relative name: the current directory
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    create_dir_durable(parent)?;
    match fs::create_dir(dir) {
        Ok(()) => sync_dir(parent),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Every regular file below `dir`, for the scans made when a root is opened.
/// Reads a whole file of at most `max` bytes; a longer one (a rotten or planted file, perhaps
/// sparse and terabytes long) is an `InvalidData` error, never an allocation of its size.
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} is {len} bytes, more than the {max} allowed",
                path.display()
            ),
        ));
    }
    let mut out = Vec::with_capacity(len as usize);
    // `take`: a file that grows while read still stops at the bound.
    file.take(max).read_to_end(&mut out)?;
    Ok(out)
}

pub fn walk_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    Ok(out)
}

/// Bytes of the files under `dir` (what they hold, not the blocks they take); entries that go
/// away during the walk are skipped.
pub fn bytes_under(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}
