//! The exception tree of the `dstore` package, declared here and nowhere else, and the one
//! function that maps `dstore_core::Error` to it.
//!
//! ```text
//! Exception
//! └── dstore.Error
//!     ├── NotFoundError         also a KeyError      (args: the key, as dict's KeyError)
//!     ├── IntegrityError
//!     ├── WrongKeyError
//!     ├── ClosedError
//!     ├── LockedError
//!     ├── UnavailableError
//!     ├── InvalidArgumentError  also a ValueError
//!     └── StorageIOError        also an OSError      (errno and strerror set when known)
//! ```
//!
//! `create_exception!` takes one base class, so the three classes that also derive from a
//! builtin are made by calling `type(name, (Error, builtin), namespace)`, once per interpreter,
//! and cached in a `PyOnceLock`.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyKeyError, PyOSError, PyRuntimeWarning, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

create_exception!(
    dstore,
    Error,
    PyException,
    "Base class of every error raised by dstore."
);
create_exception!(
    dstore,
    DrainWarning,
    PyRuntimeWarning,
    "close() of a cluster member did not hand everything it holds to the other owners \
     within drain_timeout. The node is closed; what was not handed off stays in its root and \
     reaches its owners when the node opens again."
);
create_exception!(
    dstore,
    IntegrityError,
    Error,
    "Stored bytes failed their hash or MAC: corruption or tampering. Never served as data."
);
create_exception!(
    dstore,
    WrongKeyError,
    Error,
    "The value was encrypted under another data key than this node's."
);
create_exception!(
    dstore,
    ClosedError,
    Error,
    "The node was closed; open a new one."
);
create_exception!(
    dstore,
    LockedError,
    Error,
    "Another node (in this process or another) has the storage root open."
);
create_exception!(
    dstore,
    UnavailableError,
    Error,
    "Too few of the nodes that own the data answered; the call may succeed later."
);

/// An exception class with two bases, `dstore.Error` and a builtin, made on first use.
struct DualException {
    name: &'static str,
    doc: &'static str,
    builtin: fn(Python<'_>) -> Bound<'_, PyType>,
    class: PyOnceLock<Py<PyType>>,
}

impl DualException {
    const fn new(
        name: &'static str,
        doc: &'static str,
        builtin: fn(Python<'_>) -> Bound<'_, PyType>,
    ) -> Self {
        Self {
            name,
            doc,
            builtin,
            class: PyOnceLock::new(),
        }
    }

    fn get<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyType>> {
        let class = self.class.get_or_try_init(py, || -> PyResult<_> {
            let bases = PyTuple::new(py, [py.get_type::<Error>(), (self.builtin)(py)])?;
            let namespace = PyDict::new(py);
            namespace.set_item("__module__", "dstore")?;
            namespace.set_item("__doc__", self.doc)?;
            let class = py
                .get_type::<PyType>()
                .call1((self.name, bases, namespace))?
                .cast_into::<PyType>()?;
            Ok(class.unbind())
        })?;
        Ok(class.bind(py).clone())
    }

    /// An instance of this class built from `args`, as a `PyErr` ready to raise.
    fn err<A>(&self, py: Python<'_>, args: A) -> PyErr
    where
        A: pyo3::PyErrArguments + Send + Sync + 'static,
    {
        match self.get(py) {
            Ok(class) => PyErr::from_type(class, args),
            Err(e) => e, // could not even make the class: raise why
        }
    }
}

static NOT_FOUND: DualException = DualException::new(
    "NotFoundError",
    "The key has no live value (never stored, or deleted). Also a KeyError; args[0] is the key.",
    |py| py.get_type::<PyKeyError>(),
);
static INVALID_ARGUMENT: DualException = DualException::new(
    "InvalidArgumentError",
    "An unusable argument: a bad key, data key, secret or chunk size. Also a ValueError.",
    |py| py.get_type::<PyValueError>(),
);
static STORAGE_IO: DualException = DualException::new(
    "StorageIOError",
    "The operating system refused an operation (missing file, disk full, permissions...). \
     Also an OSError: errno and strerror are set when the OS gave an error number, so a \
     missing input file has errno == errno.ENOENT (it is not a FileNotFoundError instance).",
    |py| py.get_type::<PyOSError>(),
);

/// Raises `InvalidArgumentError(message)`; for checks made in this module, before the core.
pub(crate) fn invalid_argument(py: Python<'_>, message: String) -> PyErr {
    INVALID_ARGUMENT.err(py, (message,))
}

/// The one mapping from core errors to exceptions. Exhaustive on purpose: a new core variant
/// must be given its exception here before this crate compiles again.
pub(crate) fn to_py(py: Python<'_>, err: dstore_core::Error) -> PyErr {
    use dstore_core::Error as E;
    let message = err.to_string();
    match err {
        E::NotFound(key) => NOT_FOUND.err(py, (key,)),
        E::Integrity(_) => IntegrityError::new_err(message),
        E::WrongKey(_) => WrongKeyError::new_err(message),
        E::InvalidArgument(_) => INVALID_ARGUMENT.err(py, (message,)),
        E::Locked(_) => LockedError::new_err(message),
        E::Unavailable(_) => UnavailableError::new_err(message),
        E::Closed => ClosedError::new_err(message),
        E::Io { context, source } => match source.raw_os_error() {
            // OSError(errno, strerror): str() gives "[Errno 2] opening /x: No such file ...".
            Some(code) => {
                let reason = source.to_string();
                let reason = reason
                    .strip_suffix(&format!(" (os error {code})"))
                    .unwrap_or(&reason);
                STORAGE_IO.err(py, (code, format!("{context}: {reason}")))
            }
            None => STORAGE_IO.err(py, (message,)),
        },
    }
}

/// Adds every class of the tree to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("NotFoundError", NOT_FOUND.get(py)?)?;
    m.add("IntegrityError", py.get_type::<IntegrityError>())?;
    m.add("WrongKeyError", py.get_type::<WrongKeyError>())?;
    m.add("ClosedError", py.get_type::<ClosedError>())?;
    m.add("LockedError", py.get_type::<LockedError>())?;
    m.add("UnavailableError", py.get_type::<UnavailableError>())?;
    m.add("InvalidArgumentError", INVALID_ARGUMENT.get(py)?)?;
    m.add("StorageIOError", STORAGE_IO.get(py)?)?;
    m.add("DrainWarning", py.get_type::<DrainWarning>())?;
    Ok(())
}
