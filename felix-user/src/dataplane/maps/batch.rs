//! Batched map writes: one `bpf(BPF_MAP_UPDATE_BATCH)` or `bpf(BPF_MAP_DELETE_BATCH)` call for
//! many entries instead of one call per entry. The kernel (5.6 on) offers both for hash maps and
//! LPM tries; aya does not wrap them. Callers fall back to single updates on an error.

use std::{
    io,
    mem::size_of,
    os::fd::{AsFd, AsRawFd},
};

use aya::{
    Pod,
    maps::{Map, MapData},
};

/// Entries per call: bounds the copies the kernel makes and the work between reschedules.
const CHUNK: usize = 8192;

/// `BPF_MAP_UPDATE_BATCH` and `BPF_MAP_DELETE_BATCH` (uapi `enum bpf_cmd`).
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// The data of a hash map or LPM trie; `None` for other map types.
pub fn hash_or_trie(map: &Map) -> Option<&MapData> {
    match map {
        Map::HashMap(data) | Map::LpmTrie(data) => Some(data),
        _ => None,
    }
}

/// Writes every `(keys[i], values[i])` (insert or replace). `K` and `V` must be the map's key
/// and value layouts: checked against the map's sizes.
pub fn update<K: Pod, V: Pod>(map: &MapData, keys: &[K], values: &[V]) -> io::Result<()> {
    check_layout::<K, V>(map)?;
    if keys.len() != values.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "as many keys as values",
        ));
    }
    for (keys, values) in keys.chunks(CHUNK).zip(values.chunks(CHUNK)) {
        let mut attr = BatchAttr {
            keys: keys.as_ptr() as u64,
            values: values.as_ptr() as u64,
            count: keys.len() as u32,
            map_fd: raw_fd(map),
            ..BatchAttr::default()
        };
        bpf(BPF_MAP_UPDATE_BATCH, &mut attr)?;
    }
    Ok(())
}

/// Deletes every key of `keys`; keys that are not in the map are skipped.
pub fn delete<K: Pod>(map: &MapData, keys: &[K]) -> io::Result<()> {
    check_layout::<K, ()>(map)?;
    let mut rest = keys;
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(CHUNK)];
        let mut attr = BatchAttr {
            keys: chunk.as_ptr() as u64,
            count: chunk.len() as u32,
            map_fd: raw_fd(map),
            ..BatchAttr::default()
        };
        match bpf(BPF_MAP_DELETE_BATCH, &mut attr) {
            Ok(()) => rest = &rest[chunk.len()..],
            // The kernel stops at a missing key, having deleted `count` before it.
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => {
                rest = &rest[(attr.count as usize + 1).min(rest.len())..];
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Checks that `K` (and `V`, unless `()`) have the map's key and value sizes.
fn check_layout<K, V>(map: &MapData) -> io::Result<()> {
    let info = map.info().map_err(io::Error::other)?;
    let value_ok = size_of::<V>() == 0 || info.value_size() as usize == size_of::<V>();
    if info.key_size() as usize != size_of::<K>() || !value_ok {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "map entry of {}+{} bytes, the map's is {}+{}",
                size_of::<K>(),
                size_of::<V>(),
                info.key_size(),
                info.value_size()
            ),
        ));
    }
    Ok(())
}

/// The map's file descriptor, as `bpf_attr` holds it.
fn raw_fd(map: &MapData) -> u32 {
    map.fd().as_fd().as_raw_fd() as u32
}

/// One `bpf()` batch command.
fn bpf(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: `attr` is the kernel's `batch` layout; the key and value pointers it holds point
    // at `count` live entries of the map's sizes (checked by the callers) for the whole call.
    let result = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            size_of::<BatchAttr>(),
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
