//! `dstore.Node`: a thin handle over `dstore_core::Node`. Each method converts its arguments
//! into owned Rust values while it holds the GIL, then runs the core call through
//! `runtime::block_on` with the GIL released. No logic of the store lives here.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dstore_core::{Erasure, Redundancy, StoreOptions};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyMemoryView, PyString};

use crate::errors;
use crate::runtime::block_on;

/// Where a `keys()` iteration is: the page in hand, and where the next one starts.
struct Pages {
    prefix: String,
    after: String,
    page: std::collections::VecDeque<String>,
    done: bool,
}

/// The iterator `Node.keys()` returns: one `list` call per `dstore_core::MAX_PAGE` keys.
#[pyclass(frozen, module = "dstore", name = "KeyIterator")]
pub struct KeyIter {
    node: dstore_core::Node,
    state: std::sync::Mutex<Pages>,
}

#[pymethods]
impl KeyIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let mut pages = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if pages.page.is_empty() && !pages.done {
            let page = block_on(
                py,
                self.node
                    .list(&pages.prefix, &pages.after, dstore_core::MAX_PAGE),
            )?;
            pages.done = page.len() < dstore_core::MAX_PAGE;
            if let Some(last) = page.last() {
                pages.after = last.clone();
            }
            pages.page.extend(page);
        }
        Ok(pages.page.pop_front())
    }
}

/// The raw reader behind `Node.open()`, wrapped by `dstore._io.ValueFile` (an
/// `io.RawIOBase`); see `dstore_core::ValueReader`.
#[pyclass(frozen, module = "dstore", name = "ValueReader")]
pub struct Reader {
    inner: std::sync::Mutex<dstore_core::ValueReader>,
}

#[pymethods]
impl Reader {
    /// The value's size in bytes.
    #[getter]
    fn size(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).size()
    }

    /// Up to `n` bytes from the position on (at most to the end of the chunk under it);
    /// empty at the end of the value.
    fn read<'py>(&self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyBytes>> {
        let mut reader = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let reader = &mut *reader;
        let bytes = block_on(py, reader.read_some(n))?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Moves the position as `io.IOBase.seek` does (`whence` 0, 1 or 2); returns it.
    #[pyo3(signature = (offset, whence=0))]
    fn seek(&self, py: Python<'_>, offset: i64, whence: i32) -> PyResult<u64> {
        let to = match whence {
            0 => u64::try_from(offset)
                .map(std::io::SeekFrom::Start)
                .map_err(|_| {
                    errors::invalid_argument(py, format!("negative seek position {offset}"))
                })?,
            1 => std::io::SeekFrom::Current(offset),
            2 => std::io::SeekFrom::End(offset),
            _ => {
                return Err(errors::invalid_argument(
                    py,
                    format!("whence must be 0, 1 or 2, not {whence}"),
                ))
            }
        };
        let mut reader = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        reader.seek_to(to).map_err(|e| errors::to_py(py, e))
    }

    /// The position the next read starts at.
    fn tell(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .position()
    }
}

/// A dstore node: one storage root, opened for the life of this object or until `close()`.
/// Safe to share between threads; calls release the GIL and run in parallel.
#[pyclass(frozen, module = "dstore", name = "Node")]
pub struct PyNode {
    /// The core node; cheap to clone, internally synchronised, so no lock is needed here.
    node: dstore_core::Node,
    /// The root as given, for `root` and `repr`.
    root: PathBuf,
    /// The node id in hex, kept so `id` and `repr` work after `close()`.
    id: String,
    /// Set by `close()`, for `closed` and `repr`. The core enforces closing on its own.
    closed: AtomicBool,
}

#[pymethods]
impl PyNode {
    /// Opens (or creates) the node whose storage root is `root`. With `listen` it is a cluster
    /// member reachable at that address; with `client=True` it joins through `peers` without
    /// listening or owning data; with neither it is standalone. The quorums, timeouts and
    /// maintenance settings (durations in seconds) default to the core's.
    #[new]
    #[pyo3(signature = (root, key=None, chunk_size=None, secret=None, *, listen=None, peers=None,
                        replicas=None, zone=None, client=false, advertise=None,
                        write_quorum=None, read_quorum=None, suspect_after=None, dead_after=None,
                        call_timeout=None, repair_interval=None, scrub_interval=None,
                        scrub_rate=None, gc_grace=None, tombstone_grace=None,
                        drain_timeout=None, accept_unsealed=false, erasure=None,
                        erasure_write_quorum=None))]
    #[allow(clippy::too_many_arguments)] // the Python keyword arguments, one each
    fn new(
        py: Python<'_>,
        root: PathBuf,
        key: Option<&Bound<'_, PyAny>>,
        chunk_size: Option<i64>,
        secret: Option<&Bound<'_, PyAny>>,
        listen: Option<String>,
        peers: Option<Vec<String>>,
        replicas: Option<i64>,
        zone: Option<String>,
        client: bool,
        advertise: Option<String>,
        write_quorum: Option<i64>,
        read_quorum: Option<i64>,
        suspect_after: Option<f64>,
        dead_after: Option<f64>,
        call_timeout: Option<f64>,
        repair_interval: Option<f64>,
        scrub_interval: Option<f64>,
        scrub_rate: Option<i64>,
        gc_grace: Option<f64>,
        tombstone_grace: Option<f64>,
        drain_timeout: Option<f64>,
        accept_unsealed: bool,
        erasure: Option<&Bound<'_, PyAny>>,
        erasure_write_quorum: Option<i64>,
    ) -> PyResult<Self> {
        let mut config = dstore_core::Config::new(root.clone());
        if let Some(key) = key {
            let bytes = bytes_like(key, "key")?;
            let len = bytes.len();
            config.data_key = Some(bytes.try_into().map_err(|_| {
                errors::invalid_argument(py, format!("key must be 32 bytes long, not {len}"))
            })?);
        }
        if let Some(size) = chunk_size {
            config.chunk_size = usize::try_from(size).map_err(|_| {
                errors::invalid_argument(py, format!("chunk_size must be positive, not {size}"))
            })?;
        }
        if let Some(secret) = secret {
            config.secret = Some(bytes_like(secret, "secret")?);
        }
        if let Some(n) = replicas {
            config.replicas = usize::try_from(n).map_err(|_| {
                errors::invalid_argument(py, format!("replicas must be 1 to 255, not {n}"))
            })?;
        }
        config.listen = listen;
        config.peers = peers.unwrap_or_default();
        config.zone = zone;
        config.client = client;
        config.advertise = advertise;
        config.accept_unsealed = accept_unsealed;
        config.erasure = match redundancy(py, erasure)? {
            Redundancy::Erasure(e) => Some(e),
            _ => None,
        };
        if let Some(q) = erasure_write_quorum {
            config.erasure_write_quorum = Some(usize::try_from(q).map_err(|_| {
                errors::invalid_argument(
                    py,
                    format!("erasure_write_quorum must be k to k + m, not {q}"),
                )
            })?);
        }
        // Quorums of 0 or above `replicas` are refused by the core, with the same message.
        for (name, given, field) in [
            ("write_quorum", write_quorum, &mut config.write_quorum),
            ("read_quorum", read_quorum, &mut config.read_quorum),
        ] {
            if let Some(q) = given {
                *field = Some(usize::try_from(q).map_err(|_| {
                    errors::invalid_argument(py, format!("{name} must be 1 to replicas, not {q}"))
                })?);
            }
        }
        let t = &mut config.timeouts;
        for (name, given, field) in [
            ("suspect_after", suspect_after, &mut t.suspect_after),
            ("dead_after", dead_after, &mut t.dead_after),
            ("call_timeout", call_timeout, &mut t.call),
        ] {
            if let Some(secs) = given {
                *field = seconds(py, name, secs)?; // the rules are the core's (Config::validate)
            }
        }
        let m = &mut config.maintenance;
        for (name, given, field) in [
            ("repair_interval", repair_interval, &mut m.repair_interval),
            ("scrub_interval", scrub_interval, &mut m.scrub_interval),
            ("gc_grace", gc_grace, &mut m.gc_grace),
            ("tombstone_grace", tombstone_grace, &mut m.tombstone_grace),
        ] {
            if let Some(secs) = given {
                *field = seconds(py, name, secs)?;
            }
        }
        if let Some(secs) = drain_timeout {
            config.drain_timeout = seconds(py, "drain_timeout", secs)?;
        }
        if let Some(rate) = scrub_rate {
            m.scrub_rate = u64::try_from(rate).map_err(|_| {
                errors::invalid_argument(
                    py,
                    format!("scrub_rate must be a number of bytes per second (0: no scrubbing), not {rate}"),
                )
            })?;
        }
        let node = block_on(py, dstore_core::Node::open(config))?;
        Ok(Self {
            id: node.id().to_hex(),
            node,
            root,
            closed: AtomicBool::new(false),
        })
    }

    /// Stores `data` under `key`, replacing any older value; returns once it is durable.
    /// `erasure=(k, m)` keeps it erasure-coded, `erasure=False` replicated; by default as
    /// the node was opened.
    #[pyo3(signature = (key, data, encrypt=true, *, erasure=None))]
    fn store(
        &self,
        py: Python<'_>,
        key: String,
        data: &Bound<'_, PyAny>,
        encrypt: bool,
        erasure: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let data = bytes_like(data, "data")?;
        let opts = StoreOptions {
            encrypt,
            redundancy: redundancy(py, erasure)?,
        };
        block_on(py, self.node.store(&key, &data, opts))
    }

    /// The address peers reach this node at (`"host:port"`), or None for a standalone node
    /// or a client.
    #[getter]
    fn addr(&self) -> Option<String> {
        self.node.addr()
    }

    /// The live members of the cluster other than this node: dicts with `id`, `addr`, `zone`.
    fn peers<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.node
            .peers()
            .into_iter()
            .map(|p| {
                let d = PyDict::new(py);
                d.set_item("id", p.id.to_hex())?;
                d.set_item("addr", p.addr)?;
                d.set_item("zone", p.zone)?;
                Ok(d)
            })
            .collect()
    }

    /// Waits (up to `timeout` seconds) until this node knows the cluster's members; returns
    /// how many it sees. A client calls this before its first request. Raises
    /// UnavailableError if no member answers, or at once if they refuse the secret.
    #[pyo3(signature = (timeout=10.0))]
    fn settle(&self, py: Python<'_>, timeout: f64) -> PyResult<usize> {
        let timeout = Duration::try_from_secs_f64(timeout).map_err(|_| {
            errors::invalid_argument(
                py,
                format!("timeout must be a non-negative number of seconds, not {timeout}"),
            )
        })?;
        block_on(py, self.node.settle(timeout))
    }

    /// The value of `key`.
    fn get<'py>(&self, py: Python<'py>, key: String) -> PyResult<Bound<'py, PyBytes>> {
        let value = block_on(py, self.node.get(&key))?;
        Ok(PyBytes::new(py, &value))
    }

    /// Bytes `offset` to `offset + length` of the value of `key`: fewer if the value ends
    /// first, empty if it ends at or before `offset`. Only the chunks covering the range are
    /// fetched.
    fn get_range<'py>(
        &self,
        py: Python<'py>,
        key: String,
        offset: u64,
        length: u64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let value = block_on(py, self.node.get_range(&key, offset, length))?;
        Ok(PyBytes::new(py, &value))
    }

    /// The value of `key` as a read-only binary file (`io.BufferedReader` over an
    /// `io.RawIOBase`): seekable, a context manager; reads fetch only the chunks they need.
    /// It reads the version current when opened.
    fn open<'py>(&self, py: Python<'py>, key: String) -> PyResult<Bound<'py, PyAny>> {
        let reader = block_on(py, self.node.reader(&key))?;
        let raw = Bound::new(
            py,
            Reader {
                inner: std::sync::Mutex::new(reader),
            },
        )?;
        py.import("dstore._io")?
            .getattr("open_value")?
            .call1((raw, key))
    }

    /// Deletes `key`; raises NotFoundError if it has no live value.
    fn delete(&self, py: Python<'_>, key: String) -> PyResult<()> {
        block_on(py, self.node.delete(&key))
    }

    /// Whether `key` has a live value.
    fn has(&self, py: Python<'_>, key: String) -> PyResult<bool> {
        block_on(py, self.node.has(&key))
    }

    /// The live keys, in byte order.
    #[pyo3(signature = (prefix="", start_after="", limit=1000))]
    fn list(
        &self,
        py: Python<'_>,
        prefix: &str,
        start_after: &str,
        limit: i64,
    ) -> PyResult<Vec<String>> {
        let limit = usize::try_from(limit).unwrap_or(0); // the core refuses 0 with its message
        block_on(py, self.node.list(prefix, start_after, limit))
    }

    #[pyo3(signature = (prefix=""))]
    fn keys(&self, prefix: &str) -> KeyIter {
        KeyIter {
            node: self.node.clone(),
            state: std::sync::Mutex::new(Pages {
                prefix: prefix.to_owned(),
                after: String::new(),
                page: std::collections::VecDeque::new(),
                done: false,
            }),
        }
    }

    /// What is known of the value of `key` without reading it: a dict with `size` (bytes),
    /// `version` (its hybrid-clock reading: a later write has a greater one), `writer` (the
    /// writing node's id), `modified` (seconds since the epoch, the writer's clock),
    /// `encrypted`, and `erasure` (`(k, m)`, or None for replicas).
    fn info<'py>(&self, py: Python<'py>, key: String) -> PyResult<Bound<'py, PyDict>> {
        let i = block_on(py, self.node.info(&key))?;
        let dict = PyDict::new(py);
        dict.set_item("size", i.size)?;
        dict.set_item("version", i.version)?;
        dict.set_item("writer", i.writer.to_string())?;
        dict.set_item("modified", i.modified_ms as f64 / 1000.0)?;
        dict.set_item("encrypted", i.encrypted)?;
        dict.set_item("erasure", i.erasure.map(|e| (e.k(), e.m())))?;
        Ok(dict)
    }

    /// This node's metrics in the OpenMetrics text format (what `dstore node
    /// --metrics-listen` serves at /metrics): requests answered by kind and outcome, their
    /// latency, object bytes in and out, members by health, and the counters of `stats()`.
    fn metrics(&self, py: Python<'_>) -> PyResult<String> {
        let node = &self.node;
        block_on(py, node.metrics_text())
    }

    /// The size in bytes of the value of `key`.
    fn size(&self, py: Python<'_>, key: String) -> PyResult<u64> {
        block_on(py, self.node.size(&key))
    }

    /// Stores under `key` the contents of `src`: a path (str or os.PathLike), or a binary
    /// file object read with `src.read(n)` until it returns b"" (memory use is a few chunks
    /// whatever the size). Nothing is stored if reading `src` fails. Returns the number of
    /// bytes stored.
    #[pyo3(signature = (key, src, encrypt=true, *, erasure=None))]
    fn store_file(
        &self,
        py: Python<'_>,
        key: String,
        src: &Bound<'_, PyAny>,
        encrypt: bool,
        erasure: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let opts = StoreOptions {
            encrypt,
            redundancy: redundancy(py, erasure)?,
        };
        if let Some(path) = file_path(src)? {
            return block_on(py, self.node.store_file(&key, &path, opts));
        }
        if !src.hasattr("read")? {
            return Err(PyTypeError::new_err(format!(
                "src must be a path or a binary file object with read(), not {}",
                type_name(src)
            )));
        }
        let mut writer = block_on(py, self.node.writer(&key, opts))?;
        loop {
            let piece = src.call_method1("read", (PIECE,))?;
            let piece = bytes_like(&piece, "what src.read() returned")?;
            if piece.is_empty() {
                break;
            }
            block_on(py, writer.write(&piece))?;
        }
        block_on(py, writer.finish())
    }

    /// Writes the value of `key` to `dst`: a path (str or os.PathLike), replaced atomically
    /// so that it never holds a partial value, or a binary file object, given the value with
    /// `dst.write(b)` a piece at a time, each verified before it is written (a failure part
    /// way leaves a prefix of the value written). Returns the number of bytes written.
    fn get_file(&self, py: Python<'_>, key: String, dst: &Bound<'_, PyAny>) -> PyResult<u64> {
        if let Some(path) = file_path(dst)? {
            return block_on(py, self.node.get_file(&key, &path));
        }
        if !dst.hasattr("write")? {
            return Err(PyTypeError::new_err(format!(
                "dst must be a path or a binary file object with write(), not {}",
                type_name(dst)
            )));
        }
        let mut reader = block_on(py, self.node.reader(&key))?;
        let mut written = 0u64;
        loop {
            let piece = block_on(py, reader.read_some(PIECE))?;
            if piece.is_empty() {
                return Ok(written);
            }
            // A raw file object may take fewer bytes than it is given.
            let mut at = 0;
            while at < piece.len() {
                let n = dst.call_method1("write", (PyBytes::new(py, &piece[at..]),))?;
                let n: usize = if n.is_none() {
                    piece.len() - at
                } else {
                    n.extract()?
                };
                if n == 0 || n > piece.len() - at {
                    return Err(pyo3::exceptions::PyOSError::new_err(format!(
                        "dst.write() took {n} of {} bytes",
                        piece.len() - at
                    )));
                }
                at += n;
            }
            written += piece.len() as u64;
        }
    }

    /// Counters: live keys and distinct chunks held, bytes stored and read through this
    /// handle since it was opened, and the background work of a cluster member (dicts
    /// `repair`, `scrub` and `gc`).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let node = &self.node;
        let s = block_on(py, async { node.stats() })?;
        let dict = PyDict::new(py);
        dict.set_item("keys", s.keys)?;
        dict.set_item("chunks", s.chunks)?;
        dict.set_item("bytes_stored", s.bytes_stored)?;
        dict.set_item("bytes_read", s.bytes_read)?;
        let r = s.repair;
        let repair = PyDict::new(py);
        repair.set_item("passes", r.passes)?;
        repair.set_item("running", r.running)?;
        repair.set_item("last_pass_ms", r.last_pass_ms)?;
        repair.set_item("checked", r.checked)?;
        repair.set_item("chunks_pushed", r.chunks_pushed)?;
        repair.set_item("manifests_pushed", r.manifests_pushed)?;
        repair.set_item("bytes_pushed", r.bytes_pushed)?;
        repair.set_item("handed_off", r.handed_off)?;
        repair.set_item("read_repairs", r.read_repairs)?;
        repair.set_item("shards_rebuilt", r.shards_rebuilt)?;
        repair.set_item("rebuild_bytes_read", r.rebuild_bytes_read)?;
        dict.set_item("repair", repair)?;
        let scrub = PyDict::new(py);
        scrub.set_item("passes", s.scrub.passes)?;
        scrub.set_item("bytes", s.scrub.bytes)?;
        scrub.set_item("objects", s.scrub.objects)?;
        scrub.set_item("bad", s.scrub.bad)?;
        scrub.set_item("restored", s.scrub.restored)?;
        dict.set_item("scrub", scrub)?;
        let gc = PyDict::new(py);
        gc.set_item("chunks_collected", s.gc.chunks_collected)?;
        gc.set_item("tombstones_collected", s.gc.tombstones_collected)?;
        dict.set_item("gc", gc)?;
        let drain = PyDict::new(py);
        drain.set_item("running", s.drain.running)?;
        drain.set_item("objects", s.drain.objects)?;
        drain.set_item("checked", s.drain.checked)?;
        drain.set_item("pushed", s.drain.pushed)?;
        drain.set_item("bytes", s.drain.bytes)?;
        drain.set_item("unconfirmed", s.drain.unconfirmed)?;
        dict.set_item("drain", drain)?;
        Ok(dict)
    }

    /// Closes the node: waits for calls still in flight on other threads, then unlocks the
    /// root, so the root can be reopened as soon as this returns. A cluster member first
    /// hands what it holds to the owners the cluster has without it; if that
    /// does not finish within `drain_timeout`, the node closes anyway and a `DrainWarning`
    /// says what was left. Idempotent; later calls raise ClosedError.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.closed.store(true, Ordering::Release);
        let node = self.node.clone();
        let drained = block_on(py, async move { Ok(node.close().await) })?;
        if let Err(e) = drained {
            let category = py.get_type::<errors::DrainWarning>();
            PyErr::warn(py, &category, &std::ffi::CString::new(e.to_string())?, 1)?;
        }
        Ok(())
    }

    /// Leaves the cluster for good: hands everything this node holds to the owners the
    /// cluster has without it (progress in `stats()["drain"]`), tells the members it has
    /// left, then closes. Afterwards the root can be deleted. Raises UnavailableError (and
    /// closes all the same, the root intact) if the hand-off makes no progress for
    /// `drain_timeout`; InvalidArgumentError on a standalone node or a client.
    fn leave(&self, py: Python<'_>) -> PyResult<()> {
        let node = self.node.clone();
        let result = block_on(py, async move { node.leave().await });
        // Closed unless it refused to start (a standalone node or a client).
        if self.node.stats().is_err() {
            self.closed.store(true, Ordering::Release);
        }
        result
    }

    /// The node id: 64 hex digits, made once and kept in the root.
    #[getter]
    fn id(&self) -> &str {
        &self.id
    }

    /// The storage root, as given to the constructor.
    #[getter]
    fn root(&self) -> PathBuf {
        self.root.clone()
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false) // never swallow the exception
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        // Never key material: only the root and the public id.
        let root = PyString::new(py, &self.root.to_string_lossy()).repr()?;
        let state = if self.closed() { ", closed" } else { "" };
        Ok(format!("dstore.Node(root={root}, id='{}'{state})", self.id))
    }
}

/// A duration given in seconds (an int or a float): finite and not negative.
fn seconds(py: Python<'_>, name: &str, secs: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        errors::invalid_argument(
            py,
            format!("{name} must be a non-negative number of seconds, not {secs}"),
        )
    })
}

/// Copies a bytes-like object into an owned buffer. bytes and bytearray are copied directly;
/// any other object with the buffer protocol (memoryview, array.array, NumPy arrays, ...) is
/// copied through `memoryview(obj).tobytes()`, which also accepts non-contiguous views (their
/// bytes in C order, like `bytes(view)`). The abi3-py39 limited API has no direct buffer access.
/// The pieces `store_file` and `get_file` move between a Python file object and the core.
const PIECE: usize = 1 << 20;

/// `obj` as a file path, if it is one (str or os.PathLike); `None` for anything else.
fn file_path(obj: &Bound<'_, PyAny>) -> PyResult<Option<PathBuf>> {
    if obj.is_instance_of::<PyString>() || obj.hasattr("__fspath__")? {
        return obj.extract().map(Some);
    }
    if obj.is_instance_of::<PyBytes>() {
        // A bytes path, decoded as the file system does (`os.fsdecode`).
        let decoded = obj.py().import("os")?.call_method1("fsdecode", (obj,))?;
        return decoded.extract().map(Some);
    }
    Ok(None)
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string())
}

pub(crate) fn bytes_like(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u8>> {
    if let Ok(bytes) = obj.cast::<PyBytes>() {
        return Ok(bytes.as_bytes().to_vec());
    }
    if let Ok(array) = obj.cast::<PyByteArray>() {
        return Ok(array.to_vec());
    }
    let view = PyMemoryView::from(obj).map_err(|e| {
        if e.is_instance_of::<PyTypeError>(obj.py()) {
            PyTypeError::new_err(format!(
                "{what} must be a bytes-like object (bytes, bytearray, memoryview), not {}",
                type_name(obj)
            ))
        } else {
            e
        }
    })?;
    let copy = view.call_method0("tobytes")?;
    Ok(copy.cast::<PyBytes>()?.as_bytes().to_vec())
}

/// The `erasure` keyword: `None` (the default), `False` (replicas), or `(k, m)`; the bounds
/// are the core's.
fn redundancy(py: Python<'_>, erasure: Option<&Bound<'_, PyAny>>) -> PyResult<Redundancy> {
    let Some(given) = erasure.filter(|e| !e.is_none()) else {
        return Ok(Redundancy::Default);
    };
    if given.is_instance_of::<pyo3::types::PyBool>() {
        if given.is_truthy()? {
            return Err(errors::invalid_argument(
                py,
                "erasure must be (k, m), False (replicas) or None (the node's default), not True"
                    .into(),
            ));
        }
        return Ok(Redundancy::Replicas);
    }
    let (k, m): (i64, i64) = given.extract().map_err(|_| {
        errors::invalid_argument(
            py,
            "erasure must be (k, m), False (replicas) or None (the node's default)".into(),
        )
    })?;
    let bounded = |n: i64| usize::try_from(n).unwrap_or(usize::MAX);
    Ok(Redundancy::Erasure(
        Erasure::new(bounded(k), bounded(m)).map_err(|e| errors::to_py(py, e))?,
    ))
}
