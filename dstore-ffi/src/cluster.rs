//! A node's view of its cluster: the address it is reached at, the members it sees, and
//! waiting for that view to settle. The options that make a node a member or a client are in
//! options.rs; the calls that store and read work the same on any node (node.rs).

use std::ffi::{c_char, CString};
use std::time::Duration;

use dstore_core::Peer;

use crate::args::{handle, output};
use crate::boundary::boundary;
use crate::node::{dstore_node, NODE_ID_HEX_LEN};
use crate::status::{dstore_status, Failure, Result};

// SAFETY (for every `args` call in this file): the header states the contract of each pointer
// (NULL, or valid as described); `args` checks the rest and reports which argument failed.

/// One live member of the cluster, as listed by dstore_peers().
#[repr(C)]
pub struct dstore_peer {
    /// Its node id: 64 lowercase hex digits and a NUL.
    pub id: [c_char; 65],
    /// The address it is reached at, "host:port", NUL-terminated. Part of the array: freed by
    /// dstore_peers_free() with it, never on its own.
    pub addr: *const c_char,
    /// Its zone, NUL-terminated, or NULL if it has none. Owned by the array, like `addr`.
    pub zone: *const c_char,
}

/// Writes the address peers dial to reach this node, "host:port" and a NUL, into `buf`, which
/// the caller owns and must have room for `buf_len` bytes. For a member that listens on port
/// 0 this holds the port actually bound. DSTORE_NOT_FOUND: the node has no address (it is
/// standalone, or a client). DSTORE_INVALID_ARGUMENT if `buf_len` is too small; the message
/// says how many bytes are needed (an address is rarely over 64). `buf` is written only on
/// success.
#[no_mangle]
pub unsafe extern "C" fn dstore_node_addr(
    node: *const dstore_node,
    buf: *mut c_char,
    buf_len: usize,
) -> dstore_status {
    boundary("dstore_node_addr", || -> Result {
        let node = unsafe { handle(node, "node") }?;
        if buf.is_null() {
            return Err(Failure::invalid("`buf` is NULL"));
        }
        let addr = node.node.addr().ok_or_else(|| {
            Failure::new(
                dstore_status::DSTORE_NOT_FOUND,
                "the node has no address: it is not a cluster member (standalone, or a client)",
            )
        })?;
        let addr = c_string(addr, "the node's address")?;
        let bytes = addr.as_bytes_with_nul();
        if buf_len < bytes.len() {
            return Err(Failure::invalid(format!(
                "`buf_len` is {buf_len}; the address needs {} bytes ({} and a NUL)",
                bytes.len(),
                bytes.len() - 1
            )));
        }
        // SAFETY: `buf` is non-NULL and the caller promises `buf_len` writable bytes, which is
        // enough for the address and its NUL.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), bytes.len()) };
        Ok(())
    })
}

/// Lists the live members of the cluster other than this node, in order of id: the members
/// that answered a heartbeat recently. On success `*out` points to `*out_count` entries; the
/// caller owns the array, and frees it together with the strings its entries point to with
/// one call, dstore_peers_free(*out, *out_count) (never free() an entry's `addr` or `zone`).
/// `*out` is not NULL even when there are no peers (a standalone node has none). On failure
/// neither is written.
#[no_mangle]
pub unsafe extern "C" fn dstore_peers(
    node: *mut dstore_node,
    out: *mut *mut dstore_peer,
    out_count: *mut usize,
) -> dstore_status {
    boundary("dstore_peers", || -> Result {
        let node = unsafe { handle(node, "node") }?;
        let (out, out_count) = unsafe { (output(out, "out")?, output(out_count, "out_count")?) };
        let mut peers = node.node.peers();
        // Byte order of the id, which is also the order of its lowercase hex.
        peers.sort_by_key(|p| p.id);
        let (ptr, count) = peers_to_c(peers)?;
        out.write(ptr);
        out_count.write(count);
        Ok(())
    })
}

/// Frees a peer list returned by dstore_peers(): the strings and the array. `count` must be the
/// count returned with it. NULL is ignored; so is a `count` no array can have.
#[no_mangle]
pub unsafe extern "C" fn dstore_peers_free(peers: *mut dstore_peer, count: usize) {
    boundary("dstore_peers_free", || {
        if peers.is_null() || count > isize::MAX as usize / size_of::<dstore_peer>() {
            return;
        }
        let slice = std::ptr::slice_from_raw_parts_mut(peers, count);
        // SAFETY: the header requires `peers` and `count` to be as returned by dstore_peers,
        // so this is the boxed slice `peers_to_c` gave away, given back once.
        let array = unsafe { Box::from_raw(slice) };
        for peer in array.iter() {
            for s in [peer.addr, peer.zone] {
                if !s.is_null() {
                    // SAFETY: as above: each string is a `CString::into_raw`, given back once.
                    drop(unsafe { CString::from_raw(s.cast_mut()) });
                }
            }
        }
    })
}

/// Waits until the node sees its cluster: at least one other member answered and the set of
/// members stopped changing, for up to `timeout_ms` milliseconds. On success `*out_peers` is
/// the number of live peers (0 at once for a standalone node). A client calls this before its
/// first request, so that it places data where the members expect it; a member may call it
/// to wait for its peers. DSTORE_UNAVAILABLE: no member answered in time, or (at once) every
/// peer refused this node's cluster secret.
#[no_mangle]
pub unsafe extern "C" fn dstore_settle(
    node: *mut dstore_node,
    timeout_ms: u32,
    out_peers: *mut usize,
) -> dstore_status {
    boundary("dstore_settle", || -> Result {
        let node = unsafe { handle(node, "node") }?;
        let out_peers = unsafe { output(out_peers, "out_peers") }?;
        let timeout = Duration::from_millis(u64::from(timeout_ms));
        out_peers.write(node.run(node.node.settle(timeout))?);
        Ok(())
    })
}

/// `s` as a C string. What the core hands out (addresses and zones set through this API, or
/// sent by members that proved the cluster secret) holds no NUL; one that does is refused
/// rather than cut short.
fn c_string(s: String, what: &str) -> Result<CString> {
    CString::new(s).map_err(|e| {
        Failure::new(
            dstore_status::DSTORE_INTEGRITY,
            format!(
                "{what} contains NUL: {:?}",
                String::from_utf8_lossy(&e.into_vec())
            ),
        )
    })
}

/// Gives `peers` to C as an array of `dstore_peer` and its length. Every string is converted
/// before anything is handed over, so a failure leaks nothing.
fn peers_to_c(peers: Vec<Peer>) -> Result<(*mut dstore_peer, usize)> {
    let converted = peers
        .into_iter()
        .map(|p| {
            let zone = p.zone.map(|z| c_string(z, "a peer's zone")).transpose()?;
            Ok((p.id.to_hex(), c_string(p.addr, "a peer's address")?, zone))
        })
        .collect::<Result<Vec<_>>>()?;
    let array: Box<[dstore_peer]> = converted
        .into_iter()
        .map(|(hex, addr, zone)| {
            debug_assert_eq!(hex.len(), NODE_ID_HEX_LEN);
            let mut id = [0 as c_char; NODE_ID_HEX_LEN + 1];
            for (to, from) in id.iter_mut().zip(hex.bytes()) {
                *to = from as c_char;
            }
            dstore_peer {
                id,
                addr: addr.into_raw().cast_const(),
                zone: zone.map_or(std::ptr::null(), |z| z.into_raw().cast_const()),
            }
        })
        .collect();
    let count = array.len();
    Ok((Box::into_raw(array).cast::<dstore_peer>(), count))
}
