//! `dstore._dstore`: the Python binding of dstore-core. The pure-Python package `dstore`
//! re-exports everything here; the stubs are in `python/dstore/_dstore.pyi`.
//!
//! - `node`: the `Node` class (argument conversion only);
//! - `errors`: the exception tree and the one mapping from core errors;
//! - `runtime`: the process-wide tokio runtime and `block_on` (GIL released, panics caught,
//!   forked children refused).

use pyo3::prelude::*;

mod errors;
mod node;
mod runtime;

/// The client credential of the cluster whose secret is `secret`: what a client machine
/// needs instead of the secret (pass it as `secret=`). It cannot be turned back into the
/// secret, and does not let its holder be a member.
#[pyfunction]
fn client_credential(py: Python<'_>, secret: &Bound<'_, PyAny>) -> PyResult<String> {
    let secret = node::bytes_like(secret, "secret")?;
    if secret.is_empty() {
        return Err(errors::invalid_argument(
            py,
            "the cluster secret is empty".to_owned(),
        ));
    }
    Ok(dstore_core::crypto::ClusterKey::new(&secret).client_credential())
}

#[pymodule]
fn _dstore(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The core's logs go to Python's `logging`, under loggers named by Rust module
    // (`dstore_core.cluster.maintain`): info and above, each level asked of Python when a
    // record comes (records are rare at those levels). They are the core's tracing events,
    // which become `log` records while no tracing subscriber is installed; DSTORE_LOG installs
    // one that writes to stderr instead (runtime.rs). If another extension already set the
    // process's `log` logger, that one stays.
    let _ = pyo3_log::Logger::new(m.py(), pyo3_log::Caching::Loggers)?
        .filter(log::LevelFilter::Info)
        .install();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_KEY_LEN", dstore_core::MAX_KEY_LEN)?;
    m.add("DEFAULT_CHUNK_SIZE", dstore_core::DEFAULT_CHUNK_SIZE)?;
    m.add("MIN_CHUNK_SIZE", dstore_core::MIN_CHUNK_SIZE)?;
    m.add("MAX_CHUNK_SIZE", dstore_core::MAX_CHUNK_SIZE)?;
    m.add("MAX_LIST", dstore_core::MAX_LIST)?;
    m.add("INLINE_MAX", dstore_core::INLINE_MAX)?;
    m.add_class::<node::PyNode>()?;
    m.add_class::<node::KeyIter>()?;
    m.add_class::<node::Reader>()?;
    m.add_function(wrap_pyfunction!(client_credential, m)?)?;
    errors::register(m)?;
    Ok(())
}
