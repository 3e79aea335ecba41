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

#[pymodule]
fn _dstore(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_KEY_LEN", dstore_core::MAX_KEY_LEN)?;
    m.add("DEFAULT_CHUNK_SIZE", dstore_core::DEFAULT_CHUNK_SIZE)?;
    m.add("MIN_CHUNK_SIZE", dstore_core::MIN_CHUNK_SIZE)?;
    m.add("MAX_CHUNK_SIZE", dstore_core::MAX_CHUNK_SIZE)?;
    m.add_class::<node::PyNode>()?;
    errors::register(m)?;
    Ok(())
}
