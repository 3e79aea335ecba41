//! Path transforms: how an object's name (the hex of its chunk id or key id) becomes a
//! relative path under the storage root. Names are always ids, never user keys, so a key such
//! as `../x` never reaches the file system; a transform's output is still checked to stay
//! below its directory, because users can plug in their own.

use std::fmt::Debug;
use std::path::{Component, Path, PathBuf};

use crate::crypto;
use crate::error::{Error, Result};

pub trait PathTransform: Debug + Send + Sync {
    /// The relative path for `name`. Must be a pure function of `name`, the same on every
    /// run, with at least one component and no `..`, root or prefix components.
    fn path(&self, name: &str) -> PathBuf;
}

/// The default: `ab/cd/abcdef...`, two levels of two hex characters, so no directory holds
/// more than 256 entries until the store has millions of objects.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sharded;

impl PathTransform for Sharded {
    fn path(&self, name: &str) -> PathBuf {
        match (name.get(0..2), name.get(2..4)) {
            (Some(a), Some(b)) => [a, b, name].iter().collect(),
            _ => PathBuf::from(name),
        }
    }
}

/// The seed project's content-addressable transform: SHA-1 of the name, cut into directory
/// blocks of 5 hex characters, with the whole hash as the file name.
/// `momsbestpicture` -> `68044/29f74/.../353ff/6804429f74181a63c50c3d81d733a12f14a353ff`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeedSha1;

impl PathTransform for SeedSha1 {
    fn path(&self, name: &str) -> PathBuf {
        let hash = crypto::sha1_hex(name.as_bytes());
        let mut path: PathBuf = hash
            .as_bytes()
            .chunks(5)
            .map(|block| std::str::from_utf8(block).expect("hex is ASCII"))
            .collect();
        path.push(&hash);
        path
    }
}

/// Applies `transform` and refuses any result that would leave `base`.
pub(crate) fn resolve(transform: &dyn PathTransform, base: &Path, name: &str) -> Result<PathBuf> {
    let rel = transform.path(name);
    let normal = rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !normal || rel.as_os_str().is_empty() {
        return Err(Error::InvalidArgument(format!(
            "path transform {transform:?} gave {} for {name}: not a relative path below the root",
            rel.display()
        )));
    }
    Ok(base.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_transform_test_vector() {
        assert_eq!(
            SeedSha1.path("momsbestpicture"),
            PathBuf::from("68044/29f74/181a6/3c50c/3d81d/733a1/2f14a/353ff/6804429f74181a63c50c3d81d733a12f14a353ff")
        );
    }

    #[test]
    fn sharded_layout() {
        assert_eq!(Sharded.path("abcdef"), PathBuf::from("ab/cd/abcdef"));
    }

    #[derive(Debug)]
    struct Escaping;
    impl PathTransform for Escaping {
        fn path(&self, name: &str) -> PathBuf {
            PathBuf::from(format!("../{name}"))
        }
    }

    #[test]
    fn escaping_transform_is_refused() {
        let base = Path::new("/tmp/x");
        assert!(resolve(&Escaping, base, "ab").is_err());
        assert!(resolve(&Sharded, base, "abcdef").is_ok());
    }
}
