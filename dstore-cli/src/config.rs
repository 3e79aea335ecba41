//! Where a command's settings come from, in one place: flags, then the TOML file named by
//! `--config`, then defaults. Secrets never come from flags (they would show in `ps`): the
//! cluster secret from `DSTORE_SECRET` or `--secret-file`, the data key (64 hex digits) from
//! `DSTORE_KEY` or `--key-file`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::AnyResult;

/// The settings a TOML file may hold; every field is optional and a flag overrides it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub root: Option<PathBuf>,
    pub listen: Option<String>,
    pub advertise: Option<String>,
    #[serde(default)]
    pub peers: Vec<String>,
    pub replicas: Option<usize>,
    pub zone: Option<String>,
    pub key_file: Option<PathBuf>,
    pub secret_file: Option<PathBuf>,
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> AnyResult<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading config {}: {e}", path.display()))?;
        Ok(toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))?)
    }
}

/// Where the secrets are, as flags.
#[derive(clap::Args, Debug, Default)]
pub struct SecretArgs {
    /// File holding the data key as 64 hex digits (else DSTORE_KEY).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// File holding the cluster secret (else DSTORE_SECRET).
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
}

fn from_file_or_env(file: Option<&Path>, var: &str) -> AnyResult<Option<String>> {
    match file {
        Some(path) => Ok(Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?
                .trim()
                .to_owned(),
        )),
        None => Ok(std::env::var(var).ok().filter(|v| !v.is_empty())),
    }
}

/// The data key, if one was given.
pub fn data_key(args: &SecretArgs, file: &FileConfig) -> AnyResult<Option<[u8; 32]>> {
    let path = args.key_file.as_deref().or(file.key_file.as_deref());
    let Some(hex_key) = from_file_or_env(path, "DSTORE_KEY")? else {
        return Ok(None);
    };
    let mut key = [0u8; 32];
    hex::decode_to_slice(hex_key.trim(), &mut key)
        .map_err(|_| "the data key must be 64 hex digits")?;
    Ok(Some(key))
}

/// The cluster secret, if one was given.
pub fn secret(args: &SecretArgs, file: &FileConfig) -> AnyResult<Option<Vec<u8>>> {
    let path = args.secret_file.as_deref().or(file.secret_file.as_deref());
    Ok(from_file_or_env(path, "DSTORE_SECRET")?.map(String::into_bytes))
}
